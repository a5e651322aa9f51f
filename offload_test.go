package offload

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"offload/corrector"
	"offload/device"
	"offload/engine"
	"offload/internal/fixtures"
	"offload/model"
)

func session(t *testing.T) *Session {
	t.Helper()
	m, err := Load(filepath.Join(fixtures.Stories(t), "stories260K.gguf"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	dev, note, err := OpenDevice("host", device.Config{})
	if err != nil || note != "" {
		t.Fatalf("OpenDevice: %v %q", err, note)
	}
	t.Cleanup(func() { dev.Close() })
	dec := engine.DefaultDecoding()
	dec.Mode = corrector.Dense
	s, err := m.NewSession(dev, engine.Options{Decoding: dec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestGenerateText: the emitted pieces add up to the result's text; a stop
// string ends generation with the text stopping just before it, and no
// piece ever holds its beginning; the finish reasons say why it ended.
func TestGenerateText(t *testing.T) {
	s := session(t)
	ctx := context.Background()
	var pieces strings.Builder
	full, err := s.Generate(ctx, Request{Prompt: "Once upon a time", MaxTokens: 60}, func(p string) error { pieces.WriteString(p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if pieces.String() != full.Text || !strings.HasPrefix(full.Text, ", there was a little girl named Lily") || full.Finish != FinishLength {
		t.Fatalf("text %q (pieces %q), finish %s", full.Text, pieces.String(), full.Finish)
	}
	stop := "little girl"
	pieces.Reset()
	r, err := s.Generate(ctx, Request{Prompt: "Once upon a time", MaxTokens: 60, Stop: []string{stop}}, func(p string) error {
		pieces.WriteString(p)
		if strings.Contains(pieces.String(), "little") {
			t.Errorf("a piece began the stop string: %q", pieces.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := full.Text[:strings.Index(full.Text, stop)]; r.Text != want || pieces.String() != want || r.Finish != FinishStop {
		t.Fatalf("with stop %q: text %q, pieces %q, finish %s; want %q", stop, r.Text, pieces.String(), r.Finish, want)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	r, err = s.Generate(cctx, Request{Prompt: "Once upon a time", MaxTokens: 60}, nil)
	if !errors.Is(err, context.Canceled) || (r != nil && r.Finish != FinishCancelled) {
		t.Fatalf("cancelled: %+v, %v", r, err)
	}
}

// TestNoTokenizer: a model opened without a tokenizer generates from token
// ids (no text), and refuses text prompts and stop strings clearly.
func TestNoTokenizer(t *testing.T) {
	s := session(t)
	mm, err := model.Open(filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	bare := &Session{Model: &Model{Model: mm, Name: "bare"}, Engine: s.Engine}
	r, err := bare.Generate(context.Background(), Request{Tokens: []int{1, 403, 407}, MaxTokens: 5, NoEOS: true}, nil)
	if err != nil || len(r.Tokens) != 5 || r.Text != "" {
		t.Fatalf("token ids: %+v, %v", r, err)
	}
	if _, err := bare.Generate(context.Background(), Request{Prompt: "hi", MaxTokens: 5}, nil); err == nil {
		t.Fatal("a text prompt without a tokenizer was accepted")
	}
}
