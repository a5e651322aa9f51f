package engine

import (
	"fmt"
	"path/filepath"
	"testing"

	"offload/convert"
	"offload/corrector"
	"offload/pager"
)

// bundleQuant bundles a quantized fixture with a down policy.
func bundleQuant(t *testing.T, src, policy string) string {
	t.Helper()
	f, err := pager.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dst := filepath.Join(t.TempDir(), "bundled-"+policy+".gguf")
	if _, err := convert.Convert(f, dst, convert.Options{Bundle: true, BundleDown: policy}); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestQuantizedBundleExact bundles the Q4_K_M fixture with its down columns
// kept exact (F32): gate and up rows are the file's Q4_K rows, the down part
// the exactly dequantized column. Dense and strict Sirius must give the
// oracle's tokens, resident and streamed, and the sparse model exactly the
// tokens of the unbundled file, whose sparse steps gather the same columns
// dequantized: each part of a bundle is placed with its own type.
func TestQuantizedBundleExact(t *testing.T) {
	dir, o := loadQuantOracle(t)
	m := o.Models["Q4_K_M"]
	plain := filepath.Join(dir, m.File)
	bundled := bundleQuant(t, plain, "f32")
	const stream = 2100 << 10
	for _, run := range []struct {
		name string
		mem  int64
		mode corrector.Mode
	}{{"dense", 0, corrector.Dense}, {"dense-streamed", stream, corrector.Dense},
		{"strict", 0, corrector.Sirius}, {"strict-streamed", stream, corrector.Sirius}} {
		cfg := corrector.DefaultConfig()
		cfg.Mode, cfg.Accept, cfg.Window, cfg.MaxTokens = run.mode, corrector.AcceptStrict, 4, 64
		e := newTestEngine(t, bundled, run.mem, Options{Context: 96}, cfg)
		if !e.M.Bundled || e.M.Layers[0].BundleParts.Types != [3]pager.DType{pager.Q4_K, pager.Q4_K, pager.F32} {
			t.Fatalf("bundle parts %v", e.M.Layers[0].BundleParts.Types)
		}
		if run.mem > 0 && e.Prof.Plan.SlotBytes == 0 {
			t.Fatal("the budget should make layers stream")
		}
		for _, r := range m.Runs {
			res, err := gen(e, r.PromptIDs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.Tokens) != fmt.Sprint(r.Greedy) {
				t.Fatalf("%s, prompt %v:\n got    %v\n oracle %v", run.name, r.PromptIDs, res.Tokens, r.Greedy)
			}
		}
	}
	for _, v := range []struct {
		mem, pack int64
	}{{0, 0}, {stream, 0}, {stream, -1}} {
		var outs [2]string
		for i, path := range []string{plain, bundled} {
			cfg := corrector.DefaultConfig()
			cfg.Mode, cfg.MaxTokens = corrector.Sparse, 48
			e := newTestEngine(t, path, v.mem, Options{Context: 96, HostPack: v.pack}, cfg)
			res, err := gen(e, m.Runs[0].PromptIDs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			outs[i] = fmt.Sprint(res.Tokens)
		}
		if outs[0] != outs[1] {
			t.Fatalf("mem %d pack %d: sparse tokens differ:\n plain   %s\n bundled %s", v.mem, v.pack, outs[0], outs[1])
		}
	}
}

// TestQuantizedBundleRequantized bundles the Q4_K_M fixture with its down
// columns requantized (to the down matrix's own type, and to Q8_0): the
// weights change, so the dense logits move away from the oracle's by about
// one quantization step (bounded here), and strict Sirius still gives the
// bundled model's own dense tokens, resident and streamed, with the quantized
// down parts gathered as rows of their own type.
func TestQuantizedBundleRequantized(t *testing.T) {
	dir, o := loadQuantOracle(t)
	m := o.Models["Q4_K_M"]
	want := oracleQuantLogits(t, dir, m.LogitsFile)
	for _, c := range []struct {
		policy string
		down   pager.DType // layer 0's down part
		tol    float64     // max |logit error| / max |logit| over 16 positions
	}{{convert.BundleDownSame, pager.Q4_K, 0.1}, {convert.BundleDownQ8, pager.Q8_0, 0.02}} {
		t.Run(c.policy, func(t *testing.T) {
			path := bundleQuant(t, filepath.Join(dir, m.File), c.policy)
			e := newTestEngine(t, path, 0, Options{Context: 96}, denseCfg())
			if got := e.M.Layers[0].BundleParts.Types[pager.PartDown]; got != c.down {
				t.Fatalf("layer 0 down part %s, want %s", got, c.down)
			}
			worst := worstLogitError(t, e, m.LogitsIDs, want)
			if worst > c.tol || worst == 0 {
				t.Fatalf("max |logit error| / max |logit| = %.3g, want (0, %g]", worst, c.tol)
			}
			t.Logf("logits within %.3g of the untouched file's oracle", worst)
			var dense []int
			for _, run := range []struct {
				mem  int64
				mode corrector.Mode
			}{{0, corrector.Dense}, {0, corrector.Sirius}, {2100 << 10, corrector.Sirius}} {
				cfg := corrector.DefaultConfig()
				cfg.Mode, cfg.Accept, cfg.Window, cfg.MaxTokens = run.mode, corrector.AcceptStrict, 4, 64
				e := newTestEngine(t, path, run.mem, Options{Context: 96}, cfg)
				res, err := gen(e, m.Runs[0].PromptIDs, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if dense == nil {
					dense = res.Tokens
				} else if fmt.Sprint(res.Tokens) != fmt.Sprint(dense) {
					t.Fatalf("strict Sirius (mem %d) differs from dense:\n got   %v\n dense %v", run.mem, res.Tokens, dense)
				}
			}
		})
	}
}
