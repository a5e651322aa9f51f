// Package servertest provides a scripted server.Backend: a small real
// tokenizer and chat template, and a "model" whose output is a fixed
// function of the prompt, the sampling settings and the seed. It lets the
// server, and programs built on it, be tested without a model file, while
// counting what a test needs to check (generations running at once,
// cancellations).
package servertest

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"offload/chat"
	"offload/server"
	"offload/tokenizer"
)

// Words are what the scripted model says, one after another (greedy) or
// drawn at random (sampling). "Zoë" and "✓" need byte-fallback tokens, so
// answers exercise UTF-8 split across tokens.
var Words = []string{" Once", " upon", " a", " time", ",", " there", " was", " a", " little", " cat",
	" named", " Zoë", ".", "\n", " She", " liked", " the", " sun", " ✓", "!"}

// Backend is a scripted server.Backend. Set its fields before serving.
type Backend struct {
	Name string
	Ctx  int
	Tok  *tokenizer.Tokenizer
	Tmpl *chat.Template
	// Delay is slept before each token (a slow model); cancellation
	// interrupts it.
	Delay time.Duration
	// StopAfter makes the model sample EOS after that many tokens (which
	// ends the answer, unemitted); 0 never.
	StopAfter int
	// Fail, when set, is returned by Generate after the first token.
	Fail error

	last       atomic.Pointer[server.GenerateRequest]
	running    atomic.Int32
	maxRunning atomic.Int32
	calls      atomic.Int64
	cancelled  atomic.Int64
	tokens     atomic.Int64
}

// Report is the run report the backend returns.
type Report struct {
	Tokens        int                `json:"tokens"`
	BytesPerToken float64            `json:"bytes_per_token"`
	AAL           float64            `json:"aal"`
	PhaseSeconds  map[string]float64 `json:"phase_seconds"`
}

// New writes a small llama2.c vocabulary into dir and returns a backend
// with it and the built-in Llama 2 chat template, named "scripted", with a
// context of 512 positions.
func New(dir string) (*Backend, error) {
	tok, err := NewTokenizer(dir)
	if err != nil {
		return nil, err
	}
	tmpl, err := chat.Builtin("llama2", tok)
	if err != nil {
		return nil, err
	}
	return &Backend{Name: "scripted", Ctx: 512, Tok: tok, Tmpl: tmpl}, nil
}

// NewTokenizer writes a llama2.c tokenizer.bin into dir and loads it: <unk>,
// BOS, EOS, the 256 byte tokens (id byte+3), printable ASCII, and the ASCII
// part of each of the Words with its prefixes.
func NewTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	type tok struct {
		s     string
		score float32
	}
	toks := []tok{{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}}
	for b := range 256 {
		toks = append(toks, tok{fmt.Sprintf("<0x%02X>", b), 0})
	}
	seen := map[string]bool{}
	add := func(s string, score float32) {
		if !seen[s] {
			seen[s] = true
			toks = append(toks, tok{s, score})
		}
	}
	add("\n", -1)
	for c := ' '; c <= '~'; c++ {
		add(string(c), -1)
	}
	for _, w := range Words {
		for n := 2; n <= len(w) && w[n-1] < 0x80; n++ {
			add(w[:n], float32(n))
		}
	}
	var buf []byte
	buf = binary.LittleEndian.AppendUint32(buf, 16)
	for _, t := range toks {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(t.score))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(t.s)))
		buf = append(buf, t.s...)
	}
	path := filepath.Join(dir, "tokenizer.bin")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		return nil, err
	}
	return tokenizer.LoadLlama2C(path, len(toks))
}

// wordIDs are the tokens of a word: its longest ASCII prefix as one
// piece, then the rest as byte tokens.
func (b *Backend) wordIDs(w string) []int {
	n := 0
	for n < len(w) && w[n] < 0x80 {
		n++
	}
	var ids []int
	if n > 0 {
		id, ok := b.Tok.TokenID(w[:n])
		if !ok {
			panic(fmt.Sprintf("servertest: %q is not in the vocabulary", w[:n]))
		}
		ids = append(ids, id)
	}
	for i := n; i < len(w); i++ {
		ids = append(ids, int(w[i])+3)
	}
	return ids
}

// ModelName implements server.Backend.
func (b *Backend) ModelName() string { return b.Name }

// ContextSize implements server.Backend.
func (b *Backend) ContextSize() int { return b.Ctx }

// Tokenizer implements server.Backend.
func (b *Backend) Tokenizer() *tokenizer.Tokenizer { return b.Tok }

// ChatTemplate implements server.Backend.
func (b *Backend) ChatTemplate() *chat.Template { return b.Tmpl }

// Generate implements server.Backend: the answer is Words, from a place
// that depends on the prompt (greedy), or drawn with a generator seeded by
// the seed and the prompt (sampling), encoded to tokens.
func (b *Backend) Generate(ctx context.Context, req server.GenerateRequest, emit func(int) bool) (any, error) {
	b.calls.Add(1)
	b.last.Store(&req)
	defer func() {
		if ctx.Err() != nil {
			b.cancelled.Add(1)
		}
	}()
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for {
		m := b.maxRunning.Load()
		if n <= m || b.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	h := fnv.New64a()
	for _, id := range req.Prompt {
		binary.Write(h, binary.LittleEndian, int32(id))
	}
	ph := h.Sum64()
	rng := rand.New(rand.NewPCG(req.Seed, ph))
	var queue []int
	word := int(ph % uint64(len(Words)))
	start := time.Now()
	count := 0
	for count < req.MaxTokens {
		if err := b.wait(ctx); err != nil {
			return nil, err
		}
		if count == 1 && b.Fail != nil {
			return nil, b.Fail
		}
		if len(queue) == 0 {
			if req.Temperature > 0 {
				word = rng.IntN(len(Words))
			} else {
				word = (word + 1) % len(Words)
			}
			queue = b.wordIDs(Words[word])
		}
		id := queue[0]
		queue = queue[1:]
		if b.StopAfter > 0 && count == b.StopAfter {
			id = b.Tok.EOS()
		}
		if b.Tok.IsEOG(id) || slices.Contains(req.StopTokens, id) {
			break // a stop token ends the answer and is not emitted
		}
		count++
		b.tokens.Add(1)
		if !emit(id) {
			break
		}
	}
	el := time.Since(start).Seconds()
	return Report{Tokens: count, BytesPerToken: 1234.5, AAL: 7.5, PhaseSeconds: map[string]float64{"decode": el}}, nil
}

func (b *Backend) wait(ctx context.Context) error {
	if b.Delay <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(b.Delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ctx.Err()
	}
}

// Running is the number of generations running now.
func (b *Backend) Running() int { return int(b.running.Load()) }

// MaxRunning is the most generations that ran at once.
func (b *Backend) MaxRunning() int { return int(b.maxRunning.Load()) }

// Calls is the number of Generate calls.
func (b *Backend) Calls() int { return int(b.calls.Load()) }

// Cancelled is the number of generations whose context was done when they
// returned (the client left, or the server shut down).
func (b *Backend) Cancelled() int { return int(b.cancelled.Load()) }

// Tokens is the number of tokens generated so far, over all calls.
func (b *Backend) Tokens() int { return int(b.tokens.Load()) }

// LastRequest is the request of the last Generate call (nil before any).
func (b *Backend) LastRequest() *server.GenerateRequest { return b.last.Load() }
