package engine

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"offload/corrector"
	"offload/internal/fixtures"
	"offload/tokenizer"
)

var storyPrompts = []string{
	"Once upon a time",
	"The little dog",
	"Tom and Sue went to the park",
	"One day, a big bird",
	"Lily wanted to play with her mom",
	"The sun was hot",
	"There was a boy named Ben",
	"In the forest",
}

// TestSiriusStrictAndSparseOnStories: Sirius with strict acceptance is
// token-identical to dense greedy on every prompt, and the sparse model
// alone (keep 0.5) differs from dense on most of them (the sparsity is real).
func TestSiriusStrictAndSparseOnStories(t *testing.T) {
	dir := fixtures.Stories(t)
	tok, err := tokenizer.LoadLlama2C(filepath.Join(dir, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "stories260K.gguf")
	const n = 48
	differ := 0
	for _, window := range []int{4, 16} {
		for _, p := range storyPrompts {
			prompt := tok.Encode(p, true)
			outs := map[string][]int{}
			for _, mode := range []struct {
				name string
				m    corrector.Mode
				acc  corrector.Accept
				mem  int64
			}{
				{"dense", corrector.Dense, corrector.AcceptThreshold, 0},
				{"strict", corrector.Sirius, corrector.AcceptStrict, 0},
				{"strict-streamed", corrector.Sirius, corrector.AcceptStrict, 1 << 20},
				{"sparse", corrector.Sparse, corrector.AcceptThreshold, 0},
			} {
				cfg := corrector.DefaultConfig()
				cfg.Mode, cfg.Accept, cfg.Window, cfg.MaxTokens = mode.m, mode.acc, window, n
				e := newTestEngine(t, path, mode.mem, Options{}, cfg)
				r, err := gen(e, prompt, cfg)
				if err != nil {
					t.Fatal(err)
				}
				outs[mode.name] = r.Tokens
			}
			d := fmt.Sprint(outs["dense"])
			if fmt.Sprint(outs["strict"]) != d || fmt.Sprint(outs["strict-streamed"]) != d {
				t.Fatalf("window %d, %q: strict Sirius differs from dense\n dense  %v\n strict %v\n stream %v", window, p, outs["dense"], outs["strict"], outs["strict-streamed"])
			}
			if window == 4 && fmt.Sprint(outs["sparse"]) != d {
				differ++
			}
		}
	}
	if differ*2 <= len(storyPrompts) {
		t.Fatalf("sparse (keep 0.5) differs from dense on only %d of %d prompts", differ, len(storyPrompts))
	}
	t.Logf("sparse differs from dense on %d of %d prompts", differ, len(storyPrompts))
}

// TestTopKPolicy: per-token top-k sparsity runs resident and streamed with
// the same tokens, and strict Sirius over it still equals dense.
func TestTopKPolicy(t *testing.T) {
	path := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	prompt := oracleTokens(t)[:5]
	var outs []string
	for _, mem := range []int64{0, 1 << 20} {
		cfg := corrector.DefaultConfig()
		cfg.Mode, cfg.MaxTokens = corrector.Sparse, 30
		e := newTestEngine(t, path, mem, Options{Decoding: Decoding{Sparsity: "topk"}}, cfg)
		r, err := gen(e, prompt, cfg)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, fmt.Sprint(r.Tokens))
	}
	if outs[0] != outs[1] {
		t.Fatalf("top-k resident and streamed differ:\n%s\n%s", outs[0], outs[1])
	}
	cfg := corrector.DefaultConfig()
	cfg.Accept, cfg.Window, cfg.MaxTokens = corrector.AcceptStrict, 4, 60
	e := newTestEngine(t, path, 1<<20, Options{Decoding: Decoding{Sparsity: "topk"}}, cfg)
	r, err := gen(e, prompt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	seq := oracleTokens(t)
	for i, tok := range r.Tokens {
		if tok != seq[5+i] {
			t.Fatalf("strict top-k Sirius token %d: %d, oracle %d", i, tok, seq[5+i])
		}
	}
}

// TestBeams: width > 1 verifies every beam in one pass and, with strict
// acceptance, still reproduces dense greedy.
func TestBeams(t *testing.T) {
	path := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	seq := oracleTokens(t)
	for _, mem := range []int64{0, 1536 << 10} {
		cfg := corrector.DefaultConfig()
		cfg.Accept, cfg.Window, cfg.Width, cfg.MaxTokens = corrector.AcceptStrict, 4, 3, 60
		e := newTestEngine(t, path, mem, Options{}, cfg)
		if mem > 0 && e.Prof.Plan.SlotBytes == 0 {
			t.Fatal("the budget should make layers stream")
		}
		r, err := gen(e, seq[:5], cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i, tok := range r.Tokens {
			if tok != seq[5+i] {
				t.Fatalf("mem %d: beam Sirius token %d: %d, oracle %d", mem, i, tok, seq[5+i])
			}
		}
		if got := e.Prof.Phases[PhaseCheck].Passes; got != r.Stats.Checks {
			t.Fatalf("%d check passes for %d checks: beams must share one pass", got, r.Stats.Checks)
		}
		t.Logf("width 3: AAL %.2f (width 1 gives 1.90)", r.Stats.AAL)
	}
}

// TestSiriusSampling: with temperature > 0 Sirius drafts by sampling and
// accepts by the speculative-sampling rule; the same seed gives the same
// tokens, and another seed gives others.
func TestSiriusSampling(t *testing.T) {
	path := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	prompt := oracleTokens(t)[:5]
	run := func(seed uint64) string {
		cfg := corrector.DefaultConfig()
		cfg.Window, cfg.MaxTokens, cfg.Temperature, cfg.TopP, cfg.Seed = 4, 40, 1.0, 0.9, seed
		e := newTestEngine(t, path, 1<<20, Options{}, cfg)
		r, err := gen(e, prompt, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Stats.Checks == 0 || len(r.Tokens) != 40 {
			t.Fatalf("seed %d: %d checks, %d tokens", seed, r.Stats.Checks, len(r.Tokens))
		}
		return fmt.Sprint(r.Tokens)
	}
	a, b, c := run(7), run(7), run(8)
	if a != b {
		t.Fatalf("same seed, different tokens:\n%s\n%s", a, b)
	}
	if a == c {
		t.Fatal("different seeds gave identical samples")
	}
}

// TestResidentWithoutPackedCopies: when the whole model fits the budget but
// a packed copy of every layer's Griffin rows does not, the Sirius plan keeps
// the whole model resident with no layer slots (a dense step then moves no
// weights, as in dense mode), packs the layers whose copy fits, and drafts
// the others with their full FFN; strict Sirius still equals the oracle.
func TestResidentWithoutPackedCopies(t *testing.T) {
	path := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	cfg := corrector.DefaultConfig()
	cfg.Accept, cfg.Window, cfg.MaxTokens = corrector.AcceptStrict, 4, 40
	big := newTestEngine(t, path, 0, Options{}, cfg)
	var whole, packed int64
	for _, b := range big.Prof.Plan.Blocks {
		if strings.HasSuffix(b.Name, "ffn-griffin") {
			packed = b.Bytes // one layer's copy
		} else {
			whole += b.Bytes
		}
	}
	budget := big.Prof.Plan.Fixed + whole + packed + packed/2 // room for one packed layer, not all
	e := newTestEngine(t, path, budget, Options{}, cfg)
	p := e.Prof.Plan
	npacked := 0
	for l := range p.Packed {
		if !p.Attn[l] || !p.FFN[l] {
			t.Fatalf("layer %d not resident: %v", l, p)
		}
		if p.Packed[l] {
			npacked++
		}
	}
	if p.SlotBytes != 0 || !p.Head || npacked != 1 {
		t.Fatalf("want everything resident, no slots, one packed layer: %v", p)
	}
	seq := oracleTokens(t)
	r, err := gen(e, seq[:5], cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, tok := range r.Tokens {
		if tok != seq[5+i] {
			t.Fatalf("token %d: %d, oracle %d", i, tok, seq[5+i])
		}
	}
	if n := e.Prof.DecodeBytes() - e.Prof.Phases[PhaseDecode].InputBytes - e.Prof.Phases[PhaseDraft].InputBytes - e.Prof.Phases[PhaseCheck].InputBytes; n != 0 {
		t.Fatalf("%d weight bytes moved while decoding a resident model", n)
	}
	if e.Device().Peak() > budget {
		t.Fatalf("peak %d over the budget %d", e.Device().Peak(), budget)
	}
}
