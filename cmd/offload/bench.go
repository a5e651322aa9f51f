package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"offload"
	"offload/corrector"
	"offload/device"
	"offload/engine"
	"offload/model"
	"offload/plan"
	"offload/plan/plot"
)

func benchCommand() *cli.Command {
	flags := []cli.Flag{
		modelFlag(),
		&cli.StringFlag{Name: "modes", Value: "resident,dense,sparse,sirius", Usage: "comma-separated modes to compare: resident (whole model on the device, dense), dense (streamed), sparse, sirius (the --window-policy), sirius-fixed (the fixed --window) or sirius-fixed=K (a fixed window of K)"},
		&cli.IntFlag{Name: "n", Value: 33, Usage: "tokens to generate per mode (the first comes from the prefill; speed is measured over the rest)"},
		&cli.IntFlag{Name: "prompt-len", Value: 16, Usage: "prompt length in tokens (seeded random ids; models without a tokenizer work too)"},
		&cli.StringFlag{Name: "prompt", Usage: "prompt text instead of random ids (needs the model's tokenizer)"},
		&cli.BoolFlag{Name: "json", Usage: "print the results as JSON (also readable by `offload plan --measured`)"},
		&cli.StringFlag{Name: "plot", Usage: "draw s/token per mode and the copy/compute timeline of the last mode to this .svg or .png"},
		&cli.StringFlag{Name: "trace", Usage: "write the last mode's Chrome trace-event timeline to this file"},
	}
	flags = append(flags, except(decodeFlags(), "mode")...) // --modes lists them
	flags = append(flags, deviceFlags()...)
	return &cli.Command{
		Name:  "bench",
		Usage: "compare resident, dense-streamed, sparse and Sirius decoding side by side in one process",
		Description: `Runs the same generation in each mode, one after another in the same process, and prints
s/token, bytes moved per token, achieved copy GB/s against ceilings measured in the same run (host
memcpy and the device link), copy/compute overlap, and each mode's ratio to dense streaming.

Without --device-mem the streamed modes keep only the LM head resident (the paper's setting: every
layer streams); with it, the residency plan fills the budget.

Example (a 2-layer 70B-shape model on an emulated PCIe 4 link, every draft kept):
  offload synth --shape llama-3-70b --layers 2 --vocab 32000 -o /tmp/l70b
  offload bench --model /tmp/l70b --link pcie4 --accept all -n 16 --modes dense,sparse,sirius`,
		Flags:  flags,
		Action: benchAction,
	}
}

// BenchResult is one mode's row.
type BenchResult struct {
	Mode           string               `json:"mode"`
	Tokens         int                  `json:"tokens"`
	SecondsPerTok  float64              `json:"seconds_per_token"`
	BytesPerTok    float64              `json:"bytes_per_token"`
	CopyGBps       float64              `json:"copy_gb_per_s"`
	Overlap        float64              `json:"overlap"`
	CopySeconds    float64              `json:"copy_seconds"`
	ComputeSeconds float64              `json:"compute_seconds"`
	WallSeconds    float64              `json:"wall_seconds"`
	AAL            float64              `json:"aal,omitempty"`
	Resident       int64                `json:"resident_bytes"`
	Phases         []engine.PhaseReport `json:"phases"`
	RatioToDense   float64              `json:"ratio_to_dense,omitempty"`
}

func benchAction(c *cli.Context) error {
	n := c.Int("n")
	base, err := readSampling(c, n)
	if err != nil {
		return err
	}
	ds, err := readDevice(c)
	if err != nil {
		return err
	}
	type benchMode struct {
		name string
		dec  engine.Decoding
	}
	var modes []benchMode
	for _, name := range strings.Split(c.String("modes"), ",") {
		name = strings.TrimSpace(name)
		modeName, window, fixed := name, 0, false
		switch {
		case name == "resident":
			modeName = "dense"
		case strings.HasPrefix(name, "sirius-fixed"):
			// sirius-fixed: the paper's fixed window (--window);
			// sirius-fixed=K: a fixed window of K, to compare windows in one run.
			modeName, fixed = "sirius", true
			if k, ok := strings.CutPrefix(name, "sirius-fixed="); ok {
				var err error
				if window, err = strconv.Atoi(k); err != nil {
					return fmt.Errorf("mode %s: the window %q is not a number", name, k)
				}
			} else if name != "sirius-fixed" {
				return fmt.Errorf("mode %s: want sirius-fixed or sirius-fixed=K", name)
			}
		}
		dec, err := readDecoding(c, modeName)
		if err != nil {
			return fmt.Errorf("mode %s: %w", name, err)
		}
		if fixed {
			dec.Policy = corrector.PolicyFixed
			if window > 0 {
				dec.Window = window
			}
			if err := dec.Validate(); err != nil {
				return fmt.Errorf("mode %s: %w", name, err)
			}
		}
		modes = append(modes, benchMode{name, dec})
	}
	m, err := loadBenchModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	prompt, err := benchPrompt(c, m)
	if err != nil {
		return err
	}
	dev, note, err := ds.open()
	if err != nil {
		return err
	}
	defer dev.Close()
	ceil, err := measureCeilings(dev, 256<<20)
	if err != nil {
		return fmt.Errorf("measuring the link: %w", err)
	}
	var results []BenchResult
	measured := plan.Measured{Model: m.Name, Device: dev.Name(), LinkGBps: ceil.link / 1e9}
	var lastProf *engine.Profiler
	for _, bm := range modes {
		name := bm.name
		opt, ctxNote := engineOptions(c, m, bm.dec, n, len(prompt))
		if ctxNote != "" {
			fmt.Fprintln(os.Stderr, "note: "+ctxNote)
		}
		opt.ResidentAll = name == "resident"
		opt.StreamAll = name != "resident" && c.String("device-mem") == ""
		opt.Trace = opt.Trace || c.String("plot") != ""
		fmt.Fprintf(os.Stderr, "bench: %s ...\n", name)
		s, err := m.NewSession(dev, opt)
		if err != nil {
			return fmt.Errorf("mode %s: %w", name, flagErr(err))
		}
		req := base
		req.Tokens, req.NoEOS = prompt, true // measure exactly n tokens
		res, err := s.Generate(context.Background(), req, nil)
		if err != nil {
			s.Close()
			return fmt.Errorf("mode %s: %w", name, flagErr(err))
		}
		e := s.Engine
		rep := s.Report(res)
		tot := e.Prof.Totals()
		pre := e.Prof.Phases[engine.PhasePrefill]
		r := BenchResult{Mode: name, Tokens: res.Decoded(), SecondsPerTok: rep.DecodeSeconds / float64(max(1, res.Decoded())),
			BytesPerTok: rep.BytesPerToken, Overlap: 0, Resident: e.Prof.Plan.Resident, Phases: rep.Phases, AAL: res.Stats.AAL,
			CopySeconds: (tot.Copy - pre.Copy).Seconds(), ComputeSeconds: (tot.Compute - pre.Compute).Seconds(), WallSeconds: rep.DecodeSeconds}
		if r.CopySeconds > 0 {
			r.CopyGBps = float64(tot.WeightBytes-pre.WeightBytes) / r.CopySeconds / 1e9
		}
		dec := engine.PhaseStats{Copy: tot.Copy - pre.Copy, Compute: tot.Compute - pre.Compute, Wall: tot.Wall - pre.Wall}
		r.Overlap = dec.Overlap()
		results = append(results, r)
		if name != "resident" {
			measured.Modes = append(measured.Modes, measuredMode(e.Prof, bm.dec.Mode.String(), res.Result))
		}
		lastProf = e.Prof
		s.Close()
	}
	var denseS float64
	for _, r := range results {
		if r.Mode == "dense" {
			denseS = r.SecondsPerTok
		}
	}
	for i := range results {
		if denseS > 0 {
			results[i].RatioToDense = results[i].SecondsPerTok / denseS
		}
	}
	if tr := c.String("trace"); tr != "" && lastProf != nil {
		if err := writeFileAtomic(tr, func(f *os.File) error { return lastProf.WriteTrace(f) }); err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
	}
	if p := c.String("plot"); p != "" {
		if err := plotBench(results, lastProf, p); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			plan.Measured
			MemcpyGBps float64       `json:"memcpy_gbps"`
			Results    []BenchResult `json:"results"`
			Notes      []string      `json:"notes,omitempty"`
		}{measured, ceil.memcpy / 1e9, results, nonEmpty(note)})
	}
	fmt.Printf("model %s on %s; prompt %d tokens, %d generated per mode\n", m.Name, dev.Name(), len(prompt), n)
	fmt.Printf("ceilings (same run): host memcpy %.2f GB/s, host->device copy %.2f GB/s\n", ceil.memcpy/1e9, ceil.link/1e9)
	if note != "" {
		fmt.Printf("note: %s\n", note)
	}
	fmt.Printf("\n%-9s %10s %9s %12s %9s %8s %8s %10s %7s\n", "mode", "s/token", "tok/s", "bytes/token", "copy GB/s", "of link", "overlap", "resident", "AAL")
	for _, r := range results {
		aal := "-"
		if r.AAL > 0 {
			aal = fmt.Sprintf("%.2f", r.AAL)
		}
		fmt.Printf("%-9s %10.4f %9.2f %12s %9.2f %7.0f%% %7.0f%% %10s %7s\n", r.Mode, r.SecondsPerTok, 1/r.SecondsPerTok,
			humanize.IBytes(uint64(r.BytesPerTok)), r.CopyGBps, 100*r.CopyGBps*1e9/ceil.link, 100*r.Overlap, humanize.IBytes(uint64(r.Resident)), aal)
	}
	if denseS > 0 {
		fmt.Printf("\nratios to dense streaming (s/token):")
		for _, r := range results {
			fmt.Printf("  %s %.3f", r.Mode, r.RatioToDense)
		}
		fmt.Println()
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// loadBenchModel opens the model; bench works without a tokenizer (random
// prompt ids) when no --prompt needs one.
func loadBenchModel(c *cli.Context) (*offload.Model, error) {
	m, err := loadModel(c)
	if err == nil || c.String("prompt") != "" {
		return m, err
	}
	mm, merr := model.Open(c.String("model"))
	if merr != nil {
		return nil, merr
	}
	return &offload.Model{Model: mm, Path: c.String("model"), Name: offload.ModelName(c.String("model"))}, nil
}

// benchPrompt is the prompt text's tokens, or seeded random ids.
func benchPrompt(c *cli.Context, m *offload.Model) ([]int, error) {
	if p := c.String("prompt"); p != "" {
		return m.Encode(p), nil
	}
	n := c.Int("prompt-len")
	if n < 1 {
		return nil, fmt.Errorf("--prompt-len must be at least 1")
	}
	ids := make([]int, n)
	x := uint64(0x2545F4914F6CDD1D)
	for i := range ids {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		ids[i] = int(x % uint64(m.Config.Vocab))
	}
	return ids, nil
}

type ceilings struct{ memcpy, link float64 }

// measureCeilings times a plain host memcpy and a host->device copy of the
// same size from a staging buffer, in this process, now.
func measureCeilings(dev device.Device, size int64) (ceilings, error) {
	var c ceilings
	src := make([]byte, size)
	dst := make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // fault the pages in
	best := time.Duration(1 << 62)
	for i := 0; i < 3; i++ {
		t := time.Now()
		copy(dst, src)
		best = min(best, time.Since(t))
	}
	c.memcpy = float64(size) / best.Seconds()
	dst = nil
	stage, err := dev.HostAlloc(size)
	if err != nil {
		return c, err
	}
	defer dev.HostFree(stage)
	copy(stage, src)
	buf, err := dev.Alloc(size, "link ceiling")
	if err != nil {
		// A small budget: measure with what fits.
		size = min(size, dev.Capacity()/2)
		if buf, err = dev.Alloc(size, "link ceiling"); err != nil {
			return c, err
		}
		stage = stage[:size]
	}
	defer dev.Free(buf)
	s, err := dev.NewStream("ceiling")
	if err != nil {
		return c, err
	}
	best = time.Duration(1 << 62)
	for i := 0; i < 3; i++ {
		t := time.Now()
		if err := dev.CopyToDevice(s, buf, 0, stage); err != nil {
			return c, err
		}
		if err := dev.Synchronize(s); err != nil {
			return c, err
		}
		best = min(best, time.Since(t))
	}
	c.link = float64(size) / best.Seconds()
	return c, nil
}

// measuredMode turns a mode's profile into `plan --measured` input.
func measuredMode(p *engine.Profiler, mode string, res *engine.Result) plan.MeasuredMode {
	mm := plan.MeasuredMode{Mode: mode, Tokens: res.Decoded(), AAL: res.Stats.AAL}
	for _, ph := range []struct {
		p    engine.Phase
		name string
	}{{engine.PhaseDecode, plan.PhaseFull}, {engine.PhaseDraft, plan.PhaseSparse}, {engine.PhaseCheck, plan.PhaseCheck}} {
		st := p.Phases[ph.p]
		if st.Passes == 0 {
			continue
		}
		mp := plan.MeasuredPhase{Phase: ph.name, Count: st.Passes}
		for u := 0; u <= p.Layers; u++ {
			layer := u
			if u == p.Layers {
				layer = -1
			}
			mp.Layers = append(mp.Layers, plan.MeasuredLayer{Layer: layer, CopyBytes: p.LayerBytes[ph.p][u],
				CopySeconds: p.LayerCopy[ph.p][u].Seconds(), ComputeSeconds: p.LayerCompute[ph.p][u].Seconds()})
		}
		mm.Phases = append(mm.Phases, mp)
	}
	return mm
}

func plotBench(results []BenchResult, prof *engine.Profiler, path string) error {
	var bars []plot.Bar
	for _, r := range results {
		bars = append(bars, plot.Bar{Label: r.Mode, Value: r.SecondsPerTok})
	}
	var spans []plan.Span
	if prof != nil {
		// The timeline shows the last few passes: enough to see the
		// pipeline, few enough to read.
		spans0 := prof.Spans
		if keep := 6 * (prof.Layers + 1); len(spans0) > keep {
			spans0 = spans0[len(spans0)-keep:]
		}
		for _, s := range spans0 {
			spans = append(spans, plan.Span{Track: s.Track, Name: s.Name, Start: s.Start, End: s.End})
		}
	}
	return plot.Figure(bars, spans, "offload bench: s/token per mode", path)
}
