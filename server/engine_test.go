package server_test

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
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
