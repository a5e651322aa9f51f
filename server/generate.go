package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"offload/chat"
)

// writeTimeout bounds each write to a client, so that a client that stops
// reading cannot hold the model.
const writeTimeout = 30 * time.Second

// job is a validated request, ready to generate.
type job struct {
	chat   bool
	prompt []int
	params
	isStop     func(id int) bool
	stopTokens []int
}

func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) *requestError {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(body)
	err := dec.Decode(v)
	if err == nil {
		if _, e := dec.Token(); e != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	if err == nil {
		return nil
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &requestError{status: http.StatusRequestEntityTooLarge, body: apiError{
			Message: fmt.Sprintf("the request body is over the limit of %d bytes", mbe.Limit), Type: "invalid_request_error"}}
	}
	return badRequest("", "the request body is not valid JSON: %v", err)
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	p, e := req.validate()
	if e != nil {
		writeError(w, e)
		return
	}
	msgs, e := req.messages()
	if e != nil {
		writeError(w, e)
		return
	}
	tmpl := s.b.ChatTemplate()
	if tmpl == nil {
		writeError(w, badRequest("messages", "model %s has no chat template; use /v1/completions", s.b.ModelName()))
		return
	}
	prompt, err := tmpl.Encode(msgs, true)
	if err != nil {
		if errors.Is(err, chat.ErrRender) {
			writeError(w, badRequest("messages", "%v", err))
		} else {
			writeError(w, &requestError{status: 500, body: apiError{Message: err.Error(), Type: "server_error"}})
		}
		return
	}
	s.generate(w, r, job{chat: true, prompt: prompt, params: p, isStop: tmpl.IsStop, stopTokens: tmpl.EndOfTurn()})
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	p, e := req.validate()
	if e != nil {
		writeError(w, e)
		return
	}
	text, ids, e := req.promptInput()
	if e != nil {
		writeError(w, e)
		return
	}
	tok := s.b.Tokenizer()
	if ids == nil {
		ids = tok.Encode(text, tok.AddsBOS())
	}
	if len(ids) == 0 {
		writeError(w, badRequest("prompt", "the prompt is empty and the model has no BOS token to start from"))
		return
	}
	for _, id := range ids {
		if id < 0 || id >= tok.VocabSize() {
			writeError(w, badRequest("prompt", "token id %d is outside the vocabulary (0..%d)", id, tok.VocabSize()-1))
			return
		}
	}
	s.generate(w, r, job{prompt: ids, params: p, isStop: tok.IsEOG})
}

// generate queues the job, runs it and writes the answer, streamed or not.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, j job) {
	ctxSize := s.b.ContextSize()
	if len(j.prompt) >= ctxSize {
		writeError(w, badRequest("messages", "the model's context holds %d tokens, and the prompt alone is %d tokens", ctxSize, len(j.prompt)).withCode("context_length_exceeded"))
		return
	}
	maxTokens := ctxSize - len(j.prompt)
	if j.maxTokens > 0 {
		maxTokens = min(j.maxTokens, maxTokens)
	}
	var seed uint64
	if j.seed != nil {
		seed = uint64(*j.seed)
	} else {
		var b [8]byte
		rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}

	release, err := s.acquire(r.Context())
	if err != nil {
		s.refuse(w, err) // nothing to write when the client left while queued
		return
	}
	defer release()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.work, cancel)() // shutdown after the grace period

	out := &answer{
		s: s, w: w, rc: http.NewResponseController(w), chat: j.chat, stream: j.stream,
		id: newID(j.chat), created: time.Now().Unix(),
	}
	dec := chat.NewDecoder(s.b.Tokenizer(), chat.DecoderOptions{
		Prev: j.prompt[len(j.prompt)-1], IsStop: j.isStop, Stops: j.stops, TrimLeadingSpace: j.chat,
	})
	if j.stream {
		if err := out.startStream(); err != nil {
			return
		}
	}
	emitted := 0
	emit := func(tok int) bool {
		emitted++
		delta, done := dec.Next(tok)
		if delta != "" && out.send(delta, nil, nil, nil) != nil {
			return false
		}
		return !done && ctx.Err() == nil
	}
	start := time.Now()
	report, err := s.b.Generate(ctx, GenerateRequest{
		Prompt: j.prompt, MaxTokens: maxTokens, Temperature: j.temperature, TopP: j.topP, Seed: seed, StopTokens: j.stopTokens,
	}, emit)
	s.recordGeneration(time.Since(start))
	switch {
	case r.Context().Err() != nil || out.err != nil:
		s.cfg.Log.Info("client gone; generation cancelled", "id", out.id, "tokens", emitted)
		return
	case ctx.Err() != nil:
		// Shutdown cancelled the generation (whether it then returned an
		// error, or ended because emit refused).
		out.fail(503, "server_error", "the server shut down before the answer was complete")
		return
	case err != nil:
		out.fail(500, "server_error", fmt.Sprintf("generation failed: %v", err))
		return
	}
	if tail := dec.Flush(); tail != "" {
		out.send(tail, nil, nil, nil)
	}
	// Fewer tokens than asked for, without a refusal, means the backend
	// met a stop token (see Backend.Generate).
	finish := "stop"
	if !dec.Stopped() && emitted >= maxTokens {
		finish = "length"
	}
	u := &usage{PromptTokens: len(j.prompt), CompletionTokens: emitted, TotalTokens: len(j.prompt) + emitted}
	if !j.stream {
		out.whole(dec.Text(), finish, u, report)
		return
	}
	out.send("", &finish, nil, report)
	if j.includeUsage {
		out.send("", nil, u, nil)
	}
	out.done()
}

func newID(isChat bool) string {
	var b [12]byte
	rand.Read(b[:])
	if isChat {
		return "chatcmpl-" + hex.EncodeToString(b[:])
	}
	return "cmpl-" + hex.EncodeToString(b[:])
}

// answer writes one response: a whole JSON body, or server-sent events.
type answer struct {
	s       *Server
	w       http.ResponseWriter
	rc      *http.ResponseController
	chat    bool
	stream  bool
	id      string
	created int64
	err     error // the first write error: the client is gone
}

func (a *answer) startStream() error {
	h := a.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	a.w.WriteHeader(200)
	if a.chat {
		// The first chunk names the role, as OpenAI's do.
		empty := ""
		return a.event(a.chatChunk(&chatOut{Role: "assistant", Content: &empty}, nil, nil, nil))
	}
	return a.flush()
}

// send streams a piece of text, the finish reason, or the usage (which
// comes in a chunk of its own with no choices).
func (a *answer) send(text string, finish *string, u *usage, report any) error {
	if !a.stream || a.err != nil {
		return a.err
	}
	if a.chat {
		delta := &chatOut{}
		if text != "" {
			delta.Content = &text
		}
		return a.event(a.chatChunk(delta, finish, u, report))
	}
	return a.event(a.textChunk(text, finish, u, report))
}

func (a *answer) chatChunk(delta *chatOut, finish *string, u *usage, report any) chatCompletion {
	c := chatCompletion{ID: a.id, Object: "chat.completion.chunk", Created: a.created, Model: a.s.b.ModelName(),
		SystemFingerprint: "offload", Usage: u, Offload: report}
	if u != nil {
		c.Choices = []chatChoice{}
	} else {
		c.Choices = []chatChoice{{Delta: delta, FinishReason: finish}}
	}
	return c
}

func (a *answer) textChunk(text string, finish *string, u *usage, report any) textCompletion {
	c := textCompletion{ID: a.id, Object: "text_completion", Created: a.created, Model: a.s.b.ModelName(),
		SystemFingerprint: "offload", Usage: u, Offload: report}
	if u != nil {
		c.Choices = []textChoice{}
	} else {
		c.Choices = []textChoice{{Text: text, FinishReason: finish}}
	}
	return c
}

func (a *answer) event(v any) error {
	var b bytes.Buffer
	b.WriteString("data: ")
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		a.err = err
		return err
	}
	b.WriteString("\n")
	return a.write(b.Bytes())
}

func (a *answer) write(p []byte) error {
	if a.err != nil {
		return a.err
	}
	a.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := a.w.Write(p); err != nil {
		a.err = err
		return err
	}
	return a.flush()
}

func (a *answer) flush() error {
	if err := a.rc.Flush(); err != nil {
		a.err = err
	}
	return a.err
}

func (a *answer) done() { a.write([]byte("data: [DONE]\n\n")) }

// whole writes a non-streamed answer.
func (a *answer) whole(text, finish string, u *usage, report any) {
	if a.chat {
		writeJSON(a.w, 200, chatCompletion{ID: a.id, Object: "chat.completion", Created: a.created, Model: a.s.b.ModelName(),
			SystemFingerprint: "offload", Usage: u, Offload: report,
			Choices: []chatChoice{{Message: &chatOut{Role: "assistant", Content: &text}, FinishReason: &finish}}})
		return
	}
	writeJSON(a.w, 200, textCompletion{ID: a.id, Object: "text_completion", Created: a.created, Model: a.s.b.ModelName(),
		SystemFingerprint: "offload", Usage: u, Offload: report,
		Choices: []textChoice{{Text: text, FinishReason: &finish}}})
}

// fail reports an error: as the response when nothing was streamed yet,
// else as an error event (which OpenAI clients raise) ending the stream.
func (a *answer) fail(status int, typ, msg string) {
	if !a.stream {
		writeError(a.w, &requestError{status: status, body: apiError{Message: msg, Type: typ}})
		return
	}
	a.event(errorBody{Error: apiError{Message: msg, Type: typ}})
}
