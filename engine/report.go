package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"offload/corrector"
	"offload/device"
	"offload/internal/sysmem"
	"offload/sparsity"
)

// Profiler counts every byte that crosses the link and times every copy and
// compute span, per phase. Its totals are built from the same numbers the
// copies were issued with, so the report's byte totals equal the sum of the
// recorded copies (invariant 3).
type Profiler struct {
	Layers int
	Phases [numPhases]PhaseStats
	// SetupBytes were sent once: resident weights, packed Griffin rows.
	SetupBytes int64
	// MappedBytes are resident weights the device reads in place from the
	// mapped file (a host device): resident, but nothing was copied.
	MappedBytes int64
	// WastedBytes were prefetched for a pass that did not come (the end of
	// a generation, a mispredicted pass kind).
	WastedBytes int64
	Plan        *Plan
	trace       bool
	Spans       []Span
	// copied sums every host->device transfer the engine issued (setup,
	// passes, wasted prefetches), so tests can check the report's totals
	// against it. A sum, not a list: an engine serving requests for days
	// must not grow with every pass.
	copied int64
	// LayerCopy and LayerCompute are per-unit time sums (layers, then the
	// head), per phase, for `offload plan --measured`.
	LayerCopy    [numPhases][]time.Duration
	LayerCompute [numPhases][]time.Duration
	LayerBytes   [numPhases][]int64
}

// PhaseStats aggregates the passes of one phase.
type PhaseStats struct {
	Passes      int
	Rows        int           // tokens processed
	WeightBytes int64         // weights streamed host->device
	InputBytes  int64         // embeddings, indices host->device
	OutputBytes int64         // logits, activations device->host
	Copy        time.Duration // time the copy stream spent copying
	Compute     time.Duration // time the compute stream spent computing
	Stall       time.Duration // time compute waited for copies
	Wall        time.Duration // device time from the first to the last span of each pass
}

// Bytes is everything sent host->device in this phase.
func (s PhaseStats) Bytes() int64 { return s.WeightBytes + s.InputBytes }

// Overlap is the fraction of the shorter of copy and compute that ran hidden
// under the other: 1 when wall = max(copy, compute), 0 when wall = copy + compute.
func (s PhaseStats) Overlap() float64 {
	short := min(s.Copy, s.Compute)
	if short <= 0 {
		return 0
	}
	hidden := s.Copy + s.Compute - s.Wall
	return max(0, min(1, float64(hidden)/float64(short)))
}

// Span is one interval on one stream, for --trace and timeline plots.
type Span struct {
	Track string        `json:"track"`
	Name  string        `json:"name"`
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	Bytes int64         `json:"bytes,omitempty"`
}

type evSpan struct {
	unit       int
	start, end device.Event
	bytes      int64
}

// passRec collects one pass's events until it is synchronized.
type passRec struct {
	phase       Phase
	rows        int
	begin       device.Event
	copies      []evSpan
	computes    []evSpan
	inputBytes  int64
	outputBytes int64
	err         error
}

func newProfiler(layers int, trace bool) *Profiler {
	p := &Profiler{Layers: layers, trace: trace}
	for i := range p.LayerCopy {
		p.LayerCopy[i] = make([]time.Duration, layers+1)
		p.LayerCompute[i] = make([]time.Duration, layers+1)
		p.LayerBytes[i] = make([]int64, layers+1)
	}
	return p
}

// wasted records a prefetch that no pass used: its bytes crossed the link
// all the same.
func (p *Profiler) wasted(r *passRec) {
	for _, c := range r.copies {
		p.WastedBytes += c.bytes
		p.copied += c.bytes
	}
}

func (p *Profiler) addSetup(n int64) {
	p.SetupBytes += n
	p.copied += n
}

func (p *Profiler) begin(ph Phase, rows int) *passRec { return &passRec{phase: ph, rows: rows} }

func (r *passRec) copy(u int, start, end device.Event, n int64) {
	r.copies = append(r.copies, evSpan{u, start, end, n})
}

func (r *passRec) compute(u int, start, end device.Event) {
	r.computes = append(r.computes, evSpan{unit: u, start: start, end: end})
}

// end folds a synchronized pass into the totals.
func (p *Profiler) end(r *passRec, dev device.Device) {
	st := &p.Phases[r.phase]
	st.Passes++
	st.Rows += r.rows
	st.InputBytes += r.inputBytes
	st.OutputBytes += r.outputBytes
	p.copied += r.inputBytes
	t := func(e device.Event) time.Duration {
		d, err := dev.EventTime(e)
		if err != nil {
			return 0
		}
		return d
	}
	first, last := time.Duration(1<<62), time.Duration(0)
	for _, c := range r.copies {
		s, e := t(c.start), t(c.end)
		st.Copy += e - s
		st.WeightBytes += c.bytes
		p.copied += c.bytes
		p.LayerCopy[r.phase][c.unit] += e - s
		p.LayerBytes[r.phase][c.unit] += c.bytes
		first, last = min(first, s), max(last, e)
		if p.trace {
			p.Spans = append(p.Spans, Span{"copy", p.unitName(c.unit) + " " + r.phase.String(), s, e, c.bytes})
		}
	}
	prevEnd := time.Duration(-1)
	for _, c := range r.computes {
		s, e := t(c.start), t(c.end)
		st.Compute += e - s
		p.LayerCompute[r.phase][c.unit] += e - s
		if prevEnd >= 0 && s > prevEnd {
			st.Stall += s - prevEnd
		}
		prevEnd = e
		first, last = min(first, s), max(last, e)
		if p.trace {
			p.Spans = append(p.Spans, Span{"compute", p.unitName(c.unit) + " " + r.phase.String(), s, e, 0})
		}
	}
	if last > first {
		st.Wall += last - first
	}
}

func (p *Profiler) unitName(u int) string {
	if u == p.Layers {
		return "head"
	}
	return fmt.Sprintf("layer %d", u)
}

// Totals sums the phases.
func (p *Profiler) Totals() PhaseStats {
	var t PhaseStats
	for _, s := range p.Phases {
		t.Passes += s.Passes
		t.Rows += s.Rows
		t.WeightBytes += s.WeightBytes
		t.InputBytes += s.InputBytes
		t.OutputBytes += s.OutputBytes
		t.Copy += s.Copy
		t.Compute += s.Compute
		t.Stall += s.Stall
		t.Wall += s.Wall
	}
	return t
}

// CopiedBytes is the sum of every recorded copy (setup included).
func (p *Profiler) CopiedBytes() int64 { return p.copied }

// DecodeBytes is what crossed host->device for decoding (prefill excluded).
func (p *Profiler) DecodeBytes() int64 {
	var n int64
	for ph, s := range p.Phases {
		if Phase(ph) != PhasePrefill {
			n += s.Bytes()
		}
	}
	return n
}

// Report builds the end-of-run report for a generation.
func (e *Engine) Report(r *Result, modelName string) *Report {
	rep := &Report{
		Model: modelName, Device: e.dev.Name(), Mode: e.modeString(r.Stats.Mode),
		PromptTokens: r.Stats.PromptTokens, GeneratedTokens: r.Stats.Generated,
		PrefillSeconds: r.Prefill.Seconds(), DecodeSeconds: r.Decode.Seconds(),
		PeakRSS: sysmem.PeakRSS(), PeakDevice: e.dev.Peak(), DeviceBudget: e.Prof.Plan.Budget,
		ResidentBytes: e.Prof.Plan.Resident, SetupBytes: e.Prof.SetupBytes, WastedBytes: e.Prof.WastedBytes, Phases: e.Prof.PhaseReports(),
	}
	rep.PrefillTokPerS = safeDiv(float64(rep.PromptTokens), rep.PrefillSeconds)
	// The first token comes out of the prefill; decoding speed and bytes are
	// per token made by decode passes.
	rep.DecodeTokPerS = safeDiv(float64(r.Decoded()), rep.DecodeSeconds)
	rep.BytesPerToken = safeDiv(float64(e.Prof.DecodeBytes()), float64(r.Decoded()))
	if r.Stats.Mode != corrector.Dense && !e.M.Bundled && e.opt.Sparsity != sparsity.PolicyDense && e.Prof.Plan.SlotBytes > 0 && e.grif.hostPacked == nil {
		rep.Notes = append(rep.Notes, "this model's FFN is not bundled, so every sparse step gathers strided down-projection columns on the CPU; "+
			"run `offload convert` once to store each neuron contiguously")
	}
	if r.Stats.Mode != corrector.Dense && e.opt.Sparsity == sparsity.PolicyGriffin {
		full := 0
		for _, l := range e.res.layers {
			if l.ffn != nil && !l.packedPlanned {
				full++
			}
		}
		if full > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%d of %d layers draft with their whole FFN: the model is resident but a packed copy of their Griffin rows did not fit the device budget", full, e.cfg.Layers))
		}
	}
	if r.CappedFrom > 0 {
		// Say the cache stopped the generation only when it did: a text
		// that ended first (end of text, a stop string, an interruption)
		// owes nothing to the cache.
		room := e.opt.Context - r.Stats.PromptTokens - e.opt.Window
		if r.Stats.StopReason == corrector.StopMaxTokens || r.Stats.Generated >= room {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%d tokens were asked for, but the KV cache holds %d positions: generation stopped at %d",
				r.CappedFrom, e.opt.Context, r.Stats.Generated))
		} else {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%d tokens were asked for; the KV cache (%d positions) had room for %d, but generation ended before that, after %d (%s)",
				r.CappedFrom, e.opt.Context, room, r.Stats.Generated, stopWords(r.Stats.StopReason)))
		}
	}
	if r.Stats.Mode == corrector.Sirius {
		ds := e.SparseDensity()
		rep.Sirius = &SiriusReport{Window: r.Stats.Window, Checks: r.Stats.Checks, AAL: r.Stats.AAL,
			CorrectionsPer100: r.Stats.CorrectionsPer100(), EffectiveDensity: r.Stats.EffectiveDensity(ds, 1), SparseDensity: ds}
		if r.Stats.Policy.Policy == corrector.PolicyAdaptive {
			ps := r.Stats.Policy
			rep.Sirius.Policy, rep.Sirius.PolicyStats = strings.TrimSpace(ps.String()), &ps
		}
	}
	return rep
}

// stopWords says why a generation ended, for the report.
func stopWords(reason string) string {
	switch reason {
	case corrector.StopEOS:
		return "end of text"
	case corrector.StopString:
		return "a stop string"
	case "":
		return "stopped early"
	}
	return reason
}

func (e *Engine) modeString(m corrector.Mode) string {
	switch m {
	case corrector.Dense:
		return "dense"
	case corrector.Sparse:
		return fmt.Sprintf("sparse (%s, keep %g)", e.opt.Sparsity, e.opt.Keep)
	}
	if e.opt.Policy == corrector.PolicyAdaptive {
		return fmt.Sprintf("sirius (%s, keep %g, adaptive windows up to %d)", e.opt.Sparsity, e.opt.Keep, e.opt.Window)
	}
	return fmt.Sprintf("sirius (%s, keep %g, window %d)", e.opt.Sparsity, e.opt.Keep, e.opt.Window)
}

// Glossary explains the report's words; `offload run --help` prints it and
// the README quotes it (a test keeps the two equal).
const Glossary = `Reading the report:
  transfers          host->device bytes of the decode passes, per token they made (the first token
                     comes from the prefill); "once at setup" is what was sent once (resident
                     weights, packed sparse rows).
  prefetched unused  weights copied ahead for a pass that never came (the generation ended, or the
                     next pass was of another kind than expected): they crossed the link for nothing.
  AAL                average advance length: tokens made final per full-model check (the drafts it
                     kept plus the token the check supplies itself), at most --window. Higher is better.
  corrections        checks that rejected a draft, per 100 generated tokens.
  effective density  the share of the full model's weights used per generated token: (sparse passes x
                     sparse density + full checks) / tokens the checks made final; with
                     --window-policy fixed, ((window-1) x sparse density + 1) / AAL. A correction
                     throws away every draft after the first rejected one, and those tokens are
                     drafted and checked again, so with a low AAL the recomputation costs more than
                     dense decoding (density 1) and the figure exceeds 1: Sirius then uses more
                     weights per token than dense. "sparse" is the sparse model's own density
                     (embeddings included).
  policy adaptive    what the adaptive window policy chose: how many windows of each length K (and
                     width) it ran, the acceptance it measured, and when drafting could not pay and
                     it fell back to dense steps. Exploring (probes while dense wins, optimistic
                     windows) is paid from a budget of about 3% of the time: "explorations
                     deferred" are the ones it could not afford; "dense steps re-timed" are dense
                     steps run while drafting won narrowly, to time a dense step again.
  phases             prefill (the prompt), decode (one dense token), draft (one sparse token), check
                     (one batched full pass over a window).
  weights, inputs    bytes sent host->device: streamed weights; embeddings and indices.
  outputs            bytes read back device->host (logits, activations).
  copy, compute      time the copy stream and the compute stream were busy.
  stall              time the compute stream sat idle inside a pass, between one layer and the next,
                     waiting for that layer's weights to arrive (or for the host).
  wall               time from a pass's first copy or compute to its last, summed over the passes.
  GB/s               weight bytes over copy time.
  overlap            share of the shorter of copy and compute that ran hidden under the other: 100%
                     when wall = max(copy, compute), 0% when wall = copy + compute.
  @N (offload eval)  the first generated token, counted from 0, where a mode's output differs from
                     dense's; "-" means the outputs are identical.
`

// Report is the end-of-run summary: what was generated, how fast, and where
// every byte and millisecond went.
type Report struct {
	Model           string         `json:"model"`
	Device          string         `json:"device"`
	Mode            string         `json:"mode"`
	PromptTokens    int            `json:"prompt_tokens"`
	GeneratedTokens int            `json:"generated_tokens"`
	PrefillSeconds  float64        `json:"prefill_seconds"`
	DecodeSeconds   float64        `json:"decode_seconds"`
	PrefillTokPerS  float64        `json:"prefill_tok_per_s"`
	DecodeTokPerS   float64        `json:"decode_tok_per_s"`
	PeakRSS         int64          `json:"peak_rss_bytes"`
	PeakDevice      int64          `json:"peak_device_bytes"`
	DeviceBudget    int64          `json:"device_budget_bytes"`
	ResidentBytes   int64          `json:"resident_bytes"`
	SetupBytes      int64          `json:"setup_bytes"`
	WastedBytes     int64          `json:"wasted_prefetch_bytes"`
	BytesPerToken   float64        `json:"bytes_per_token"`
	LinkCeiling     float64        `json:"link_ceiling_bytes_per_s,omitempty"`
	Phases          []PhaseReport  `json:"phases"`
	Sirius          *SiriusReport  `json:"sirius,omitempty"`
	Notes           []string       `json:"notes,omitempty"`
	Extra           map[string]any `json:"extra,omitempty"`
}

// PhaseReport is one row of the phase table.
type PhaseReport struct {
	Phase          string  `json:"phase"`
	Passes         int     `json:"passes"`
	Tokens         int     `json:"tokens"`
	WeightBytes    int64   `json:"weight_bytes"`
	InputBytes     int64   `json:"input_bytes"`
	OutputBytes    int64   `json:"output_bytes"`
	CopySeconds    float64 `json:"copy_seconds"`
	ComputeSeconds float64 `json:"compute_seconds"`
	StallSeconds   float64 `json:"stall_seconds"`
	WallSeconds    float64 `json:"wall_seconds"`
	CopyGBps       float64 `json:"copy_gb_per_s"`
	Overlap        float64 `json:"overlap"`
}

// SiriusReport holds the correction statistics.
type SiriusReport struct {
	Window            int     `json:"window"`
	Checks            int     `json:"checks"`
	AAL               float64 `json:"aal"`
	CorrectionsPer100 float64 `json:"corrections_per_100"`
	EffectiveDensity  float64 `json:"effective_density"`
	SparseDensity     float64 `json:"sparse_density"`
	// Policy is what the adaptive window policy chose and why (empty with
	// the fixed window); Stats has the numbers.
	Policy      string                 `json:"policy,omitempty"`
	PolicyStats *corrector.PolicyStats `json:"policy_stats,omitempty"`
}

// PhaseReports turns the profiler's phases into report rows (phases with no
// passes are left out).
func (p *Profiler) PhaseReports() []PhaseReport {
	var out []PhaseReport
	for i, s := range p.Phases {
		if s.Passes == 0 {
			continue
		}
		r := PhaseReport{Phase: Phase(i).String(), Passes: s.Passes, Tokens: s.Rows, WeightBytes: s.WeightBytes,
			InputBytes: s.InputBytes, OutputBytes: s.OutputBytes, CopySeconds: s.Copy.Seconds(),
			ComputeSeconds: s.Compute.Seconds(), StallSeconds: s.Stall.Seconds(), WallSeconds: s.Wall.Seconds(), Overlap: s.Overlap()}
		if s.Copy > 0 {
			r.CopyGBps = float64(s.WeightBytes) / s.Copy.Seconds() / 1e9
		}
		out = append(out, r)
	}
	return out
}

// String prints the report as a fixed table (held by golden tests).
func (r *Report) String() string {
	var b strings.Builder
	hb := func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
	fmt.Fprintf(&b, "model      %s\n", r.Model)
	budget := hb(r.DeviceBudget)
	if r.DeviceBudget >= 1<<60 {
		budget = "unbounded"
	}
	fmt.Fprintf(&b, "device     %s (budget %s, peak %s, resident weights %s)\n", r.Device, budget, hb(r.PeakDevice), hb(r.ResidentBytes))
	fmt.Fprintf(&b, "mode       %s\n", r.Mode)
	fmt.Fprintf(&b, "tokens     prompt %d, generated %d\n", r.PromptTokens, r.GeneratedTokens)
	fmt.Fprintf(&b, "speed      prefill %.1f tok/s, decode %.2f tok/s (%.3f s/token)\n", r.PrefillTokPerS, r.DecodeTokPerS, safeDiv(1, r.DecodeTokPerS))
	fmt.Fprintf(&b, "transfers  %s per decoded token; %s once at setup", hb(int64(r.BytesPerToken)), hb(r.SetupBytes))
	if r.WastedBytes > 0 {
		fmt.Fprintf(&b, "; %s prefetched unused", hb(r.WastedBytes))
	}
	if r.LinkCeiling > 0 {
		fmt.Fprintf(&b, "; link ceiling %.2f GB/s", r.LinkCeiling/1e9)
	}
	b.WriteString("\n")
	if r.PeakRSS > 0 {
		fmt.Fprintf(&b, "memory     peak RSS %s\n", hb(r.PeakRSS))
	}
	if s := r.Sirius; s != nil {
		fmt.Fprintf(&b, "sirius     window %d, checks %d, AAL %.2f, corrections %.1f per 100 tokens, effective density %.3f (sparse %.3f)\n",
			s.Window, s.Checks, s.AAL, s.CorrectionsPer100, s.EffectiveDensity, s.SparseDensity)
		for _, line := range strings.Split(s.Policy, "\n") {
			if line != "" {
				fmt.Fprintf(&b, "           %s\n", line)
			}
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "%-8s %6s %7s %10s %10s %10s %9s %9s %9s %9s %8s %7s\n",
		"phase", "passes", "tokens", "weights", "inputs", "outputs", "copy", "compute", "stall", "wall", "GB/s", "overlap")
	for _, p := range r.Phases {
		fmt.Fprintf(&b, "%-8s %6d %7d %10s %10s %10s %9s %9s %9s %9s %8.2f %6.0f%%\n",
			p.Phase, p.Passes, p.Tokens, hb(p.WeightBytes), hb(p.InputBytes), hb(p.OutputBytes),
			dur(p.CopySeconds), dur(p.ComputeSeconds), dur(p.StallSeconds), dur(p.WallSeconds), p.CopyGBps, 100*p.Overlap)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

func dur(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// WriteTrace writes the spans as Chrome trace-event JSON (open it in
// Perfetto or chrome://tracing): one track (tid) per stream.
func (p *Profiler) WriteTrace(w io.Writer) error {
	type ev struct {
		Name string         `json:"name"`
		Cat  string         `json:"cat,omitempty"`
		Ph   string         `json:"ph"`
		Ts   float64        `json:"ts"`
		Dur  float64        `json:"dur,omitempty"`
		Pid  int            `json:"pid"`
		Tid  int            `json:"tid"`
		Args map[string]any `json:"args,omitempty"`
	}
	tids := map[string]int{"copy": 1, "compute": 2}
	evs := []ev{
		{Name: "process_name", Ph: "M", Pid: 1, Args: map[string]any{"name": "offload"}},
		{Name: "thread_name", Ph: "M", Pid: 1, Tid: 1, Args: map[string]any{"name": "copy stream"}},
		{Name: "thread_name", Ph: "M", Pid: 1, Tid: 2, Args: map[string]any{"name": "compute stream"}},
	}
	for _, s := range p.Spans {
		e := ev{Name: s.Name, Cat: s.Track, Ph: "X", Ts: float64(s.Start) / 1e3, Dur: float64(s.End-s.Start) / 1e3, Pid: 1, Tid: tids[s.Track]}
		if s.Bytes > 0 {
			e.Args = map[string]any{"bytes": s.Bytes}
		}
		evs = append(evs, e)
	}
	enc := json.NewEncoder(w)
	return enc.Encode(map[string]any{"traceEvents": evs, "displayTimeUnit": "ms"})
}
