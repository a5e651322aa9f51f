package corrector

import (
	"slices"
	"testing"
)

// cyclePlans returns a plan function that gives successive windows the
// shapes {drafts, width} in turn, branching wherever the width allows.
func cyclePlans(shapes [][2]int) func(int) Plan {
	i := 0
	return func(int) Plan {
		s := shapes[i%len(shapes)]
		i++
		return Plan{Drafts: s[0], Width: s[1], BranchBelow: 2}
	}
}

// unsureAt3 is sure of t+1 everywhere except after token 3, where it prefers
// 30 to the right 4 by a little (top probability about 0.12).
func unsureAt3(ctx []int) []float32 {
	last := ctx[len(ctx)-1]
	if last == 3 {
		l := make([]float32, 50)
		l[30], l[4] = 2, 1.9
		return l
	}
	return peaked(50, last%49+1, 10)
}

// A tree branches only at the unsure node, verifies both paths in one pass
// and keeps the second, which becomes branch 0.
func TestTreeBranchesWhereUnsure(t *testing.T) {
	f := &fakeModel{full: counting(50), sparse: unsureAt3}
	cfg := siriusCfg(4, 5)
	cfg.Policy, cfg.Width = PolicyAdaptive, 2
	cfg.plan = func(int) Plan { return Plan{Drafts: 3, Width: 2, BranchBelow: 0.5} }
	out, st := generate(t, f, []int{1}, cfg)
	if want := seq(2, 6); !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	assertLog(t, f.log, []string{
		"P [1]",
		"D 1 [2]", "D 2 [3]", "F 1<-0", "D 3 [30 4]", "V 1 [[2 3 30 31] [2 3 4 5]]", "F 0<-1",
	})
	assertCache(t, f, []int{1}, out)
	if r := st.PerCheck[0]; r != (CheckRecord{Start: 1, Drafted: 3, Accepted: 3, Branch: 1, Token: 6}) {
		t.Fatalf("check %+v", r)
	}
	ps := st.Policy
	if ps.Judged != 3 || ps.Kept != 2 || slices.Compare(ps.Widths, []int{0, 0, 1}) != 0 {
		t.Fatalf("policy stats %+v: the top candidate was kept twice of three", ps)
	}
}

// A low-confidence draft ends the window (it is still checked).
func TestChainStopsBelowLevel(t *testing.T) {
	f := &fakeModel{full: counting(50), sparse: unsureAt3}
	cfg := siriusCfg(8, 6)
	cfg.Policy = PolicyAdaptive
	cfg.plan = func(int) Plan { return Plan{Drafts: 5, Width: 1, StopBelow: 0.5} }
	out, st := generate(t, f, []int{1}, cfg)
	if want := seq(2, 7); !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	// Drafting after 3 is unsure (30 drafted, rejected): the first window
	// stops there. The plan asks for 5 drafts; the room left allows 4, then 2.
	assertLog(t, f.calls("DVT"), []string{
		"D 1 [2]", "D 2 [3]", "V 1 [[2 3 30]]", "T 0 3",
		"D 3 [4]", "D 4 [5]", "V 3 [[4 5 6]]",
	})
	if st.Policy.EarlyStops != 1 || st.Policy.Windows[5] != 1 || st.Policy.Windows[3] != 1 || st.Policy.Lengths[3] != 2 {
		t.Fatalf("policy stats %+v", st.Policy)
	}
}

// Strict acceptance over trees of random shapes equals dense greedy, with
// EOS and stop strings in play, and the caches stay consistent.
func TestTreeStrictEqualsDense(t *testing.T) {
	const v = 24
	for seed := range uint64(8) {
		full := hashModel(v, seed, 0)
		sparse := hashModel(v, seed, 2.5)
		for _, stop := range []func([]int) bool{nil, func(g []int) bool { return len(g) > 3 && g[len(g)-1] == 7 }} {
			ref := siriusCfg(1, 60)
			ref.Mode, ref.Stop = Dense, stop
			dense, _ := generate(t, &fakeModel{full: full, sparse: sparse}, []int{1, 5}, ref)
			for _, width := range []int{2, 3, 4} {
				rng := NewRNG(seed*31 + uint64(width))
				cfg := siriusCfg(8, 60)
				cfg.Policy, cfg.Width, cfg.Accept, cfg.Stop = PolicyAdaptive, width, AcceptStrict, stop
				cfg.plan = func(room int) Plan {
					return Plan{Drafts: int(rng.U32() % 8), Width: 1 + int(rng.U32()%uint32(width)),
						BranchBelow: float64(rng.F32()) * 1.2, StopBelow: float64(rng.F32()) * 0.3}
				}
				f := &fakeModel{full: full, sparse: sparse}
				out, st := generate(t, f, []int{1, 5}, cfg)
				if !slices.Equal(out, dense) {
					t.Fatalf("seed %d width %d: tree %v\n dense %v", seed, width, out, dense)
				}
				if st.Checks != f.verifies {
					t.Fatalf("seed %d width %d: %d checks, %d Verify calls", seed, width, st.Checks, f.verifies)
				}
				if st.StopReason == StopMaxTokens {
					assertCache(t, f, []int{1, 5}, out)
				}
			}
		}
	}
}

// The adaptive policy itself (no forced plans) with trees allowed and the
// prior costs: strict output equals dense.
func TestAdaptiveStrictEqualsDense(t *testing.T) {
	const v = 24
	for seed := range uint64(6) {
		full := hashModel(v, seed, 0)
		for _, noise := range []float32{0, 1, 4} {
			sparse := hashModel(v, seed, noise)
			ref := siriusCfg(1, 80)
			ref.Mode = Dense
			dense, _ := generate(t, &fakeModel{full: full, sparse: sparse}, []int{1, 5}, ref)
			for _, width := range []int{1, 3} {
				for _, prof := range []costProfile{cpuCosts, offloadCosts} {
					cfg := policyCfg(PolicyAdaptive, 16, width, 80)
					cfg.EOS = []int{eos}
					r := runCosted(t, full, sparse, prof, cfg)
					if !slices.Equal(r.out, dense) {
						t.Fatalf("seed %d noise %v width %d %s: adaptive %v\n dense %v", seed, noise, width, prof.name, r.out, dense)
					}
				}
			}
		}
	}
}
