package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"offload/corrector"
	"offload/device"
	"offload/internal/emu"
	"offload/internal/fixtures"
	"offload/model"
)

// quantOracle is ../shared/models/stories260K-q/oracle_greedy.json: the
// exact-dequantization numpy forward's greedy runs and logits per file.
type quantOracle struct {
	Models map[string]struct {
		File string `json:"file"`
		Runs []struct {
			PromptIDs []int `json:"prompt_ids"`
			Greedy    []int `json:"greedy_ids"`
		} `json:"runs"`
		LogitsFile string `json:"logits_file"`
		LogitsIDs  []int  `json:"logits_input_ids"`
	} `json:"models"`
}

func loadQuantOracle(t *testing.T) (string, quantOracle) {
	dir := filepath.Join(fixtures.Shared(t), "models", "stories260K-q")
	b, err := os.ReadFile(filepath.Join(dir, "oracle_greedy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var o quantOracle
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	if len(o.Models) < 12 {
		t.Fatalf("oracle has %d models", len(o.Models))
	}
	return dir, o
}

// TestQuantizedOracle runs every quantized fixture (every GGUF type the
// runtime reads, and llama.cpp's mixed *_K_M/_K_S files) against the
// exact-dequantization oracle: the logits of the first 16 positions within
// 1e-4 of the largest, and the greedy tokens of four prompts, dense and
// strict Sirius (fixed and adaptive windows), resident and streamed.
func TestQuantizedOracle(t *testing.T) {
	dir, o := loadQuantOracle(t)
	for typ, m := range o.Models {
		t.Run(typ, func(t *testing.T) {
			path := filepath.Join(dir, m.File)
			stream := checkQuantLogits(t, dir, m.File, m.LogitsFile, m.LogitsIDs, func(mem int64) *Engine {
				return newTestEngine(t, path, mem, Options{Context: 96}, denseCfg())
			})
			for _, run := range []struct {
				name   string
				mem    int64
				mode   corrector.Mode
				policy corrector.WindowPolicy
			}{
				{"dense", 0, corrector.Dense, corrector.PolicyFixed},
				{"dense-streamed", stream, corrector.Dense, corrector.PolicyFixed},
				{"strict-fixed", 0, corrector.Sirius, corrector.PolicyFixed},
				{"strict-fixed-streamed", stream, corrector.Sirius, corrector.PolicyFixed},
				{"strict-adaptive-streamed", stream, corrector.Sirius, corrector.PolicyAdaptive},
			} {
				cfg := corrector.DefaultConfig()
				cfg.Mode, cfg.Policy, cfg.Accept, cfg.Window, cfg.MaxTokens = run.mode, run.policy, corrector.AcceptStrict, 4, 64
				e := newTestEngine(t, path, run.mem, Options{Context: 96}, cfg)
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
		})
	}
}

// checkQuantLogits holds the logits of the oracle's first positions (fed one
// at a time, dense) within 1e-4 of the largest oracle logit, on an engine
// with every weight resident and on one whose budget (returned) makes about
// half the layers stream; open builds the engine for a budget.
func checkQuantLogits(t *testing.T, dir, file, logitsFile string, ids []int, open func(mem int64) *Engine) (stream int64) {
	t.Helper()
	want := oracleQuantLogits(t, dir, logitsFile)
	mm, err := model.Open(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	// Half the weights plus the KV cache and activations: every file
	// streams some layers.
	stream = mm.WeightBytes()/2 + 1200<<10
	mm.Close()
	for _, mem := range []int64{0, stream} {
		e := open(mem)
		if mem > 0 && (e.Prof.Plan.SlotBytes == 0 || e.Prof.Plan.Resident >= e.M.WeightBytes()) {
			t.Fatalf("budget %d should make layers stream: %v", mem, e.Prof.Plan)
		}
		worst := worstLogitError(t, e, ids, want)
		if worst > 1e-4 {
			t.Fatalf("mem %d: max |logit error| / max |logit| = %.3g > 1e-4", mem, worst)
		}
		t.Logf("mem %d: logits within %.2g of the oracle", mem, worst)
	}
	return stream
}

// quantVocab is the quantized fixtures' vocabulary.
const quantVocab = 512

// oracleQuantLogits reads a fixture's oracle logits (f32, quantVocab a
// position).
func oracleQuantLogits(t *testing.T, dir, logitsFile string) []float32 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, logitsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, len(raw)/4)
	for i := range want {
		want[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return want
}

// worstLogitError feeds ids one position at a time (dense) and returns the
// largest |logit - oracle| over the largest |oracle logit| of its position.
func worstLogitError(t *testing.T, e *Engine, ids []int, want []float32) float64 {
	t.Helper()
	const V = quantVocab
	var worst float64
	for p, id := range ids {
		out, err := e.Forward(context.Background(), []Seq{{Toks: []int{id}, Pos: p, Logits: true}}, PhaseDecode, FFNFull)
		if err != nil {
			t.Fatal(err)
		}
		row := want[p*V : (p+1)*V]
		var maxAbs float64
		for _, v := range row {
			maxAbs = max(maxAbs, math.Abs(float64(v)))
		}
		for j, v := range out[0][0] {
			worst = max(worst, math.Abs(float64(v-row[j]))/maxAbs)
		}
	}
	return worst
}

// TestEmuQuantizedOracle is TestQuantizedOracle's logits check on the
// emulated CUDA driver (scripts/emu-test.sh; skipped without OFFLOAD_EMU):
// every quantized fixture's product runs in the CUDA kernels, resident and
// streamed, and must agree with the exact-dequantization oracle as the
// host backend does. The greedy runs on the emulator are in cmd/offload's
// TestEmuRunQuantMatchesHost.
func TestEmuQuantizedOracle(t *testing.T) {
	emu.Use(t)
	dir, o := loadQuantOracle(t)
	for typ, m := range o.Models {
		t.Run(typ, func(t *testing.T) {
			dev, err := device.Open("cuda", device.Config{Capacity: 256 << 20})
			if err != nil {
				t.Fatal("the emulated CUDA device does not open:", err)
			}
			t.Cleanup(func() { dev.Close() })
			path := filepath.Join(dir, m.File)
			checkQuantLogits(t, dir, m.File, m.LogitsFile, m.LogitsIDs, func(mem int64) *Engine {
				return newTestEngineOn(t, dev, path, mem, Options{Context: 96}, denseCfg())
			})
		})
	}
}

// TestQuantizedTopK: per-token top-k on a quantized file (whose down
// columns are gathered dequantized, on the host) still gives the oracle's
// greedy tokens under strict acceptance, resident and streamed.
func TestQuantizedTopK(t *testing.T) {
	dir, o := loadQuantOracle(t)
	m := o.Models["Q4_K_M"]
	path := filepath.Join(dir, m.File)
	for _, mem := range []int64{0, 2100 << 10} {
		cfg := corrector.DefaultConfig()
		cfg.Accept, cfg.Window, cfg.MaxTokens = corrector.AcceptStrict, 4, 64
		e := newTestEngine(t, path, mem, Options{Context: 96, Decoding: Decoding{Sparsity: "topk"}}, cfg)
		if mem > 0 && e.Prof.Plan.SlotBytes == 0 {
			t.Fatal("the budget should make layers stream")
		}
		r := m.Runs[0]
		res, err := gen(e, r.PromptIDs, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(res.Tokens) != fmt.Sprint(r.Greedy) {
			t.Fatalf("mem %d: strict top-k Sirius\n got    %v\n oracle %v", mem, res.Tokens, r.Greedy)
		}
	}
}

// TestQuantizedSparseSame: the sparse model of a quantized file (Griffin
// rows gathered on the device, packed on the host once per sequence, or
// gathered every step; quantized down columns dequantized) gives the same
// tokens however its rows travel. Strict Sirius cannot show a broken sparse
// model (it corrects every draft), so this runs the sparse model alone.
func TestQuantizedSparseSame(t *testing.T) {
	dir, o := loadQuantOracle(t)
	for _, typ := range []string{"Q4_K_M", "Q8_0"} {
		m := o.Models[typ]
		path := filepath.Join(dir, m.File)
		var outs []string
		for _, v := range []struct {
			mem  int64
			pack int64
		}{{0, 0}, {2100 << 10, 0}, {2100 << 10, -1}} {
			cfg := corrector.DefaultConfig()
			cfg.Mode, cfg.MaxTokens = corrector.Sparse, 48
			e := newTestEngine(t, path, v.mem, Options{Context: 96, HostPack: v.pack}, cfg)
			res, err := gen(e, m.Runs[0].PromptIDs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, fmt.Sprint(res.Tokens))
		}
		if outs[0] != outs[1] || outs[0] != outs[2] {
			t.Fatalf("%s: sparse tokens differ:\n resident %s\n packed   %s\n gathered %s", typ, outs[0], outs[1], outs[2])
		}
		if outs[0] == fmt.Sprint(m.Runs[0].Greedy[:48]) {
			t.Errorf("%s: the sparse model equals dense: is it sparse?", typ)
		}
	}
}
