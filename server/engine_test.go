package server_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"offload"
	"offload/chat"
	"offload/corrector"
	"offload/device"
	"offload/engine"
	"offload/internal/fixtures"
	"offload/server"
)

// TestEngine serves stories260K through the real engine on the host
// backend: greedy completions over HTTP equal Session.Generate's text for
// the same prompt, in dense and Sirius modes; a chat completion uses the
// guessed built-in template; the report arrives under "offload"; device
// memory is back to its value before any sequence after a client leaves
// mid-stream.
func TestEngine(t *testing.T) {
	m, err := offload.Load(filepath.Join(fixtures.Stories(t), "stories260K.bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, mode := range []string{"dense", "sirius"} {
		t.Run(mode, func(t *testing.T) {
			dev, _, err := offload.OpenDevice("host", device.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			dec := engine.DefaultDecoding()
			if dec.Mode, err = corrector.ParseMode(mode); err != nil {
				t.Fatal(err)
			}
			// The adaptive window policy plans from measured times, so only
			// strict acceptance makes two Sirius runs give the same text.
			dec.Accept = corrector.AcceptStrict
			s, err := m.NewSession(dev, engine.Options{Decoding: dec})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			idle := dev.Used()
			tmpl, err := chat.ForModel(m.Path, m.File.Meta, m.File.Format, m.Tok)
			if err != nil {
				t.Fatal(err)
			}
			b := s.Backend(tmpl)
			h := start(t, b, server.Config{})
			ctx := context.Background()
			for _, prompt := range []string{"Once upon a time", "The cat sat on the mat. Then"} {
				want, err := s.Generate(ctx, offload.Request{Prompt: prompt, MaxTokens: 60}, nil)
				if err != nil {
					t.Fatal(err)
				}
				s.Engine.Reset()
				got, err := h.client.Completions.New(ctx, openai.CompletionNewParams{Model: "x",
					Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)}, MaxTokens: openai.Int(60), Temperature: openai.Float(0)})
				if err != nil {
					t.Fatal(err)
				}
				if got.Choices[0].Text != want.Text || string(got.Choices[0].FinishReason) != want.Finish {
					t.Errorf("%q: HTTP %q (%s), Session %q (%s)", prompt, got.Choices[0].Text, got.Choices[0].FinishReason, want.Text, want.Finish)
				}
				if !strings.Contains(got.JSON.ExtraFields["offload"].Raw(), `"generated_tokens"`) {
					t.Errorf("no engine report: %s", got.JSON.ExtraFields["offload"].Raw())
				}
			}
			resp, err := h.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "x",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story.")}, MaxTokens: openai.Int(40), Seed: openai.Int(1)})
			if err != nil || resp.Choices[0].Message.Content == "" {
				t.Errorf("chat: %v %+v", err, resp)
			}
			// A client that leaves mid-stream: its sequence is freed.
			cctx, cancel := context.WithCancel(ctx)
			stream := h.client.Completions.NewStreaming(cctx, openai.CompletionNewParams{Model: "x",
				Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once")}, MaxTokens: openai.Int(400), Temperature: openai.Float(1), Seed: openai.Int(5)})
			stream.Next()
			cancel()
			stream.Close()
			h.stop()
			deadline := time.Now().Add(10 * time.Second)
			for dev.Used() != idle && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				runtime.Gosched()
			}
			if dev.Used() != idle {
				t.Errorf("device memory %d after the requests, %d before", dev.Used(), idle)
			}
		})
	}
}

// TestEngineLoad: 32 clients at once against the real engine (stories260K,
// host backend, Sirius) and a queue of 4: every request completes or gets a
// clean 429, and afterwards no goroutine is left and the device's memory is
// back to its idle value (every sequence was freed).
func TestEngineLoad(t *testing.T) {
	m, err := offload.Load(filepath.Join(fixtures.Stories(t), "stories260K.gguf"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dev, _, err := offload.OpenDevice("host", device.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	s, err := m.NewSession(dev, engine.Options{Decoding: engine.DefaultDecoding(), Context: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// One generation first, so that workers started once per process (the
	// CPU kernels' pool) are running before goroutines are counted.
	if _, err := s.Generate(context.Background(), offload.Request{Prompt: "Hi", MaxTokens: 2}, nil); err != nil {
		t.Fatal(err)
	}
	s.Engine.Reset()
	idle := dev.Used()
	tmpl, err := chat.ForModel(m.Path, m.File.Meta, m.File.Format, m.Tok)
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine() // the device's stream workers included
	h := start(t, s.Backend(tmpl), server.Config{QueueSize: 4})
	const clients = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, busy := 0, 0
	for i := range clients {
		wg.Go(func() {
			p := openai.ChatCompletionNewParams{Model: "x", MaxTokens: openai.Int(24), Seed: openai.Int(int64(i)),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story.")}}
			var err error
			if i%2 == 0 {
				_, err = h.client.Chat.Completions.New(context.Background(), p)
			} else {
				st := h.client.Chat.Completions.NewStreaming(context.Background(), p)
				for st.Next() {
				}
				err = st.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			var apiErr *openai.Error
			switch {
			case err == nil:
				ok++
			case errors.As(err, &apiErr) && apiErr.StatusCode == 429 && apiErr.Response.Header.Get("Retry-After") != "":
				busy++
			default:
				t.Errorf("client %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d completed, %d refused with 429", ok, busy)
	if ok+busy != clients || ok < 5 {
		t.Errorf("%d completed + %d refused, %d clients", ok, busy, clients)
	}
	h.stop()
	if got := dev.Used(); got != idle {
		t.Errorf("device memory in use %d after the load, %d when idle", got, idle)
	}
	// The CPU kernels' worker pool only grows, up to one worker per thread:
	// allow for it; 32 requests leaking anything would show far above that.
	limit := base + runtime.GOMAXPROCS(0)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > limit && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > limit {
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Errorf("%d goroutines after the load, %d before:\n%s", n, base, buf.String())
	}
}
