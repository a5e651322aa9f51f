package corrector

import (
	"errors"
	"fmt"
	"strings"
)

// fakeModel is a scripted Model: full and sparse map a context (every token up
// to and including the current one) to next-token logits, and it keeps real
// per-branch caches of (token, written-by-full?) entries so that tests can
// assert cache lengths and catch protocol violations: a Draft not appending,
// a Verify over a prefix that still holds sparse K/V, a Truncate beyond the
// length. It computes logits from the tokens in the branch's cache, so a
// cache holding the wrong tokens shows up as wrong output.
type fakeModel struct {
	full, sparse func(ctx []int) []float32
	caches       [][]kv
	log          []string
	verifies     int
	// failOn makes the named call ("prefill", "draft", "verify", "truncate",
	// "fork") return an error; badShape makes Draft/Verify return short logits.
	failOn   string
	badShape bool
}

type kv struct {
	tok  int
	full bool
}

func (f *fakeModel) logf(format string, args ...any) {
	f.log = append(f.log, fmt.Sprintf(format, args...))
}

func (f *fakeModel) branch(b int) ([]kv, error) {
	if b < 0 || b >= len(f.caches) {
		return nil, fmt.Errorf("branch %d does not exist (%d branches)", b, len(f.caches))
	}
	return f.caches[b], nil
}

func tokensOf(c []kv) []int {
	out := make([]int, len(c))
	for i, e := range c {
		out[i] = e.tok
	}
	return out
}

func (f *fakeModel) Prefill(prompt []int) ([]float32, error) {
	f.logf("P %v", prompt)
	if f.failOn == "prefill" {
		return nil, errors.New("injected prefill failure")
	}
	f.caches = [][]kv{nil}
	for _, t := range prompt {
		f.caches[0] = append(f.caches[0], kv{t, true})
	}
	return f.full(prompt), nil
}

func (f *fakeModel) Draft(toks []int, pos int) ([][]float32, error) {
	f.logf("D %d %v", pos, toks)
	if f.failOn == "draft" {
		return nil, errors.New("injected draft failure")
	}
	out := make([][]float32, len(toks))
	for b, t := range toks {
		c, err := f.branch(b)
		if err != nil {
			return nil, err
		}
		if len(c) != pos {
			return nil, fmt.Errorf("draft on branch %d at position %d, but its cache holds %d positions", b, pos, len(c))
		}
		f.caches[b] = append(c, kv{t, false})
		out[b] = f.sparse(tokensOf(f.caches[b]))
		if f.badShape {
			out[b] = out[b][:1]
		}
	}
	return out, nil
}

func (f *fakeModel) Verify(toks [][]int, pos int) ([][][]float32, error) {
	f.logf("V %d %v", pos, toks)
	f.verifies++
	if f.failOn == "verify" {
		return nil, errors.New("injected verify failure")
	}
	out := make([][][]float32, len(toks))
	for b, win := range toks {
		c, err := f.branch(b)
		if err != nil {
			return nil, err
		}
		if len(c) < pos {
			return nil, fmt.Errorf("verify on branch %d at position %d, but its cache holds %d positions", b, pos, len(c))
		}
		for i, e := range c[:pos] {
			if !e.full {
				return nil, fmt.Errorf("verify on branch %d at position %d: position %d still holds sparse K/V", b, pos, i)
			}
		}
		c = c[:pos:pos]
		for _, t := range win {
			c = append(c, kv{t, true})
		}
		f.caches[b] = c
		ctx := tokensOf(c)
		for i := range win {
			out[b] = append(out[b], f.full(ctx[:pos+i+1]))
		}
	}
	if f.badShape {
		out = out[:0]
	}
	return out, nil
}

func (f *fakeModel) Truncate(b, n int) error {
	f.logf("T %d %d", b, n)
	if f.failOn == "truncate" {
		return errors.New("injected truncate failure")
	}
	c, err := f.branch(b)
	if err != nil {
		return err
	}
	if n < 0 || n > len(c) {
		return fmt.Errorf("truncate branch %d to %d, but it holds %d positions", b, n, len(c))
	}
	f.caches[b] = c[:n]
	return nil
}

func (f *fakeModel) Fork(dst, src int) error {
	f.logf("F %d<-%d", dst, src)
	if f.failOn == "fork" {
		return errors.New("injected fork failure")
	}
	c, err := f.branch(src)
	if err != nil {
		return err
	}
	if dst < 0 || dst > 64 {
		return fmt.Errorf("fork into branch %d", dst)
	}
	for len(f.caches) <= dst {
		f.caches = append(f.caches, nil)
	}
	f.caches[dst] = append([]kv(nil), c...)
	return nil
}

// calls returns the log lines that start with one of the given letters.
func (f *fakeModel) calls(kinds string) []string {
	var out []string
	for _, l := range f.log {
		if strings.ContainsRune(kinds, rune(l[0])) {
			out = append(out, l)
		}
	}
	return out
}

// peaked returns logits of vocab v with hi on target and 0 elsewhere.
func peaked(v, target int, hi float32) []float32 {
	l := make([]float32, v)
	l[target] = hi
	return l
}

// counting is a full model whose greedy continuation of ...t is t+1 (mod v,
// skipping 0, which the tests use as EOS unless told otherwise).
func counting(v int) func(ctx []int) []float32 {
	return func(ctx []int) []float32 {
		next := ctx[len(ctx)-1]%(v-1) + 1
		return peaked(v, next, 10)
	}
}

// deviating is a sparse model equal to full except when the current token sits
// at one of the positions in bad, where its argmax is the wrong token given.
func deviating(full func([]int) []float32, bad map[int]int) func(ctx []int) []float32 {
	return func(ctx []int) []float32 {
		if wrong, ok := bad[len(ctx)-1]; ok {
			return peaked(len(full(ctx)), wrong, 10)
		}
		return full(ctx)
	}
}

// hashModel gives pseudo-random but deterministic logits per context: a
// stand-in for a real model in the equivalence tests. noise > 0 perturbs it
// with a second hash so that a "sparse" twin disagrees now and then.
func hashModel(v int, seed uint64, noise float32) func(ctx []int) []float32 {
	return func(ctx []int) []float32 {
		h := seed
		for _, t := range ctx {
			h = (h ^ uint64(t+1)) * 0x100000001b3
		}
		r := NewRNG(h | 1)
		r2 := NewRNG((h ^ 0xabcdef) | 1)
		l := make([]float32, v)
		for i := range l {
			l[i] = 4 * r.F32()
			if noise > 0 {
				l[i] += noise * r2.F32()
			}
		}
		return l
	}
}
