package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
		&cli.StringFlag{Name: "modes", Value: "resident,dense,sparse,sirius", Usage: "comma-separated modes to compare: resident (whole model on the device, dense), dense (streamed), sparse, sirius (the --window-policy), sirius-fixed (the fixed --window), sirius-fixed=K (a fixed window of K) or sirius-width=W (the --window-policy with W branches: draft trees when adaptive)"},
		&cli.IntFlag{Name: "n", Value: 33, Usage: "tokens to generate per mode (the first comes from the prefill; speed is measured over the rest)"},
		&cli.IntFlag{Name: "prompt-len", Value: 16, Usage: "prompt length in tokens (seeded random ids; models without a tokenizer work too)"},
		&cli.StringFlag{Name: "prompt", Usage: "prompt text instead of random ids (needs the model's tokenizer)"},
		&cli.IntFlag{Name: "repeat", Aliases: []string{"r"}, Value: 3, Usage: "measure each mode and the ceilings this many times, interleaved; print the median and the range"},
		&cli.BoolFlag{Name: "json", Usage: "print the results as JSON (offload plan --measured reads it)"},
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

Each figure is the median of --repeat interleaved rounds (each round measures the ceilings, then
runs every mode once, one mode later than the round before) with its range. A copy rate above the
link ceiling is flagged as measurement noise, and modes whose ranges overlap are said to be unordered.

Without --device-mem the streamed modes keep only the LM head resident (the paper's setting: every
layer streams); with it, the residency plan fills the budget.

Example (a 2-layer 70B-shape model on an emulated PCIe 4 link, every draft kept):
  offload synth --shape llama-3-70b --layers 2 --vocab 32000 -o /tmp/l70b
  offload bench --model /tmp/l70b --link 4GB/s --accept all --window-policy fixed --window 4 -n 12 --modes dense,sparse,sirius`,
		Flags:  flags,
		Action: benchAction,
	}
}

// BenchResult is one mode's row: the median of the repetitions, with the
// spread of the two figures that vary most.
type BenchResult struct {
	Mode             string  `json:"mode"`
	Tokens           int     `json:"tokens"`
	Repeats          int     `json:"repeats"`
	SecondsPerTok    float64 `json:"seconds_per_token"`
	SecondsPerTokMin float64 `json:"seconds_per_token_min"`
	SecondsPerTokMax float64 `json:"seconds_per_token_max"`
	BytesPerTok      float64 `json:"bytes_per_token"`
	CopyGBps         float64 `json:"copy_gb_per_s"`
	CopyGBpsMin      float64 `json:"copy_gb_per_s_min"`
	CopyGBpsMax      float64 `json:"copy_gb_per_s_max"`
	// LinkFraction is CopyGBps over the median link ceiling. Above 1 it is
	// measurement noise (a copy cannot beat the link): LinkNoise says so.
	LinkFraction float64 `json:"link_fraction"`
	LinkNoise    bool    `json:"link_fraction_is_noise,omitempty"`
	Overlap      float64 `json:"overlap"`
	// PrefillTokPerS is the prompt's tokens over the prefill's wall time
	// (batched passes: the compute ceiling, where decode is the memory's).
	PrefillTokPerS float64              `json:"prefill_tok_per_s"`
	CopySeconds    float64              `json:"copy_seconds"`
	ComputeSeconds float64              `json:"compute_seconds"`
	WallSeconds    float64              `json:"wall_seconds"`
	AAL            float64              `json:"aal,omitempty"`
	Resident       int64                `json:"resident_bytes"`
	Phases         []engine.PhaseReport `json:"phases"`
	RatioToDense   float64              `json:"ratio_to_dense,omitempty"`
	// WeightGBps (resident mode) is the resident weights read per second of
	// decode, and OfMemRead its share of the same run's memory-read ceiling.
	WeightGBps float64 `json:"weight_gb_per_s,omitempty"`
	OfMemRead  float64 `json:"of_memread,omitempty"`
	// Policy is what the adaptive window policy chose in the median run.
	Policy string `json:"policy,omitempty"`
}

// spread is the median of a few samples and their range.
type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(xs []float64) spread {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return spread{}
	}
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{med, s[0], s[len(s)-1]}
}

// format is "median (min..max)" scaled, to digits significant digits, or
// the median alone when the samples agree.
func (s spread) format(scale float64, digits int) string {
	f := func(x float64) string { return strconv.FormatFloat(x*scale, 'g', digits, 64) }
	if f(s.Min) == f(s.Max) {
		return f(s.Median)
	}
	return f(s.Median) + " (" + f(s.Min) + ".." + f(s.Max) + ")"
}

// benchMode is one mode to measure.
type benchMode struct {
	name string
	dec  engine.Decoding
}

// benchSample is one repetition of one mode.
type benchSample struct {
	r        BenchResult
	prof     *engine.Profiler
	measured plan.MeasuredMode
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
	reps := c.Int("repeat")
	if reps < 1 {
		return fmt.Errorf("--repeat %d: measure at least once", reps)
	}
	if c.IsSet("prompt-len") && c.Int("prompt-len") < 1 {
		return fmt.Errorf("--prompt-len %d: must be at least 1", c.Int("prompt-len"))
	}
	var modes []benchMode
	for _, name := range strings.Split(c.String("modes"), ",") {
		name = strings.TrimSpace(name)
		modeName, window, fixed, width := name, 0, false, 0
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
					return fmt.Errorf("--modes %s: the window %q is not a number", name, k)
				}
			} else if name != "sirius-fixed" {
				return fmt.Errorf("--modes %s: want sirius-fixed or sirius-fixed=K", name)
			}
		case strings.HasPrefix(name, "sirius-width="):
			// sirius-width=W: the --window-policy with W branches (trees
			// when adaptive, beams when fixed), to compare widths in one run.
			modeName = "sirius"
			var err error
			if width, err = strconv.Atoi(strings.TrimPrefix(name, "sirius-width=")); err != nil || width < 1 {
				return fmt.Errorf("--modes %s: the width %q is not a number of at least 1", name, strings.TrimPrefix(name, "sirius-width="))
			}
		}
		dec, err := readDecoding(c, modeName)
		if err != nil {
			return fmt.Errorf("--modes %s: %w", name, err)
		}
		for _, m := range modes {
			if m.name == name {
				return fmt.Errorf("--modes: %s is listed twice", name)
			}
		}
		if fixed {
			dec.Policy = corrector.PolicyFixed
		}
		if window > 0 {
			dec.Window = window
		}
		if width > 0 {
			dec.Width = width
		}
		if fixed || width > 0 {
			if err := dec.Validate(); err != nil {
				return fmt.Errorf("--modes %s: %w", name, oneLine(err))
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
	notes := nonEmpty(note)
	// Repetitions are interleaved (every mode once per round, each round
	// starting one mode later, the ceilings measured at its start) so a
	// slow spell on a shared machine spreads over all modes instead of
	// landing on one.
	var memcpyS, memreadS, linkS []float64
	samples := make([][]benchSample, len(modes))
	for rep := 0; rep < reps; rep++ {
		ceil, err := measureCeilings(dev, 256<<20)
		if err != nil {
			return fmt.Errorf("measuring the link: %w", err)
		}
		memcpyS, memreadS, linkS = append(memcpyS, ceil.memcpy), append(memreadS, ceil.memread), append(linkS, ceil.link)
		for k := range modes {
			i := (rep + k) % len(modes)
			fmt.Fprintf(os.Stderr, "bench: round %d/%d, %s ...\n", rep+1, reps, modes[i].name)
			smp, ctxNote, err := benchOne(c, m, dev, modes[i], base, prompt)
			if err != nil {
				return err
			}
			if ctxNote != "" && !slices.Contains(notes, ctxNote) {
				notes = append(notes, ctxNote)
			}
			samples[i] = append(samples[i], smp)
		}
	}
	memcpy, memread, link := spreadOf(memcpyS), spreadOf(memreadS), spreadOf(linkS)
	var results []BenchResult
	measured := plan.Measured{Model: m.Name, Device: dev.Name(), LinkGBps: link.Median / 1e9}
	var lastProf *engine.Profiler
	for i, bm := range modes {
		r, mid := summarize(samples[i], link.Median)
		results = append(results, r)
		if bm.name != "resident" {
			measured.Modes = append(measured.Modes, mid.measured)
		}
		lastProf = mid.prof
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
		if results[i].Mode == "resident" && results[i].SecondsPerTok > 0 {
			// A resident decode step reads every resident weight once.
			results[i].WeightGBps = float64(results[i].Resident) / results[i].SecondsPerTok / 1e9
			results[i].OfMemRead = results[i].WeightGBps * 1e9 / memread.Median
		}
	}
	notes = append(notes, orderNotes(results)...)
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
			Repeats    int           `json:"repeats"`
			MemcpyGBps float64       `json:"memcpy_gbps"`
			Memcpy     spread        `json:"memcpy_bytes_per_s"`
			MemRead    spread        `json:"memread_bytes_per_s"`
			Link       spread        `json:"link_bytes_per_s"`
			Results    []BenchResult `json:"results"`
			Notes      []string      `json:"notes,omitempty"`
		}{measured, reps, memcpy.Median / 1e9, memcpy, memread, link, results, notes})
	}
	fmt.Printf("model %s on %s; prompt %d tokens, %d generated per mode\n", m.Name, dev.Name(), len(prompt), n)
	what := "one run"
	if reps > 1 {
		what = fmt.Sprintf("median (min..max) of %d interleaved runs", reps)
	}
	fmt.Printf("figures: %s\n", what)
	fmt.Printf("ceilings (same run): host memcpy %s GB/s, memory read %s GB/s, host->device copy %s GB/s\n", memcpy.format(1e-9, 3), memread.format(1e-9, 3), link.format(1e-9, 3))
	modeW := 9
	for _, r := range results {
		modeW = max(modeW, len(r.Mode))
	}
	fmt.Printf("\n%-*s %26s %9s %12s %22s %8s %8s %10s %7s %12s\n", modeW, "mode", "s/token", "tok/s", "bytes/token", "copy GB/s", "of link", "overlap", "resident", "AAL", "prefill t/s")
	var noisy []string
	for _, r := range results {
		aal := "-"
		if r.AAL > 0 {
			aal = fmt.Sprintf("%.2f", r.AAL)
		}
		ofLink := fmt.Sprintf("%.0f%%", 100*r.LinkFraction)
		if r.LinkNoise {
			ofLink = ">100%*"
			noisy = append(noisy, fmt.Sprintf("%s %.0f%%", r.Mode, 100*r.LinkFraction))
		}
		sp := spread{r.SecondsPerTok, r.SecondsPerTokMin, r.SecondsPerTokMax}
		cp := spread{r.CopyGBps, r.CopyGBpsMin, r.CopyGBpsMax}
		fmt.Printf("%-*s %26s %9.4g %12s %22s %8s %7.0f%% %10s %7s %12.4g\n", modeW, r.Mode, sp.format(1, 3), 1/r.SecondsPerTok,
			humanize.IBytes(uint64(r.BytesPerTok)), cp.format(1, 3), ofLink, 100*r.Overlap, humanize.IBytes(uint64(r.Resident)), aal, r.PrefillTokPerS)
	}
	if len(noisy) > 0 {
		fmt.Printf("* measurement noise, not a result: a copy cannot beat the link, yet %s of the median link ceiling was measured;\n"+
			"  the ceiling is a 256 MiB copy, so copies small enough to stay in CPU cache, or noisy timings on a busy machine,\n"+
			"  come out faster (raise --repeat, rerun on an idle machine, or pace the link with --link)\n", strings.Join(noisy, ", "))
	}
	for _, r := range results {
		if r.WeightGBps > 0 {
			fmt.Printf("\n%s decode reads its %s of weights at %.3g GB/s: %.2f of the memory-read ceiling\n", r.Mode, humanize.IBytes(uint64(r.Resident)), r.WeightGBps, r.OfMemRead)
		}
	}
	if denseS > 0 {
		fmt.Printf("\nratios to dense streaming (s/token):")
		for _, r := range results {
			fmt.Printf("  %s %.3f", r.Mode, r.RatioToDense)
		}
		fmt.Println()
	}
	for _, n := range notes {
		fmt.Printf("note: %s\n", n)
	}
	return nil
}

// benchOne runs one mode once on a fresh session.
func benchOne(c *cli.Context, m *offload.Model, dev device.Device, bm benchMode, base offload.Request, prompt []int) (benchSample, string, error) {
	name := bm.name
	opt, ctxNote := engineOptions(c, m, bm.dec, base.MaxTokens, len(prompt))
	opt.ResidentAll = name == "resident"
	opt.StreamAll = name != "resident" && c.String("device-mem") == ""
	opt.Trace = opt.Trace || c.String("plot") != ""
	s, err := m.NewSession(dev, opt)
	if err != nil {
		return benchSample{}, "", fmt.Errorf("mode %s: %w", name, flagErr(err))
	}
	defer s.Close()
	// Token ids (a model without a tokenizer is benchmarked with random
	// ids) and no EOS, to measure exactly n tokens.
	req := base
	req.Tokens, req.NoEOS = prompt, true
	res, err := s.Generate(context.Background(), req, nil)
	if err != nil {
		return benchSample{}, "", fmt.Errorf("mode %s: %w", name, flagErr(err))
	}
	e := s.Engine
	rep := s.Report(res)
	tot := e.Prof.Totals()
	pre := e.Prof.Phases[engine.PhasePrefill]
	r := BenchResult{Mode: name, Tokens: res.Decoded(), SecondsPerTok: rep.DecodeSeconds / float64(max(1, res.Decoded())),
		BytesPerTok: rep.BytesPerToken, Resident: e.Prof.Plan.Resident, Phases: rep.Phases, AAL: res.Stats.AAL,
		PrefillTokPerS: rep.PrefillTokPerS,
		Policy:         policyLine(rep),
		CopySeconds:    (tot.Copy - pre.Copy).Seconds(), ComputeSeconds: (tot.Compute - pre.Compute).Seconds(), WallSeconds: rep.DecodeSeconds}
	if r.CopySeconds > 0 {
		r.CopyGBps = float64(tot.WeightBytes-pre.WeightBytes) / r.CopySeconds / 1e9
	}
	dec := engine.PhaseStats{Copy: tot.Copy - pre.Copy, Compute: tot.Compute - pre.Compute, Wall: tot.Wall - pre.Wall}
	r.Overlap = dec.Overlap()
	return benchSample{r: r, prof: e.Prof, measured: measuredMode(e.Prof, bm.dec.Mode.String(), res.Result)}, ctxNote, nil
}

// policyLine is the report's account of the adaptive policy, if it ran.
func policyLine(rep *engine.Report) string {
	if rep.Sirius == nil {
		return ""
	}
	return rep.Sirius.Policy
}

// summarize folds one mode's repetitions into its row: each figure is the
// median of its samples; the phases, the profile (for --trace, --plot and
// plan --measured) are those of the run with the median s/token.
func summarize(ss []benchSample, link float64) (BenchResult, benchSample) {
	col := func(f func(BenchResult) float64) spread {
		xs := make([]float64, len(ss))
		for i, s := range ss {
			xs[i] = f(s.r)
		}
		return spreadOf(xs)
	}
	order := make([]int, len(ss))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ss[a].r.SecondsPerTok, ss[b].r.SecondsPerTok) })
	mid := ss[order[(len(ss)-1)/2]]
	r := mid.r
	r.Repeats = len(ss)
	sp := col(func(r BenchResult) float64 { return r.SecondsPerTok })
	r.SecondsPerTok, r.SecondsPerTokMin, r.SecondsPerTokMax = sp.Median, sp.Min, sp.Max
	cp := col(func(r BenchResult) float64 { return r.CopyGBps })
	r.CopyGBps, r.CopyGBpsMin, r.CopyGBpsMax = cp.Median, cp.Min, cp.Max
	r.BytesPerTok = col(func(r BenchResult) float64 { return r.BytesPerTok }).Median
	r.Overlap = col(func(r BenchResult) float64 { return r.Overlap }).Median
	r.PrefillTokPerS = col(func(r BenchResult) float64 { return r.PrefillTokPerS }).Median
	r.CopySeconds = col(func(r BenchResult) float64 { return r.CopySeconds }).Median
	r.ComputeSeconds = col(func(r BenchResult) float64 { return r.ComputeSeconds }).Median
	r.WallSeconds = col(func(r BenchResult) float64 { return r.WallSeconds }).Median
	r.AAL = col(func(r BenchResult) float64 { return r.AAL }).Median
	if link > 0 {
		r.LinkFraction = r.CopyGBps * 1e9 / link
		r.LinkNoise = r.LinkFraction > 1
	}
	return r, mid
}

// orderNotes says which modes' s/token ranges overlap: their order in this
// run is not a result.
func orderNotes(rs []BenchResult) []string {
	var notes []string
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			a, b := rs[i], rs[j]
			if a.Repeats > 1 && a.SecondsPerTokMin <= b.SecondsPerTokMax && b.SecondsPerTokMin <= a.SecondsPerTokMax {
				notes = append(notes, fmt.Sprintf("%s and %s: their s/token ranges overlap, so which is faster is within this run's noise", a.Mode, b.Mode))
			}
		}
	}
	return notes
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

type ceilings struct{ memcpy, memread, link float64 }

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
	runtime.GC() // the memcpy's buffer: a collection running under the read would share its cores
	c.memread = readCeiling(src)
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

// readCeiling is the rate at which this process reads buf from memory with
// every thread (best of three): what a decode pass, which reads each resident
// weight once per token, can at most reach.
func readCeiling(buf []byte) float64 {
	words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)/8)
	workers := runtime.GOMAXPROCS(0)
	best := time.Duration(1 << 62)
	var sink atomic.Uint64 // the reads' result, so they cannot be dropped
	for i := 0; i < 3; i++ {
		t := time.Now()
		var wg sync.WaitGroup
		per := max((len(words)/workers+7)&^7, 8)
		for lo := 0; lo < len(words); lo += per {
			part := words[lo:min(lo+per, len(words))]
			wg.Go(func() {
				var a, b, c, d uint64
				for len(part) >= 8 {
					a |= part[0] ^ part[4]
					b |= part[1] ^ part[5]
					c |= part[2] ^ part[6]
					d |= part[3] ^ part[7]
					part = part[8:]
				}
				for _, w := range part {
					a |= w
				}
				sink.Or(a | b | c | d)
			})
		}
		wg.Wait()
		best = min(best, time.Since(t))
	}
	return float64(len(words)*8) / best.Seconds()
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
