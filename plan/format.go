package plan

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
)

// bytesStr prints a byte count in SI units (GB = 10^9, like link rates).
func bytesStr(n int64) string {
	if n < 0 {
		return "-" + humanize.Bytes(uint64(-n))
	}
	return humanize.Bytes(uint64(n))
}

// memStr prints a memory size in IEC units (GiB = 2^30), as GPU memory is
// sold and allocated.
func memStr(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}

func bytesF(v float64) string {
	if v < 0 {
		v = 0
	}
	return humanize.Bytes(uint64(v + 0.5))
}

func si(v float64, unit string) string { return humanize.SIWithDigits(v, 3, unit) }

// String prints the plan as fixed tables: the setting, one summary row per
// mode, the residency plan and phases of each mode, the per-layer costs
// (consecutive layers with equal costs merged) and the host memory needed.
func (p Prediction) String() string {
	var b strings.Builder
	cfg, pr := p.Config, p.Params
	g := GeometryOf(cfg, pr.Keep)
	name := p.Model
	if name == "" {
		name = "model"
	}
	w := pr.Weights
	if w == nil {
		u := UniformWeights(cfg, pr.DType, pr.DTypeBytes)
		w = &u
	}
	// The largest layer (a mix gives some layers more bits).
	var attnB, ffnB int64
	for _, lw := range w.Layers {
		if a, f := lw.Attn, lw.restBytes(0, cfg.Hidden); a+f > attnB+ffnB {
			attnB, ffnB = a, f
		}
	}
	fmt.Fprintf(&b, "model   %s, %s: %d layers, %s weights, %s (layer %s: attn %s, ffn %s; embed %s",
		name, pr.DType, cfg.Layers, si(float64(cfg.Params()), ""), bytesF(w.Total),
		bytesStr(attnB+ffnB), bytesStr(attnB), bytesStr(ffnB), bytesStr(w.Embed))
	if cfg.TiedEmbeddings {
		b.WriteString(", tied head)\n")
	} else {
		fmt.Fprintf(&b, ", head %s)\n", bytesStr(w.Head))
	}
	fmt.Fprintf(&b, "device  %s: %s memory; achieved %s, %s; link %s\n",
		pr.GPU.Name, memStr(pr.GPUMem), si(pr.FLOPS, "FLOP/s"), si(pr.MemBW, "B/s"), si(pr.Link, "B/s"))
	fmt.Fprintf(&b, "decode  griffin keep %.2f (%d of %d neurons), sirius window %d, AAL %.2f; KV cache for %d positions\n",
		pr.Keep, g.Kept, cfg.Hidden, pr.Window, pr.AAL, pr.Context)
	if pr.Paper {
		b.WriteString("setting paper: embeddings, head and norms resident; layers stream through two slots\n")
	} else {
		b.WriteString("setting budget: head and norms resident, then blocks ranked by uses per token until memory is spent\n")
	}

	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tsource\tresident\treserved\tstreamed/tok\tlink s/tok\tcompute s/tok\ts/tok\ttok/s\tvs dense\t")
	dense := p.Mode(Dense)
	for _, m := range p.Modes {
		ratio := "-"
		if dense != nil && dense.SecondsPerToken > 0 {
			ratio = fmt.Sprintf("%.3f", m.SecondsPerToken/dense.SecondsPerToken)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.4g\t%.4g\t%.4g\t%.4g\t%s\t\n", m.Mode, m.Source,
			memStr(m.ResidentBytes), memStr(m.Reserved.Total()), bytesF(m.BytesPerToken),
			m.LinkSecondsPerToken, m.ComputeSecondsPerToken, m.SecondsPerToken, rate(m.SecondsPerToken), ratio)
	}
	tw.Flush()

	b.WriteString("\nresidency and phases\n")
	for _, m := range p.Modes {
		fmt.Fprintf(&b, "%-7s reserved: slots %s, KV cache %s, activations %s\n", m.Mode,
			memStr(m.Reserved.Slots), memStr(m.Reserved.KVCache), memStr(m.Reserved.Activations))
		fmt.Fprintf(&b, "        resident: %s\n", summarize(m.Blocks, m.Resident, true))
		fmt.Fprintf(&b, "        streams:  %s\n", summarize(m.Blocks, m.Resident, false))
		for _, ph := range m.Phases {
			fmt.Fprintf(&b, "        %-6s %.4f/tok x %2d rows: streams %s/pass, link %.4g s, compute %.4g s, pass %.4g s\n",
				ph.Phase, ph.PerToken, ph.Rows, bytesStr(ph.StreamedBytes), ph.LinkSeconds, ph.ComputeSeconds, ph.Seconds)
		}
	}

	b.WriteString("\nper layer, per token (s/token = sum over stages of max(link, compute); equal neighbours merged)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tstages\tstreamed/tok\tlink ms\tcompute ms\tms\t")
	for _, m := range p.Modes {
		for _, r := range mergeLayers(m.Layers) {
			l := r.first
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.4g\t%.4g\t%.4g\t\n", m.Mode, r.label,
				bytesF(l.StreamedBytes), l.LinkSeconds*1e3, l.ComputeSeconds*1e3, l.Seconds*1e3)
		}
	}
	tw.Flush()

	worst := ""
	var pin, pc int64
	for _, m := range p.Modes {
		if m.HostPinned+m.HostPageCache == p.HostMem {
			worst, pin, pc = m.Mode.String(), m.HostPinned, m.HostPageCache
			break
		}
	}
	fmt.Fprintf(&b, "\nhost memory: %s (%s: pinned staging %s + page cache for streamed weights %s)\n",
		memStr(p.HostMem), worst, memStr(pin), memStr(pc))
	return b.String()
}

func rate(s float64) float64 {
	if s <= 0 {
		return 0
	}
	return 1 / s
}

type layerRun struct {
	label string
	first LayerPrediction
}

// mergeLayers folds consecutive transformer layers with identical costs into
// one row; the head stage (layer -1) is its own row.
func mergeLayers(ls []LayerPrediction) []layerRun {
	var out []layerRun
	same := func(a, b LayerPrediction) bool {
		return a.StreamedBytes == b.StreamedBytes && a.LinkSeconds == b.LinkSeconds &&
			a.ComputeSeconds == b.ComputeSeconds && a.Seconds == b.Seconds
	}
	for i := 0; i < len(ls); {
		j := i + 1
		for ls[i].Layer >= 0 && j < len(ls) && ls[j].Layer >= 0 && same(ls[i], ls[j]) {
			j++
		}
		label := "head"
		if ls[i].Layer >= 0 {
			label = layerRange(ls[i].Layer, ls[j-1].Layer)
		}
		out = append(out, layerRun{label, ls[i]})
		i = j
	}
	return out
}

func layerRange(a, b int) string {
	if a == b {
		return fmt.Sprintf("L%d", a)
	}
	return fmt.Sprintf("L%d-%d", a, b)
}

// summarize lists the blocks whose residency equals want, grouped by kind
// with layer ranges, e.g. "head, norms, attn L0-63 (19.3 GB)". Blocks never
// used in the mode are left out of the streamed list.
func summarize(blocks []Block, resident []bool, want bool) string {
	byKind := map[string][]int{}
	var single []string
	var total int64
	for i, b := range blocks {
		if resident[i] != want || (!want && b.UsesPerToken == 0) {
			continue
		}
		if b.Layer < 0 {
			n := b.Name
			if !want && b.Kind == KindEmbed {
				n += " (rows on demand)" // not counted: only a row per token moves
			} else {
				total += b.Bytes
			}
			single = append(single, n)
			continue
		}
		total += b.Bytes
		byKind[b.Kind] = append(byKind[b.Kind], b.Layer)
	}
	sort.Slice(single, func(i, j int) bool {
		return kindOrder[strings.Fields(single[i])[0]] < kindOrder[strings.Fields(single[j])[0]]
	})
	parts := single
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kindOrder[kinds[i]] < kindOrder[kinds[j]] })
	for _, k := range kinds {
		parts = append(parts, k+" "+ranges(byKind[k]))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	if want {
		return fmt.Sprintf("%s (%s)", strings.Join(parts, ", "), memStr(total))
	}
	return fmt.Sprintf("%s (%s)", strings.Join(parts, ", "), bytesStr(total))
}

// ranges prints sorted layer numbers as "L0-63,70,72-79".
func ranges(ls []int) string {
	sort.Ints(ls)
	var parts []string
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(ls[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ls[i], ls[j]))
		}
		i = j + 1
	}
	return "L" + strings.Join(parts, ",")
}

// FormatGain compares a plan under a memory budget with the paper's setting
// (only embeddings, head and norms resident) for the same model and link:
// how much residency buys each mode, and the Sirius/dense ratio of each.
func FormatGain(budget, paper Prediction) string {
	var b strings.Builder
	fmt.Fprintf(&b, "residency gain: %s budget vs the paper's setting (embeddings, head, norms resident)\n",
		memStr(budget.Params.GPUMem))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tpaper s/tok\tbudget s/tok\tsaved s/tok\tspeedup\tresident extra\t")
	for _, m := range budget.Modes {
		pm := paper.Mode(m.Mode)
		if pm == nil {
			continue
		}
		sp := 0.0
		if m.SecondsPerToken > 0 {
			sp = pm.SecondsPerToken / m.SecondsPerToken
		}
		fmt.Fprintf(tw, "%s\t%.4g\t%.4g\t%.4g\t%.2fx\t%s\t\n", m.Mode, pm.SecondsPerToken, m.SecondsPerToken,
			pm.SecondsPerToken-m.SecondsPerToken, sp, memStr(m.ResidentBytes-pm.ResidentBytes))
	}
	tw.Flush()
	fmt.Fprintf(&b, "sirius/dense: paper %.3f, budget %.3f\n", paper.SiriusRatio(), budget.SiriusRatio())
	return b.String()
}
