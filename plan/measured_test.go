package plan

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// measuredRun builds a bench record for cfg's layers: every pass of a phase
// takes compute seconds per layer and copies at rate bytes/s.
func measuredRun(layers int, compute, rate float64, copyBytes int64, phases map[string]int) MeasuredMode {
	mm := MeasuredMode{Tokens: 100}
	for _, name := range []string{PhaseFull, PhaseSparse, PhaseCheck} {
		n, ok := phases[name]
		if !ok {
			continue
		}
		ph := MeasuredPhase{Phase: name, Count: n}
		for l := 0; l < layers; l++ {
			ph.Layers = append(ph.Layers, MeasuredLayer{
				Layer: l, CopyBytes: copyBytes * int64(n), CopySeconds: float64(copyBytes*int64(n)) / rate,
				ComputeSeconds: compute * float64(n)})
		}
		mm.Phases = append(mm.Phases, ph)
	}
	return mm
}

func TestPredictMeasured(t *testing.T) {
	cfg := shape(t, "llama-3-70b")
	// Dense measured: 200 ms compute per layer (compute-bound, slower than
	// the 68 ms link), copies at 20 GB/s. Sparse is absent: tables.
	dense := measuredRun(cfg.Layers, 0.2, 20e9, 1<<30, map[string]int{PhaseFull: 100})
	dense.Mode = "dense"
	sirius := measuredRun(cfg.Layers, 0.001, 10e9, 1<<30, map[string]int{PhaseSparse: 90, PhaseCheck: 6})
	sirius.Mode = "sirius"
	m := &Measured{LinkGBps: 20, Modes: []MeasuredMode{dense, sirius}}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m, err = ParseMeasured(data)
	if err != nil {
		t.Fatal(err)
	}
	p := Params{GPU: gpu(t, "a100-80gb"), Link: 25e9, Paper: true, AAL: 15.22, Measured: m}
	pred, err := Predict(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	p.Measured = nil
	tables, err := Predict(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	d := pred.Mode(Dense)
	if d.Source != "measured+tables" { // the head stage (layer -1) was not recorded
		t.Errorf("dense source %q", d.Source)
	}
	for _, l := range d.Layers[:cfg.Layers] {
		if math.Abs(l.ComputeSeconds-0.2) > 1e-12 || math.Abs(l.Seconds-0.2) > 1e-12 {
			t.Fatalf("layer %d: compute %v s, total %v s; want the measured 0.2", l.Layer, l.ComputeSeconds, l.Seconds)
		}
		if want := l.StreamedBytes / 20e9; math.Abs(l.LinkSeconds-want) > 1e-12 {
			t.Fatalf("layer %d: link %v s, want streamed/20 GB/s = %v", l.Layer, l.LinkSeconds, want)
		}
	}
	if s := pred.Mode(Sparse); s.Source != "tables" || s.SecondsPerToken != tables.Mode(Sparse).SecondsPerToken {
		t.Errorf("sparse without a record: source %q, %v s vs tables %v", s.Source, s.SecondsPerToken, tables.Mode(Sparse).SecondsPerToken)
	}
	// Sirius: link-bound at the measured 10 GB/s, 2.5x the table's time.
	si, st := pred.Mode(Sirius), tables.Mode(Sirius)
	if r := si.LinkSecondsPerToken / st.LinkSecondsPerToken; math.Abs(r-2.5) > 0.01 {
		t.Errorf("sirius link time ratio measured/tables %.3f, want 2.5", r)
	}
	// Bytes per token come from the plan, not the measured copies.
	if si.BytesPerToken != st.BytesPerToken {
		t.Errorf("sirius bytes/token %v, tables %v", si.BytesPerToken, st.BytesPerToken)
	}

	// A record from a model with more layers is refused.
	big := measuredRun(cfg.Layers+1, 0.1, 20e9, 1, map[string]int{PhaseFull: 1})
	big.Mode = "dense"
	p.Measured = &Measured{Modes: []MeasuredMode{big}}
	if _, err := Predict(cfg, p); err == nil || !strings.Contains(err.Error(), "was it recorded on this model") {
		t.Errorf("mismatched layers: %v", err)
	}
}

func TestParseMeasuredErrors(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"not json", `{`, "decode"},
		{"not an object", `[1,2]`, "decode"},
		{"unknown mode", `{"modes":[{"mode":"turbo","tokens":1,"phases":[{"phase":"full","count":1}]}]}`, "unknown mode"},
		{"zero tokens", `{"modes":[{"mode":"dense","tokens":0,"phases":[{"phase":"full","count":1}]}]}`, "tokens"},
		{"no phases", `{"modes":[{"mode":"dense","tokens":3}]}`, "no phases"},
		{"bad phase", `{"modes":[{"mode":"dense","tokens":3,"phases":[{"phase":"warm","count":1}]}]}`, "unknown phase"},
		{"zero count", `{"modes":[{"mode":"dense","tokens":3,"phases":[{"phase":"full","count":0}]}]}`, "count"},
		{"negative time", `{"modes":[{"mode":"dense","tokens":3,"phases":[{"phase":"full","count":1,"layers":[{"layer":0,"compute_seconds":-1}]}]}]}`, "negative"},
		{"layer twice", `{"modes":[{"mode":"dense","tokens":3,"phases":[{"phase":"full","count":1,"layers":[{"layer":0},{"layer":0}]}]}]}`, "twice"},
		{"layer range", `{"modes":[{"mode":"dense","tokens":3,"phases":[{"phase":"full","count":1,"layers":[{"layer":-2}]}]}]}`, "out of range"},
		{"mode twice", `{"modes":[{"mode":"dense","tokens":1,"phases":[{"phase":"full","count":1}]},{"mode":"full","tokens":1,"phases":[{"phase":"full","count":1}]}]}`, "twice"},
		{"negative link", `{"link_gbps":-3,"modes":[]}`, "link_gbps"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMeasured([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// The shape `offload bench --json` prints: Measured's fields inline, next to
// fields plan does not read.
func TestParseBenchRecord(t *testing.T) {
	m, err := ParseMeasured([]byte(`{"model":"m","device":"host","link_gbps":9.5,"modes":[{"mode":"dense","tokens":4,
		"phases":[{"phase":"full","count":4,"layers":[{"layer":0,"copy_bytes":8,"copy_seconds":1,"compute_seconds":2},{"layer":-1}]}]}],
		"memcpy_gbps":12,"results":[{"mode":"dense","seconds_per_token":0.5}],"notes":["x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Device != "host" || m.LinkGBps != 9.5 || len(m.Modes) != 1 || m.Modes[0].Phases[0].Layers[0].ComputeSeconds != 2 {
		t.Errorf("parsed %+v", m)
	}
}

func TestLoadMeasured(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "bench.json")
	if err := os.WriteFile(good, []byte(`{"link_gbps":24.5,"modes":[{"mode":"sparse","tokens":8,"phases":[{"phase":"sparse","count":8,"layers":[{"layer":0,"copy_bytes":100,"copy_seconds":0.5,"compute_seconds":0.25}]}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMeasured(good)
	if err != nil {
		t.Fatal(err)
	}
	if m.LinkGBps != 24.5 || m.mode(Sparse) == nil || m.mode(Sparse).phase(PhaseSparse).layer(0).CopyBytes != 100 {
		t.Errorf("loaded %+v", m)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`[1,2]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMeasured(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad file: %v, want an error naming it", err)
	}
	if _, err := LoadMeasured(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}

func FuzzParseMeasured(f *testing.F) {
	f.Add([]byte(`{"link_gbps":24.5,"modes":[{"mode":"sirius","tokens":8,"aal":7.5,"phases":[{"phase":"sparse","count":7,"layers":[{"layer":0,"copy_bytes":100,"copy_seconds":0.5,"compute_seconds":0.25},{"layer":-1}]},{"phase":"check","count":1,"layers":[{"layer":1}]}]}]}`))
	f.Add([]byte(`{"modes":[{"mode":"dense","tokens":1,"phases":[{"phase":"full","count":1,"layers":[{"layer":2}]}]}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"modes":[{"mode":"dense","tokens":1e400}]}`))
	cfg := shape(f, "llama-2-7b")
	cfg.Layers = 4
	g := gpu(f, "a40")
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMeasured(data)
		if err != nil {
			return
		}
		// Anything that validates must predict without panicking, and with
		// finite, non-negative numbers.
		pred, err := Predict(cfg, Params{GPU: g, Link: 25e9, Paper: true, Measured: m})
		if err != nil {
			return
		}
		for _, mp := range pred.Modes {
			if math.IsNaN(mp.SecondsPerToken) || mp.SecondsPerToken < 0 {
				t.Fatalf("%s: %v s/token from %s", mp.Mode, mp.SecondsPerToken, data)
			}
		}
	})
}
