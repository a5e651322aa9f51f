package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Server. The zero value of each field means its
// default.
type Config struct {
	// Host is the address to bind; default 127.0.0.1 (this machine only).
	Host string
	// Port to listen on; default 8080. (Serve takes any listener: tests
	// pass one on port 0.)
	Port int
	// APIKey, when set, is required as "Authorization: Bearer <key>" on
	// /v1/ requests.
	APIKey string
	// QueueSize is how many requests may wait while one generates; more
	// are answered 429. Default 16; negative means none may wait.
	QueueSize int
	// MaxBodyBytes bounds a request body; default 8 MiB.
	MaxBodyBytes int64
	// ShutdownGrace is how long in-flight generations may run on after
	// shutdown begins before they are cancelled; default 30s.
	ShutdownGrace time.Duration
	// Log receives one line per request; nil discards.
	Log *slog.Logger
}

func (c *Config) defaults() {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 8080
	}
	if c.QueueSize == 0 {
		c.QueueSize = 16
	} else if c.QueueSize < 0 {
		c.QueueSize = 0
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Server serves one Backend. Create it with New; it is safe for concurrent
// use.
type Server struct {
	cfg     Config
	b       Backend
	created int64 // model "created" time for /v1/models

	admit chan struct{} // held by every admitted request (waiting or running)
	run   chan struct{} // held by the running generation

	// work is the parent of every generation's context: cancelling it
	// stops them all (shutdown after the grace period).
	work       context.Context
	cancelWork context.CancelFunc
	draining   chan struct{} // closed when shutdown begins
	drainOnce  sync.Once
	handlers   sync.WaitGroup

	avgGen  atomic.Int64 // moving average generation time, ns (for Retry-After)
	nextID  atomic.Uint64
	idSalt  uint64
	serving atomic.Bool
}

// New makes a server for b.
func New(cfg Config, b Backend) (*Server, error) {
	if b == nil {
		return nil, errors.New("server: no backend")
	}
	if b.Tokenizer() == nil {
		return nil, errors.New("server: backend has no tokenizer")
	}
	if b.ContextSize() < 2 {
		return nil, fmt.Errorf("server: backend context size %d is too small", b.ContextSize())
	}
	cfg.defaults()
	s := &Server{
		cfg:      cfg,
		b:        b,
		created:  time.Now().Unix(),
		admit:    make(chan struct{}, cfg.QueueSize+1),
		run:      make(chan struct{}, 1),
		draining: make(chan struct{}),
		idSalt:   uint64(time.Now().UnixNano()),
	}
	s.work, s.cancelWork = context.WithCancel(context.Background())
	return s, nil
}

// Addr is the address Listen binds.
func (s *Server) Addr() string {
	return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

// Listen binds the configured host and port.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.Addr())
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return ln, nil
}

// ListenAndServe listens and serves until ctx is done, then shuts down
// gracefully (see Serve).
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve answers requests on ln until ctx is done, then shuts down: it stops
// accepting connections, answers queued requests 503, lets the running
// generation finish for up to ShutdownGrace, then cancels it, and returns
// once every handler has. A Server serves once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.serving.CompareAndSwap(false, true) {
		ln.Close()
		return errors.New("server: Serve called twice")
	}
	// Connections that have not sent a request yet (clients dial ahead)
	// would hold Shutdown for 5 s; they are closed at once instead.
	var connMu sync.Mutex
	fresh := map[net.Conn]bool{}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn),
		ConnState: func(c net.Conn, st http.ConnState) {
			connMu.Lock()
			defer connMu.Unlock()
			if st == http.StateNew {
				fresh[c] = true
			} else {
				delete(fresh, c)
			}
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.cancelWork()
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.drain()
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- hs.Shutdown(grace) }()
	var err error
	for done := false; !done; {
		select {
		case err = <-shut:
			done = true
		case <-time.After(20 * time.Millisecond):
			connMu.Lock()
			for c := range fresh {
				c.Close()
			}
			connMu.Unlock()
		}
	}
	if err != nil {
		// The grace period is over: cancel what still runs, then wait for
		// the handlers (a generation stops at its next layer boundary).
		s.cfg.Log.Warn("shutdown: cancelling in-flight generations", "grace", s.cfg.ShutdownGrace)
		s.cancelWork()
		s.handlers.Wait()
		hs.Close()
	}
	s.cancelWork()
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", e)
	}
	return nil
}

// drain marks the server as shutting down: new and queued requests get 503.
func (s *Server) drain() { s.drainOnce.Do(func() { close(s.draining) }) }

func (s *Server) isDraining() bool {
	select {
	case <-s.draining:
		return true
	default:
		return false
	}
}

// Handler is the server's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handlers.Add(1)
		defer s.handlers.Done()
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		s.route(rec, r)
		s.cfg.Log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start).Round(time.Millisecond))
	})
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "/health" || path == "/healthz" {
		s.health(w, r)
		return
	}
	if !strings.HasPrefix(path, "/v1/") {
		writeError(w, &requestError{status: 404, body: apiError{Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path), Type: "invalid_request_error"}})
		return
	}
	if !s.authorized(r) {
		code := "invalid_api_key"
		writeError(w, &requestError{status: 401, body: apiError{Message: "missing or incorrect API key: send Authorization: Bearer <key>", Type: "invalid_request_error", Code: &code}})
		return
	}
	method := func(m string) bool {
		if r.Method == m {
			return true
		}
		w.Header().Set("Allow", m)
		writeError(w, &requestError{status: 405, body: apiError{Message: fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, m), Type: "invalid_request_error"}})
		return false
	}
	switch {
	case path == "/v1/chat/completions":
		if method(http.MethodPost) {
			s.chatCompletions(w, r)
		}
	case path == "/v1/completions":
		if method(http.MethodPost) {
			s.completions(w, r)
		}
	case path == "/v1/models":
		if method(http.MethodGet) {
			writeJSON(w, 200, modelList{Object: "list", Data: []model{s.model()}})
		}
	case strings.HasPrefix(path, "/v1/models/"):
		if method(http.MethodGet) {
			id := strings.TrimPrefix(path, "/v1/models/")
			if id != s.b.ModelName() {
				code := "model_not_found"
				writeError(w, &requestError{status: 404, body: apiError{Message: fmt.Sprintf("the model %q does not exist; this server serves %q", id, s.b.ModelName()), Type: "invalid_request_error", Code: &code}})
				return
			}
			writeJSON(w, 200, s.model())
		}
	default:
		writeError(w, &requestError{status: 404, body: apiError{Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path), Type: "invalid_request_error"}})
	}
}

func (s *Server) model() model {
	return model{ID: s.b.ModelName(), Object: "model", Created: s.created, OwnedBy: "offload"}
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(prefix):])), []byte(s.cfg.APIKey)) == 1
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, &requestError{status: 405, body: apiError{Message: "use GET", Type: "invalid_request_error"}})
		return
	}
	status, code := "ok", 200
	if s.isDraining() {
		status, code = "shutting down", 503
	}
	running := len(s.run)
	writeJSON(w, code, map[string]any{
		"status":   status,
		"model":    s.b.ModelName(),
		"running":  running,
		"waiting":  max(len(s.admit)-running, 0),
		"capacity": cap(s.admit),
	})
}

// errBusy and errDraining are refusals by the queue.
var (
	errBusy     = errors.New("server busy")
	errDraining = errors.New("server shutting down")
)

// acquire admits a request to the queue and waits for its turn to
// generate. It fails at once with errBusy when the queue is full, and with
// errDraining when shutdown begins while it waits.
func (s *Server) acquire(ctx context.Context) (release func(), err error) {
	if s.isDraining() {
		return nil, errDraining
	}
	select {
	case s.admit <- struct{}{}:
	default:
		return nil, errBusy
	}
	select {
	case s.run <- struct{}{}:
		release := func() { <-s.run; <-s.admit }
		if s.isDraining() {
			release()
			return nil, errDraining
		}
		return release, nil
	case <-ctx.Done():
		<-s.admit
		return nil, ctx.Err()
	case <-s.draining:
		<-s.admit
		return nil, errDraining
	}
}

// retryAfter estimates the seconds until a queue slot frees: the average
// generation time times the requests ahead, within [1, 600].
func (s *Server) retryAfter() int {
	avg := time.Duration(s.avgGen.Load())
	ahead := len(s.admit)
	secs := int((avg*time.Duration(ahead) + time.Second - 1) / time.Second)
	return min(max(secs, 1), 600)
}

func (s *Server) recordGeneration(d time.Duration) {
	old := s.avgGen.Load()
	if old == 0 {
		s.avgGen.Store(int64(d))
		return
	}
	s.avgGen.Store(old + (int64(d)-old)/4)
}

func (s *Server) refuse(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errBusy):
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter()))
		code := "rate_limit_exceeded"
		writeError(w, &requestError{status: 429, body: apiError{
			Message: fmt.Sprintf("the server is busy: one generation runs and %d requests wait; retry later", s.cfg.QueueSize),
			Type:    "rate_limit_error", Code: &code}})
	case errors.Is(err, errDraining):
		w.Header().Set("Retry-After", "5")
		writeError(w, &requestError{status: 503, body: apiError{Message: "the server is shutting down", Type: "server_error"}})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *requestError) {
	writeJSON(w, e.status, errorBody{Error: e.body})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
