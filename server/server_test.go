package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"offload/chat"
	"offload/server"
	"offload/server/servertest"
)

// harness is a server on a loopback port and an OpenAI client for it.
type harness struct {
	t       *testing.T
	srv     *server.Server
	base    string // http://127.0.0.1:port
	hc      *http.Client
	client  openai.Client
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func newBackend(t *testing.T) *servertest.Backend {
	t.Helper()
	b, err := servertest.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func start(t *testing.T, b server.Backend, cfg server.Config) *harness {
	t.Helper()
	srv, err := server.New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != "127.0.0.1:8080" {
		t.Errorf("default address %s", srv.Addr())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, srv: srv, base: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- srv.Serve(ctx, ln) }()
	h.hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	opts := []option.RequestOption{option.WithBaseURL(h.base + "/v1/"), option.WithMaxRetries(0), option.WithHTTPClient(h.hc)}
	if cfg.APIKey != "" {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
	} else {
		opts = append(opts, option.WithAPIKey("unused"))
	}
	h.client = openai.NewClient(opts...)
	t.Cleanup(h.stop)
	return h
}

// stop shuts the server down and waits for Serve to return.
func (h *harness) stop() {
	if h.stopped {
		return
	}
	h.stopped = true
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Serve: %v", err)
		}
	case <-time.After(time.Minute):
		h.t.Error("Serve did not return after shutdown")
	}
	h.hc.CloseIdleConnections()
}

// raw sends a request and returns the status, headers and body.
func (h *harness) raw(method, path, body string, header ...string) (int, http.Header, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

var conversation = []openai.ChatCompletionMessageParamUnion{
	openai.SystemMessage("You are a storyteller."),
	openai.UserMessage("Tell me about a cat."),
	openai.AssistantMessage("Once there was a cat."),
	openai.UserMessage("And then?"),
}

func chatParams(seed int64, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:       "scripted",
		Messages:    conversation,
		Seed:        openai.Int(seed),
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0.8),
		TopP:        openai.Float(0.9),
	}
}

func offloadField(t *testing.T, raw string) servertest.Report {
	t.Helper()
	var r servertest.Report
	if raw == "" {
		t.Fatal("no offload field")
	}
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("offload field %s: %v", raw, err)
	}
	return r
}

// TestChatCompletion: a chat completion through the OpenAI client, its
// usage counting the template's prompt tokens, and the run report.
func TestChatCompletion(t *testing.T) {
	b := newBackend(t)
	h := start(t, b, server.Config{})
	ctx := context.Background()
	resp, err := h.client.Chat.Completions.New(ctx, chatParams(7, 24))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("%d choices", len(resp.Choices))
	}
	c := resp.Choices[0]
	if c.Message.Content == "" || c.Message.Role != "assistant" || c.FinishReason != "length" {
		t.Errorf("choice: %+v", c)
	}
	if strings.HasPrefix(c.Message.Content, " ") {
		t.Errorf("content starts with a space: %q", c.Message.Content)
	}
	msgs := []chat.Message{{Role: "system", Content: "You are a storyteller."}, {Role: "user", Content: "Tell me about a cat."},
		{Role: "assistant", Content: "Once there was a cat."}, {Role: "user", Content: "And then?"}}
	prompt, err := b.Tmpl.Encode(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.PromptTokens != int64(len(prompt)) || resp.Usage.CompletionTokens != 24 || resp.Usage.TotalTokens != int64(len(prompt)+24) {
		t.Errorf("usage %+v, prompt is %d tokens", resp.Usage, len(prompt))
	}
	if resp.Model != "scripted" || !strings.HasPrefix(resp.ID, "chatcmpl-") {
		t.Errorf("model %q id %q", resp.Model, resp.ID)
	}
	if got := b.LastRequest().StopTokens; !slices.Equal(got, b.Tmpl.EndOfTurn()) || len(got) == 0 {
		t.Errorf("stop tokens %v, want the template's end of turn %v", got, b.Tmpl.EndOfTurn())
	}
	if r := offloadField(t, resp.JSON.ExtraFields["offload"].Raw()); r.Tokens != 24 || r.BytesPerToken != 1234.5 {
		t.Errorf("offload report %+v", r)
	}
	// The same seed gives the same answer; another seed another one.
	again, err := h.client.Chat.Completions.New(ctx, chatParams(7, 24))
	if err != nil || again.Choices[0].Message.Content != c.Message.Content {
		t.Errorf("same seed: %q vs %q (%v)", again.Choices[0].Message.Content, c.Message.Content, err)
	}
	other, err := h.client.Chat.Completions.New(ctx, chatParams(8, 24))
	if err != nil || other.Choices[0].Message.Content == c.Message.Content {
		t.Errorf("seed 8 gave the same answer as seed 7 (%v)", err)
	}
}

// TestChatStream: the streamed deltas of a chat completion concatenate to
// the non-streamed answer for the same seed; the last chunks carry the
// finish reason, the report and (when asked) the usage.
func TestChatStream(t *testing.T) {
	b := newBackend(t)
	h := start(t, b, server.Config{})
	ctx := context.Background()
	for _, maxTokens := range []int64{1, 5, 40, 200} {
		whole, err := h.client.Chat.Completions.New(ctx, chatParams(42, maxTokens))
		if err != nil {
			t.Fatal(err)
		}
		p := chatParams(42, maxTokens)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := h.client.Chat.Completions.NewStreaming(ctx, p)
		var text strings.Builder
		var finish string
		var usage openai.CompletionUsage
		var report string
		chunks := 0
		for stream.Next() {
			ch := stream.Current()
			chunks++
			if ch.Usage.TotalTokens > 0 {
				usage = ch.Usage
			}
			if r := ch.JSON.ExtraFields["offload"].Raw(); r != "" && r != "null" {
				report = r
			}
			for _, c := range ch.Choices {
				text.WriteString(c.Delta.Content)
				if c.FinishReason != "" {
					finish = c.FinishReason
				}
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != whole.Choices[0].Message.Content {
			t.Errorf("max_tokens %d: streamed %q, whole %q", maxTokens, text.String(), whole.Choices[0].Message.Content)
		}
		if finish != string(whole.Choices[0].FinishReason) || usage.CompletionTokens != whole.Usage.CompletionTokens || usage.PromptTokens != whole.Usage.PromptTokens {
			t.Errorf("max_tokens %d: finish %q/%q usage %+v/%+v", maxTokens, finish, whole.Choices[0].FinishReason, usage, whole.Usage)
		}
		if r := offloadField(t, report); int64(r.Tokens) != maxTokens {
			t.Errorf("streamed report %+v", r)
		}
		if maxTokens == 200 && chunks < 20 {
			t.Errorf("only %d chunks for 200 tokens: not streamed", chunks)
		}
	}
}

// TestCompletion: /v1/completions, streamed and not, with greedy decoding
// (same text every time), a stop string and the model's own EOS.
func TestCompletion(t *testing.T) {
	b := newBackend(t)
	h := start(t, b, server.Config{})
	ctx := context.Background()
	params := openai.CompletionNewParams{
		Model:       "scripted",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens:   openai.Int(30),
		Temperature: openai.Float(0),
	}
	resp, err := h.client.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	text := resp.Choices[0].Text
	if text == "" || resp.Choices[0].FinishReason != "length" || resp.Usage.CompletionTokens != 30 || resp.Object != "text_completion" {
		t.Fatalf("completion %+v", resp)
	}
	if n := len(b.Tok.Encode("Once upon a time", true)); resp.Usage.PromptTokens != int64(n) {
		t.Errorf("prompt tokens %d, want %d", resp.Usage.PromptTokens, n)
	}
	offloadField(t, resp.JSON.ExtraFields["offload"].Raw())
	stream := h.client.Completions.NewStreaming(ctx, params)
	var streamed strings.Builder
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			streamed.WriteString(c.Text)
		}
	}
	if stream.Err() != nil || streamed.String() != text {
		t.Errorf("streamed %q, whole %q (%v)", streamed.String(), text, stream.Err())
	}

	// A stop string: the text ends before its first occurrence.
	word := strings.TrimSpace(servertest.Words[10]) // " named"
	i := strings.Index(text, word)
	if i < 0 {
		t.Fatalf("%q not in %q", word, text)
	}
	params.Stop = openai.CompletionNewParamsStopUnion{OfStringArray: []string{"zzz", word}}
	stopped, err := h.client.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if stopped.Choices[0].Text != text[:i] || stopped.Choices[0].FinishReason != "stop" {
		t.Errorf("stop %q: got %q (%s), want %q", word, stopped.Choices[0].Text, stopped.Choices[0].FinishReason, text[:i])
	}

	// The model's EOS ends the answer with finish_reason stop.
	b.StopAfter = 4
	eos, err := h.client.Completions.New(ctx, openai.CompletionNewParams{Model: "scripted",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")}, MaxTokens: openai.Int(30), Temperature: openai.Float(0)})
	if err != nil {
		t.Fatal(err)
	}
	if eos.Choices[0].FinishReason != "stop" || eos.Usage.CompletionTokens != 4 || !strings.HasPrefix(text, eos.Choices[0].Text) {
		t.Errorf("EOS after 4: %+v", eos.Choices[0])
	}
}

func TestModels(t *testing.T) {
	h := start(t, newBackend(t), server.Config{})
	ctx := context.Background()
	page, err := h.client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != "scripted" || page.Data[0].OwnedBy != "offload" {
		t.Errorf("models %+v", page.Data)
	}
	m, err := h.client.Models.Get(ctx, "scripted")
	if err != nil || m.ID != "scripted" {
		t.Errorf("get: %v %v", m, err)
	}
	_, err = h.client.Models.Get(ctx, "gpt-4")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model: %v", err)
	}
	status, _, body := h.raw("GET", "/health", "")
	if status != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("health: %d %s", status, body)
	}
}

// TestBadRequests: each client mistake is a 4xx with the OpenAI error shape
// naming the problem.
func TestBadRequests(t *testing.T) {
	b := newBackend(t)
	b.Ctx = 64
	h := start(t, b, server.Config{MaxBodyBytes: 4096})
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	long := strings.Repeat("word ", 100)
	tests := []struct {
		name, method, path, body string
		status                   int
		param, want              string
	}{
		{"n=2", "POST", "/v1/chat/completions", `{"model":"m",` + msgs + `,"n":2}`, 400, "n", "n must be 1"},
		{"bad json", "POST", "/v1/chat/completions", `{"model":`, 400, "", "not valid JSON"},
		{"two values", "POST", "/v1/chat/completions", `{"model":"m",` + msgs + `} {}`, 400, "", "more than one"},
		{"temperature", "POST", "/v1/chat/completions", `{` + msgs + `,"temperature":3}`, 400, "temperature", "between 0 and 2"},
		{"top_p", "POST", "/v1/chat/completions", `{` + msgs + `,"top_p":0}`, 400, "top_p", "top_p"},
		{"max_tokens", "POST", "/v1/chat/completions", `{` + msgs + `,"max_tokens":0}`, 400, "max_tokens", "at least 1"},
		{"no messages", "POST", "/v1/chat/completions", `{"messages":[]}`, 400, "messages", "must not be empty"},
		{"tool role", "POST", "/v1/chat/completions", `{"messages":[{"role":"tool","content":"x"}]}`, 400, "messages[0].role", "tool"},
		{"image", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content[0]", "only text"},
		{"tools", "POST", "/v1/chat/completions", `{` + msgs + `,"tools":[{"type":"function"}]}`, 400, "tools", "not supported"},
		{"logprobs", "POST", "/v1/chat/completions", `{` + msgs + `,"logprobs":true}`, 400, "logprobs", "not supported"},
		{"five stops", "POST", "/v1/chat/completions", `{` + msgs + `,"stop":["a","b","c","d","e"]}`, 400, "stop", "at most 4"},
		{"stream_options", "POST", "/v1/chat/completions", `{` + msgs + `,"stream_options":{"include_usage":true}}`, 400, "stream_options", "stream: true"},
		{"roles", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`, 400, "messages", "Conversation roles must alternate"},
		{"context", "POST", "/v1/completions", `{"prompt":"` + long + `"}`, 400, "messages", "context holds 64 tokens"},
		{"token id", "POST", "/v1/completions", `{"prompt":[1,99999]}`, 400, "prompt", "outside the vocabulary"},
		{"two prompts", "POST", "/v1/completions", `{"prompt":["a","b"]}`, 400, "prompt", "one text"},
		{"echo", "POST", "/v1/completions", `{"prompt":"a","echo":true}`, 400, "echo", "not supported"},
		{"too big", "POST", "/v1/completions", `{"prompt":"` + strings.Repeat("x", 5000) + `"}`, 413, "", "over the limit of 4096 bytes"},
		{"get chat", "GET", "/v1/chat/completions", ``, 405, "", "use POST"},
		{"unknown", "GET", "/v1/embeddings", ``, 404, "", "no such endpoint"},
	}
	for _, tt := range tests {
		status, _, body := h.raw(tt.method, tt.path, tt.body, "Content-Type", "application/json")
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("%s: body %q is not an OpenAI error: %v", tt.name, body, err)
			continue
		}
		param := ""
		if e.Error.Param != nil {
			param = *e.Error.Param
		}
		if status != tt.status || param != tt.param || !strings.Contains(e.Error.Message, tt.want) || e.Error.Type == "" {
			t.Errorf("%s: %d param %q %q; want %d param %q containing %q", tt.name, status, param, e.Error.Message, tt.status, tt.param, tt.want)
		}
	}
	// The OpenAI client surfaces the same errors.
	p := chatParams(1, 4)
	p.N = openai.Int(3)
	_, err := h.client.Chat.Completions.New(context.Background(), p)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "n" {
		t.Errorf("client n=3: %v", err)
	}
	if b.Calls() != 0 {
		t.Errorf("%d generations ran for bad requests", b.Calls())
	}
}

func TestAPIKey(t *testing.T) {
	b := newBackend(t)
	h := start(t, b, server.Config{APIKey: "sesame"})
	if _, err := h.client.Models.List(context.Background()); err != nil {
		t.Errorf("with the key: %v", err)
	}
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "sesame"}} {
		status, _, body := h.raw("GET", "/v1/models", "", hdr...)
		if status != 401 || !strings.Contains(string(body), "invalid_api_key") {
			t.Errorf("%v: %d %s", hdr, status, body)
		}
	}
	if status, _, _ := h.raw("GET", "/health", ""); status != 200 {
		t.Errorf("health needs no key: %d", status)
	}
}

// goroutines waits until the number of goroutines is back to at most base
// and fails with their stacks if it does not come back.
func goroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if runtime.NumGoroutine() <= base {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	t.Errorf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf.String())
}

// TestLoad: 32 clients at once against a queue of 4: every request either
// completes or is refused with a clean 429 and Retry-After, one generation
// runs at a time, and nothing is left running afterwards.
func TestLoad(t *testing.T) {
	base := runtime.NumGoroutine()
	b := newBackend(t)
	b.Delay = time.Millisecond
	h := start(t, b, server.Config{QueueSize: 4})
	const clients = 32
	t0 := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, busy := 0, 0
	for i := range clients {
		wg.Go(func() {
			p := chatParams(int64(i), 8)
			var err error
			if i%2 == 0 {
				_, err = h.client.Chat.Completions.New(context.Background(), p)
			} else {
				s := h.client.Chat.Completions.NewStreaming(context.Background(), p)
				for s.Next() {
				}
				err = s.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			var apiErr *openai.Error
			switch {
			case err == nil:
				ok++
			case errors.As(err, &apiErr) && apiErr.StatusCode == 429:
				ra, e := strconv.Atoi(apiErr.Response.Header.Get("Retry-After"))
				if e != nil || ra < 1 || apiErr.Type != "rate_limit_error" {
					t.Errorf("429 without a usable Retry-After (%q) or type (%q)", apiErr.Response.Header.Get("Retry-After"), apiErr.Type)
				}
				busy++
			default:
				t.Errorf("client %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d completed, %d refused with 429 (%v)", ok, busy, time.Since(t0))
	if ok+busy != clients || ok < 5 {
		t.Errorf("%d completed + %d refused != %d clients (or fewer than queue+1 completed)", ok, busy, clients)
	}
	if b.MaxRunning() != 1 {
		t.Errorf("%d generations ran at once", b.MaxRunning())
	}
	if b.Calls() != ok {
		t.Errorf("%d generations for %d answers", b.Calls(), ok)
	}
	h.stop()
	t.Logf("stopped at %v", time.Since(t0))
	if b.Running() != 0 {
		t.Errorf("%d generations still running", b.Running())
	}
	goroutines(t, base)
}

// TestDisconnect: a client that goes away mid-stream cancels its
// generation, which frees the model for the next request.
func TestDisconnect(t *testing.T) {
	base := runtime.NumGoroutine()
	b := newBackend(t)
	b.Delay = 5 * time.Millisecond
	h := start(t, b, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	stream := h.client.Chat.Completions.NewStreaming(ctx, chatParams(3, 400))
	for n := 0; n < 5 && stream.Next(); n++ {
	}
	if stream.Err() != nil {
		t.Fatal(stream.Err())
	}
	cancel()
	stream.Close()
	deadline := time.Now().Add(10 * time.Second)
	for b.Cancelled() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if b.Cancelled() != 1 || b.Running() != 0 || b.Tokens() >= 400 {
		t.Fatalf("after the client left: %d cancelled, %d running, %d of 400 tokens generated", b.Cancelled(), b.Running(), b.Tokens())
	}
	b.Delay = 0
	if _, err := h.client.Chat.Completions.New(context.Background(), chatParams(3, 4)); err != nil {
		t.Errorf("next request: %v", err)
	}
	h.stop()
	goroutines(t, base)
}

// TestShutdown: shutdown lets the running generation finish within the
// grace period, answers queued requests 503, and cancels a generation that
// outlasts the grace period.
func TestShutdown(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, finishes := range []bool{true, false} {
		t.Run(fmt.Sprint("finishes=", finishes), func(t *testing.T) {
			b := newBackend(t)
			b.Delay = 2 * time.Millisecond
			grace, tokens := time.Minute, int64(100)
			if !finishes {
				grace, tokens = 50*time.Millisecond, 100000
				b.Ctx = 200000
			}
			h := start(t, b, server.Config{ShutdownGrace: grace})
			first := make(chan error, 1)
			var text strings.Builder
			var finish string
			go func() {
				p := chatParams(1, tokens)
				s := h.client.Chat.Completions.NewStreaming(context.Background(), p)
				for s.Next() {
					for _, c := range s.Current().Choices {
						text.WriteString(c.Delta.Content)
						finish += c.FinishReason
					}
				}
				first <- s.Err()
			}()
			for b.Running() == 0 {
				time.Sleep(time.Millisecond)
			}
			second := make(chan error, 1)
			go func() {
				_, err := h.client.Chat.Completions.New(context.Background(), chatParams(2, 4))
				second <- err
			}()
			for {
				if _, _, body := h.raw("GET", "/health", ""); strings.Contains(string(body), `"waiting":1`) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			h.cancel() // begin shutdown
			var apiErr *openai.Error
			if err := <-second; !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
				t.Errorf("queued request during shutdown: %v", err)
			}
			err := <-first
			h.stop()
			if finishes {
				if err != nil || finish != "length" || text.Len() == 0 {
					t.Errorf("running generation: err %v, finish %q", err, finish)
				}
			} else {
				if err == nil || b.Cancelled() != 1 {
					t.Errorf("generation past the grace period: err %v, %d cancelled", err, b.Cancelled())
				}
			}
			if b.Running() != 0 {
				t.Errorf("%d still running", b.Running())
			}
		})
	}
	goroutines(t, base)
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
