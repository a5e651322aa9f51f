package engine

import (
	"bytes"
	"encoding/json"
	"math"
	"path/filepath"
	"testing"

	"offload/corrector"
	"offload/internal/fixtures"
	"offload/model"
	"offload/synth"
)

// smallSynth writes a 2-layer model with 70B-like proportions (FFN 3.5 x
// dim, GQA 8:1... scaled down) and returns its path.
func smallSynth(t *testing.T) string {
	t.Helper()
	s, err := model.LookupShape("llama-3-70b")
	if err != nil {
		t.Fatal(err)
	}
	s.Dim, s.Hidden, s.Heads, s.KVHeads, s.HeadDim, s.MaxSeq = 256, 896, 8, 1, 32, 512
	dir := t.TempDir()
	if err := synth.Write(dir, synth.Options{Shape: s, Layers: 2, Vocab: 300, DType: "bf16", Seed: 3}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func weightBytes(p *Profiler, ph Phase) int64 { return p.Phases[ph].WeightBytes }

// TestDenseStreamingBytes: the report's totals equal the recorded copies,
// and dense streaming moves (model bytes - resident bytes) per token.
func TestDenseStreamingBytes(t *testing.T) {
	path := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	cfg := corrector.DefaultConfig()
	cfg.Mode, cfg.MaxTokens = corrector.Dense, 20
	e := newTestEngine(t, path, 1<<20, Options{}, cfg)
	resident := e.Prof.SetupBytes + e.Prof.MappedBytes
	r, err := gen(e, oracleTokens(t)[:5], cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := e.Prof
	var sum int64
	for _, ph := range p.Phases {
		sum += ph.Bytes()
	}
	if sum+p.SetupBytes+p.WastedBytes != p.CopiedBytes() {
		t.Fatalf("report totals %d + setup %d + wasted prefetch %d != recorded copies %d", sum, p.SetupBytes, p.WastedBytes, p.CopiedBytes())
	}
	if p.WastedBytes == 0 {
		t.Fatal("the last pass should have prefetched a first layer nobody used")
	}
	dec := p.Phases[PhaseDecode]
	if dec.Passes != r.Stats.Generated-1 {
		t.Fatalf("%d decode passes for %d tokens", dec.Passes, r.Stats.Generated)
	}
	want := e.M.WeightBytes() - resident
	if got := dec.WeightBytes / int64(dec.Passes); got != want || dec.WeightBytes%int64(dec.Passes) != 0 {
		t.Fatalf("dense streaming moved %d bytes per token, want model %d - resident %d = %d", got, e.M.WeightBytes(), resident, want)
	}
	if e.Device().Peak() > 1<<20 {
		t.Fatalf("peak device memory %d over the 1 MiB budget", e.Device().Peak())
	}
}

// TestSiriusBytesAcceptAll measures the mechanism alone: with every draft
// kept (AAL = K) the bytes per generated token must be ((K-1) B_sparse +
// B_full)/K, and well under dense streaming.
func TestSiriusBytesAcceptAll(t *testing.T) {
	path := smallSynth(t)
	const K, n = 8, 8*6 + 1
	prompt := []int{1, 5, 9, 13, 17, 21, 25, 29}
	per := map[corrector.Mode]float64{}
	var bs, bf float64
	for _, mode := range []corrector.Mode{corrector.Dense, corrector.Sirius} {
		cfg := corrector.DefaultConfig()
		cfg.Mode, cfg.Accept, cfg.Window, cfg.MaxTokens = mode, corrector.AcceptAll, K, n
		e := newTestEngine(t, path, 0, Options{StreamAll: true, Context: 128}, cfg)
		r, err := gen(e, prompt, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var dec int64
		for ph := PhaseDecode; ph < numPhases; ph++ {
			dec += weightBytes(e.Prof, ph)
		}
		// The first token comes from the prefill; later ones from decode passes.
		per[mode] = float64(dec) / float64(r.Stats.Generated-1)
		if mode == corrector.Sirius {
			if r.Stats.AAL != K {
				t.Fatalf("accept-all AAL %.2f, want %d", r.Stats.AAL, K)
			}
			cfgM := e.Config()
			es := 2.0
			attn := float64(cfgM.Dim*cfgM.Heads*cfgM.HeadDim*2+2*cfgM.Dim*cfgM.KVDim()) * es
			norms := 2 * float64(cfgM.Dim) * es
			k := float64(e.grif.k)
			bs = float64(cfgM.Layers) * (attn + norms + 3*k*float64(cfgM.Dim)*es)
			bf = float64(cfgM.Layers) * (attn + norms + 3*float64(cfgM.Hidden*cfgM.Dim)*es)
			if d := weightBytes(e.Prof, PhaseDraft) / int64(e.Prof.Phases[PhaseDraft].Passes); math.Abs(float64(d)-bs)/bs > 0.01 {
				t.Fatalf("a sparse pass moved %d bytes, tensor sizes say %.0f", d, bs)
			}
		}
	}
	want := (float64(K-1)*bs + bf) / K
	got := per[corrector.Sirius]
	if math.Abs(got-want)/want > 0.02 {
		t.Fatalf("sirius moved %.0f bytes/token, formula ((K-1)Bs+Bf)/K = %.0f", got, want)
	}
	if ratio := got / per[corrector.Dense]; ratio > 0.66 {
		t.Fatalf("sirius/dense bytes ratio %.3f > 0.66", ratio)
	}
	t.Logf("bytes/token: dense %.0f, sirius %.0f (formula %.0f), ratio %.3f", per[corrector.Dense], got, want, got/per[corrector.Dense])
}

// TestSiriusBytesMeasuredAAL: with normal acceptance on stories260K, bytes
// per token equal ((K-1) B_sparse + B_full)/AAL with the measured AAL.
func TestSiriusBytesMeasuredAAL(t *testing.T) {
	path := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	const K = 8
	cfg := corrector.DefaultConfig()
	cfg.Window, cfg.MaxTokens = K, 300
	e := newTestEngine(t, path, 0, Options{StreamAll: true, Context: 400}, cfg)
	r, err := gen(e, oracleTokens(t)[:5], cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := e.Prof
	bs := float64(p.Phases[PhaseDraft].WeightBytes) / float64(p.Phases[PhaseDraft].Passes)
	bf := float64(p.Phases[PhaseCheck].WeightBytes) / float64(p.Phases[PhaseCheck].Passes)
	want := (float64(K-1)*bs + bf) / r.Stats.AAL
	got := float64(p.Phases[PhaseDraft].WeightBytes+p.Phases[PhaseCheck].WeightBytes) / float64(r.Decoded())
	if math.Abs(got-want)/want > 0.02 {
		t.Fatalf("bytes/token %.0f, ((K-1)Bs+Bf)/AAL = %.0f (AAL %.2f)", got, want, r.Stats.AAL)
	}
	t.Logf("AAL %.2f, bytes/token %.0f, formula %.0f", r.Stats.AAL, got, want)
}

// TestTrace checks that --trace output is valid trace-event JSON with one
// track per stream and complete spans.
func TestTrace(t *testing.T) {
	path := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	cfg := corrector.DefaultConfig()
	cfg.Mode, cfg.MaxTokens = corrector.Dense, 4
	e := newTestEngine(t, path, 1<<20, Options{Trace: true}, cfg)
	if _, err := gen(e, oracleTokens(t)[:5], cfg); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Prof.WriteTrace(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		TraceEvents []struct {
			Name string         `json:"name"`
			Ph   string         `json:"ph"`
			Ts   float64        `json:"ts"`
			Dur  float64        `json:"dur"`
			Tid  int            `json:"tid"`
			Args map[string]any `json:"args"`
		} `json:"traceEvents"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("trace is not JSON: %v", err)
	}
	tracks := map[int]string{}
	spans := map[int]int{}
	for _, ev := range doc.TraceEvents {
		switch ev.Ph {
		case "M":
			if ev.Name == "thread_name" {
				tracks[ev.Tid] = ev.Args["name"].(string)
			}
		case "X":
			if ev.Dur < 0 || ev.Ts < 0 {
				t.Fatalf("bad span %+v", ev)
			}
			spans[ev.Tid]++
		default:
			t.Fatalf("unexpected phase %q", ev.Ph)
		}
	}
	if tracks[1] != "copy stream" || tracks[2] != "compute stream" {
		t.Fatalf("tracks %v", tracks)
	}
	// 5 decode passes (prefill + 3 tokens... ) each compute 6 units.
	if spans[2] != 6*e.Prof.Totals().Passes {
		t.Fatalf("%d compute spans for %d passes of 6 units", spans[2], e.Prof.Totals().Passes)
	}
	if spans[1] == 0 {
		t.Fatal("no copy spans although the model streams")
	}
}
