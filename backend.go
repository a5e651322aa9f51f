package offload

import (
	"context"

	"offload/chat"
	"offload/engine"
	"offload/server"
	"offload/tokenizer"
)

// Backend serves this session to the OpenAI-compatible server and the chat
// loop (server.Backend). tmpl is the chat template (nil: chat completions
// are refused).
func (s *Session) Backend(tmpl *chat.Template) server.Backend {
	return &sessionBackend{s: s, tmpl: tmpl}
}

type sessionBackend struct {
	s    *Session
	tmpl *chat.Template
}

func (b *sessionBackend) ModelName() string               { return b.s.Model.Name }
func (b *sessionBackend) Tokenizer() *tokenizer.Tokenizer { return b.s.Model.Tok }
func (b *sessionBackend) ChatTemplate() *chat.Template    { return b.tmpl }

// ContextSize is what Generate never has to cut short: the KV cache less
// the Sirius window a check may run past the last token.
func (b *sessionBackend) ContextSize() int {
	o := b.s.Engine.Options()
	return o.Context - o.Window
}

// Generate runs one request: stop tokens (the model's end-of-generation ids
// and the template's end-of-turn ones) end it without being emitted; a
// refused emit or a cancelled ctx ends it at the next token or layer
// boundary. The sequence is freed afterwards (KV cache, Griffin rows on the
// device), so device memory is back to idle between requests.
func (b *sessionBackend) Generate(ctx context.Context, req server.GenerateRequest, emit func(int) bool) (any, error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.Engine.Reset()
	refused := false
	res, err := s.Engine.Generate(ctx, engine.Request{
		Prompt: req.Prompt, MaxTokens: req.MaxTokens, Temperature: req.Temperature, TopP: req.TopP, Seed: req.Seed,
		EOS:  append(s.Model.StopIDs(), req.StopTokens...),
		Stop: func([]int) bool { return refused },
	}, func(id int) error {
		if !refused && !emit(id) {
			refused = true
		}
		return nil
	})
	if res == nil {
		return nil, err
	}
	return s.Report(&Result{Result: res, Prompt: req.Prompt}), err
}
