// Package server serves one model over HTTP with the OpenAI API as clients
// use it (POST /v1/chat/completions and /v1/completions, streamed with
// server-sent events or not; GET /v1/models; GET /health), so that editors,
// chat UIs and agent frameworks can use a model offload runs.
//
// The model is loaded once and shared: a bounded queue admits requests, one
// generation runs at a time (an offloaded model is bound by the host-device
// link, so concurrent sequences would only split it), and a full queue is
// answered 429 with Retry-After. A client that goes away cancels its
// generation through the request context. Every response carries the run
// report under the extra field "offload", so profiling works over HTTP too.
//
// The server is written against Backend, a small interface over the engine,
// and tested with a scripted one (package servertest).
package server

import (
	"context"

	"offload/chat"
	"offload/tokenizer"
)

// Backend is the model a Server serves.
type Backend interface {
	// ModelName is the model id /v1/models lists and responses carry.
	ModelName() string
	// ContextSize is the most tokens one sequence may hold, prompt and
	// generated tokens together, such that Generate never has to cut
	// MaxTokens short (for Sirius: the KV cache size minus the window).
	ContextSize() int
	// Tokenizer encodes prompts and decodes generated tokens.
	Tokenizer() *tokenizer.Tokenizer
	// ChatTemplate formats chat messages; nil makes /v1/chat/completions
	// answer 400.
	ChatTemplate() *chat.Template
	// Generate runs one sequence: it prefills req.Prompt, then samples up to
	// req.MaxTokens tokens and calls emit with each, in order, from the
	// goroutine that called Generate. It ends:
	//   - at a stop token: one of req.StopTokens or one of the model's own
	//     end-of-generation tokens (EOS, <|eot_id|>...), which is not emitted;
	//   - when emit returns false (a stop string matched, or the client is
	//     gone): emit is not called again;
	//   - after req.MaxTokens tokens;
	//   - when ctx is done, at the next layer boundary, returning ctx's error.
	// It never ends early for another reason (the server keeps prompt and
	// MaxTokens within ContextSize), so fewer than MaxTokens tokens without
	// a refusal means a stop token. The sequence's state (KV cache, device
	// buffers) is freed before Generate returns. report describes the run
	// (bytes per token, AAL, phase times...); it must marshal to JSON and
	// is sent to the client as is.
	Generate(ctx context.Context, req GenerateRequest, emit func(token int) bool) (report any, err error)
}

// GenerateRequest is one sequence to generate.
type GenerateRequest struct {
	// Prompt is the whole prompt, BOS and special tokens included.
	Prompt []int
	// MaxTokens bounds the generated tokens; len(Prompt)+MaxTokens is at
	// most ContextSize.
	MaxTokens int
	// Temperature 0 means greedy decoding (argmax).
	Temperature float64
	// TopP is the nucleus mass kept, in (0, 1]; 1 keeps every token.
	TopP float64
	// Seed seeds sampling: the same request and seed give the same tokens.
	Seed uint64
	// StopTokens end the generation besides the model's own
	// end-of-generation tokens: a chat template's end-of-turn ids.
	StopTokens []int
}
