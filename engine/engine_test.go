package engine

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"offload/corrector"
	"offload/device"
	"offload/device/host"
	"offload/internal/fixtures"
	"offload/model"
)

// oracleTokens is the llama2.c greedy sequence for "Once upon a time"
// (ORACLE.md run 1): the prompt, then 60 greedy picks.
func oracleTokens(t *testing.T) []int {
	s := "1 403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 337 335 312 432 398 312 286 267 414 270 333 415 426 13 438 310"
	var out []int
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func oracleLogits(t *testing.T) [][]float32 {
	b, err := os.ReadFile(filepath.Join(fixtures.Stories(t), "oracle_logits_once_upon_a_time_64x512.f32"))
	if err != nil {
		t.Fatal(err)
	}
	rows := make([][]float32, 64)
	for p := range rows {
		rows[p] = make([]float32, 512)
		for j := range rows[p] {
			rows[p][j] = math.Float32frombits(binary.LittleEndian.Uint32(b[(p*512+j)*4:]))
		}
	}
	return rows
}

// newTestEngine opens path on a host device with budget mem (0: 1 GiB) and
// builds an engine whose decoding (mode, window, width, acceptance) is
// cfg's; the other Decoding fields (sparsity, keep) come from opt.
func newTestEngine(t *testing.T, path string, mem int64, opt Options, cfg corrector.Config) *Engine {
	t.Helper()
	dev, err := host.New(host.Options{Capacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return newTestEngineOn(t, dev, path, mem, opt, cfg)
}

// newTestEngineOn is newTestEngine on a given device.
func newTestEngineOn(t *testing.T, dev device.Device, path string, mem int64, opt Options, cfg corrector.Config) *Engine {
	t.Helper()
	d := opt.Decoding
	if d.Sparsity == "" {
		d = DefaultDecoding()
		d.Sparsity, d.Keep = opt.Sparsity, opt.Keep
	}
	d.Mode, d.Policy, d.Window, d.Width, d.Accept, d.Threshold = cfg.Mode, cfg.Policy, cfg.Window, max(cfg.Width, 1), cfg.Accept, cfg.Threshold
	opt.Decoding = d
	m, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	opt.DeviceMem = mem
	if opt.Context == 0 {
		opt.Context = 128
	}
	e, err := New(m, dev, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// gen generates from prompt with cfg's request fields (tokens, sampling).
func gen(e *Engine, prompt []int, cfg corrector.Config) (*Result, error) {
	return e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: cfg.MaxTokens, Temperature: cfg.Temperature,
		TopP: cfg.TopP, Seed: cfg.Seed, EOS: cfg.EOS, Stop: cfg.Stop}, nil)
}

// denseCfg is plain greedy decoding.
func denseCfg() corrector.Config {
	c := corrector.DefaultConfig()
	c.Mode = corrector.Dense
	return c
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// TestOracleLogits feeds the oracle sequence one token at a time (as run.c
// does) and compares every position's logits, for each file format and for
// resident and streamed weights.
func TestOracleLogits(t *testing.T) {
	dir := fixtures.Stories(t)
	want := oracleLogits(t)
	seq := oracleTokens(t)
	for _, tc := range []struct {
		name string
		file string
		mem  int64
		opt  Options
	}{
		{"gguf-resident", "stories260K.gguf", 0, Options{}},
		{"llama2c-resident", "stories260K.bin", 0, Options{}},
		{"gguf-streamed", "stories260K.gguf", 1 << 20, Options{}},
		{"gguf-streamed-noprefetch", "stories260K.gguf", 1 << 20, Options{NoPrefetch: true}},
		{"gguf-streamed-staged", "stories260K.gguf", 1 << 20, Options{StageAll: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, filepath.Join(dir, tc.file), tc.mem, tc.opt, denseCfg())
			if tc.mem > 0 && e.Prof.Plan.SlotBytes == 0 {
				t.Fatalf("budget %d should force streaming: %v", tc.mem, e.Prof.Plan)
			}
			var worst float64
			for p := 0; p < 64; p++ {
				out, err := e.Forward(context.Background(), []Seq{{Toks: []int{seq[p]}, Pos: p, Logits: true}}, PhaseDecode, FFNFull)
				if err != nil {
					t.Fatal(err)
				}
				got := out[0][0]
				var maxAbs float64
				for _, v := range want[p] {
					maxAbs = max(maxAbs, math.Abs(float64(v)))
				}
				for j := range got {
					d := math.Abs(float64(got[j]-want[p][j])) / maxAbs
					worst = max(worst, d)
				}
				if p >= 4 && argmax(got) != seq[p+1] {
					t.Fatalf("position %d: argmax %d, oracle %d", p, argmax(got), seq[p+1])
				}
			}
			if worst > 1e-4 {
				t.Fatalf("max relative logit error %.3g > 1e-4", worst)
			}
			t.Logf("max abs logit error / max|logit| = %.3g", worst)
			if e.Device().Peak() > e.Prof.Plan.Budget {
				t.Fatalf("peak device bytes %d exceed budget %d", e.Device().Peak(), e.Prof.Plan.Budget)
			}
		})
	}
}

// TestBatchedPrefillMatchesOracle prefills the prompt in one batched pass
// and checks each prompt position's logits.
func TestBatchedPrefillMatchesOracle(t *testing.T) {
	want := oracleLogits(t)
	seq := oracleTokens(t)
	e := newTestEngine(t, filepath.Join(fixtures.Stories(t), "stories260K.gguf"), 0, Options{}, corrector.DefaultConfig())
	out, err := e.Forward(context.Background(), []Seq{{Toks: seq[:5], Pos: 0, Logits: true}}, PhasePrefill, FFNFull)
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < 5; p++ {
		for j, v := range out[0][p] {
			if d := math.Abs(float64(v - want[p][j])); d > 1e-4*20 {
				t.Fatalf("pos %d logit %d: got %g want %g", p, j, v, want[p][j])
			}
		}
	}
}

// TestGenerateModes runs the corrector loop over the engine: dense greedy
// must reproduce the oracle; Sirius with strict acceptance must equal dense.
func TestGenerateModes(t *testing.T) {
	seq := oracleTokens(t)
	path := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	prompt := seq[:5]
	for _, tc := range []struct {
		name string
		mem  int64
		mode corrector.Mode
		acc  corrector.Accept
	}{
		{"dense", 0, corrector.Dense, corrector.AcceptThreshold},
		{"dense-streamed", 1 << 20, corrector.Dense, corrector.AcceptThreshold},
		{"sirius-strict", 0, corrector.Sirius, corrector.AcceptStrict},
		{"sirius-strict-streamed", 1 << 20, corrector.Sirius, corrector.AcceptStrict},
		{"sirius-strict-streamed-staged", 1 << 20, corrector.Sirius, corrector.AcceptStrict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := corrector.DefaultConfig()
			cfg.Mode, cfg.Accept, cfg.Window, cfg.MaxTokens = tc.mode, tc.acc, 4, 60
			e := newTestEngine(t, path, tc.mem, Options{StageAll: strings.HasSuffix(tc.name, "staged"), HostPack: -1}, cfg)
			r, err := gen(e, prompt, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := append(append([]int{}, prompt...), r.Tokens...)
			if len(got) != len(seq) {
				t.Fatalf("got %d tokens, want %d", len(got), len(seq))
			}
			for i := range seq {
				if got[i] != seq[i] {
					t.Fatalf("token %d: got %d want %d\n got %v", i, got[i], seq[i], got)
				}
			}
			t.Logf("%s: AAL %.2f checks %d", tc.name, r.Stats.AAL, r.Stats.Checks)
		})
	}
}

// TestChunkedPrefill: a prompt longer than the batch is prefilled in
// chunks (each streaming the layers again) and still ends at the oracle's
// logits; Griffin statistics accumulate over every chunk.
func TestChunkedPrefill(t *testing.T) {
	want := oracleLogits(t)
	seq := oracleTokens(t)
	for _, mem := range []int64{0, 1 << 20} {
		cfg := corrector.DefaultConfig()
		cfg.Window = 4
		e := newTestEngine(t, filepath.Join(fixtures.Stories(t), "stories260K.gguf"), mem, Options{MaxBatch: 8}, cfg)
		m := &siriusModel{e: e, ctx: context.Background()}
		last, err := m.Prefill(seq[:21])
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Prof.Phases[PhasePrefill].Passes; got != 3 {
			t.Fatalf("21 tokens in batches of 8: %d prefill passes, want 3", got)
		}
		for j, v := range last {
			if d := math.Abs(float64(v - want[20][j])); d > 2e-3 {
				t.Fatalf("mem %d: logit %d after chunked prefill: %g, oracle %g", mem, j, v, want[20][j])
			}
		}
		if n := e.grif.stats[0].Tokens(); n != 21 {
			t.Fatalf("griffin saw %d prompt tokens, want 21", n)
		}
	}
}
