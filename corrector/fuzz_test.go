package corrector

import (
	"slices"
	"testing"
)

// FuzzGenerate drives the loop with pseudo-random models and settings. The
// fake model rejects every protocol violation (non-appending drafts, checks
// over sparse K/V, bad truncations or forks) as an error; on top of that,
// strict greedy acceptance must equal dense greedy decoding, and the
// statistics must add up (sampling runs too, for the speculative path).
func FuzzGenerate(f *testing.F) {
	f.Add(uint64(1), uint8(4), uint8(1), uint8(0), uint8(20), float32(1.5))
	f.Add(uint64(2), uint8(16), uint8(3), uint8(1), uint8(40), float32(3))
	f.Add(uint64(3), uint8(1), uint8(2), uint8(2), uint8(5), float32(0))
	f.Add(uint64(4), uint8(7), uint8(4), uint8(1), uint8(1), float32(8))
	f.Add(uint64(5), uint8(6), uint8(1), uint8(4), uint8(30), float32(2))
	f.Add(uint64(6), uint8(9), uint8(3), uint8(9), uint8(40), float32(2))
	f.Add(uint64(7), uint8(12), uint8(4), uint8(12), uint8(40), float32(1))
	f.Fuzz(func(t *testing.T, seed uint64, k, w, accept, maxTok uint8, noise float32) {
		if !(noise >= 0 && noise < 100) {
			return
		}
		const v = 12
		full := hashModel(v, seed, 0)
		sparse := hashModel(v, seed, noise)
		cfg := siriusCfg(int(k%20)+1, int(maxTok%48)+1)
		cfg.Width = int(w%4) + 1
		cfg.Accept = Accept(accept % 3)
		adaptive := accept&8 != 0
		if accept&4 != 0 { // sampling: speculative rule (fixed-policy beams are greedy only)
			cfg.Temperature, cfg.TopP, cfg.Seed = 0.8, 0.9, seed
			if !adaptive {
				cfg.Width = 1
			}
		}
		if adaptive { // trees of pseudo-random shapes
			rng := NewRNG(seed ^ 0x5eed)
			cfg.Policy = PolicyAdaptive
			cfg.plan = func(room int) Plan {
				return Plan{Drafts: int(rng.U32() % 20), Width: 1 + int(rng.U32()%4),
					BranchBelow: float64(rng.F32()) * 1.2, StopBelow: float64(rng.F32()) * 0.2}
			}
		}
		fm := &fakeModel{full: full, sparse: sparse}
		var out []int
		st, err := Generate(fm, []int{1, 2}, cfg, func(tok int) error { out = append(out, tok); return nil })
		if err != nil {
			t.Fatalf("Generate: %v\ncalls %v", err, fm.log)
		}
		if st.Generated != len(out) || len(out) > cfg.MaxTokens || st.Accepted > st.Drafted || st.Checks != fm.verifies {
			t.Fatalf("stats do not add up: %+v (emitted %d)", st, len(out))
		}
		for _, r := range st.PerCheck {
			if r.Accepted > r.Drafted || r.Drafted > cfg.Window-1 || r.Corrected != (r.Accepted < r.Drafted) {
				t.Fatalf("check record %+v", r)
			}
		}
		if slices.Contains(out, eos) {
			t.Fatal("EOS emitted")
		}
		if cfg.Accept == AcceptStrict && cfg.Temperature == 0 {
			ref := cfg
			ref.Mode = Dense
			var dense []int
			if _, err := Generate(&fakeModel{full: full, sparse: sparse}, []int{1, 2}, ref, func(tok int) error { dense = append(dense, tok); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out, dense) {
				t.Fatalf("strict %v != dense %v", out, dense)
			}
		}
		if st.StopReason == StopMaxTokens {
			assertCache(t, fm, []int{1, 2}, out)
		}
	})
}
