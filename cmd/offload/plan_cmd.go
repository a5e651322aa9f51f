package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"offload/internal/units"
	"offload/model"
	"offload/plan"
	"offload/plan/plot"
)

// planCommand is `offload plan`: the residency plan and predicted cost per
// token of a model (a file, or a built-in shape) on a GPU behind a link,
// computed from headers and tables alone.
func planCommand() *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "predict what stays on the GPU, bytes moved and seconds per token for dense, sparse and Sirius decoding",
		Description: `Reads only the model's config or header (never the weights), or a built-in shape, and prints:
the residency plan per mode (what stays on the GPU, what streams, per phase), bytes per token over the
link, predicted s/token layer by layer as max(link time, compute time) summed, the Sirius/dense ratio,
how much residency helps compared with the paper's setting (only embeddings, head and norms resident),
and the host memory needed (pinned staging plus page cache).

Example: offload plan --shape llama-3-70b --gpu rtx-4090 --link pcie4 --window 16 --keep 0.5`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "model directory (config.json + safetensors), GGUF or llama2.c file"},
			&cli.StringFlag{Name: "shape", Usage: "built-in shape instead of --model: " + strings.Join(shapeNames(), ", ")},
			&cli.StringFlag{Name: "gpu", Value: plan.DefaultGPU, Usage: "GPU from the table: " + strings.Join(gpuNames(), ", ")},
			&cli.StringFlag{Name: "gpu-mem", Usage: "device memory for the plan, e.g. 24GiB (default: the GPU's)"},
			&cli.StringFlag{Name: "link", Value: "pcie4", Usage: "host->device rate: pcie3, pcie4, pcie5 (pinned, measured) or e.g. 25GB/s"},
			&cli.StringFlag{Name: "dtype", Usage: "weight type: bf16, f16, f32, int8, int4, or a llama.cpp file type with its per-tensor mix, as offload convert --type writes it (q8_0, q4_k_m, q5_k_m, ...) (default: a --model file's own tensors, or bf16 for a shape)"},
			&cli.IntFlag{Name: "window", Value: plan.PaperWindow, Usage: "Sirius period K: drafted tokens per check, plus one"},
			&cli.Float64Flag{Name: "keep", Value: plan.PaperKeep, Usage: "Griffin fraction of FFN neurons kept per sequence"},
			&cli.Float64Flag{Name: "aal", Usage: "Sirius average advance length (default: the paper's 15.22/16 of the window)"},
			&cli.IntFlag{Name: "ctx", Usage: fmt.Sprintf("KV cache positions to reserve (default: the model's, at most %d)", plan.DefaultContext)},
			&cli.StringFlag{Name: "flops", Usage: "achieved compute rate, e.g. 100T (replaces the GPU table's)"},
			&cli.StringFlag{Name: "mem-bw", Usage: "achieved memory bandwidth, e.g. 800GB/s (replaces the GPU table's)"},
			&cli.BoolFlag{Name: "paper", Usage: "the paper's setting: only embeddings, head and norms resident, layers double-buffered"},
			&cli.StringFlag{Name: "measured", Usage: "per-layer copy and compute times from `FILE` (written by offload bench --json) instead of the tables"},
			&cli.BoolFlag{Name: "json", Usage: "print the prediction as JSON"},
			&cli.StringFlag{Name: "plot", Usage: "draw s/token per mode and a copy/compute timeline to this .svg or .png"},
			&cli.StringFlag{Name: "timeline", Value: "dense/full", Usage: "the pass --plot draws: MODE/PHASE, e.g. sirius/check, sparse/sparse"},
		},
		Action: runPlan,
	}
}

func shapeNames() []string {
	n := make([]string, len(model.Shapes))
	for i, s := range model.Shapes {
		n[i] = s.Name
	}
	return n
}

func gpuNames() []string {
	n := make([]string, len(plan.GPUs))
	for i, g := range plan.GPUs {
		n[i] = g.Name
	}
	return n
}

// planParams turns the flags into the model's config and plan parameters.
func planParams(c *cli.Context) (model.Config, plan.Params, error) {
	var cfg model.Config
	var p plan.Params
	switch {
	case c.IsSet("model") && c.IsSet("shape"):
		return cfg, p, errors.New("plan: give --model or --shape, not both")
	case c.IsSet("model"):
		info, err := plan.LoadModelInfo(c.String("model"))
		if err != nil {
			return cfg, p, fmt.Errorf("plan: %w", err)
		}
		cfg, p.Model, p.DType, p.DTypeBytes, p.Weights = info.Config, info.Name, info.DType, info.DTypeBytes, info.Weights
	case c.IsSet("shape"):
		s, err := model.LookupShape(c.String("shape"))
		if err != nil {
			return cfg, p, fmt.Errorf("plan: %w", err)
		}
		cfg, p.Model = s.Config, s.Name
	default:
		return cfg, p, fmt.Errorf("plan: no model: give --model DIR|FILE or --shape NAME (%s)", strings.Join(shapeNames(), ", "))
	}
	if c.IsSet("dtype") {
		w, err := plan.ParseWeights(cfg, c.String("dtype"))
		if err != nil {
			return cfg, p, fmt.Errorf("plan: --dtype: %w", err)
		}
		p.DType, p.DTypeBytes, p.Weights = w.Name, w.BytesPerWeight, &w
	}
	g, err := plan.LookupGPU(c.String("gpu"))
	if err != nil {
		if !(c.IsSet("flops") && c.IsSet("mem-bw") && c.IsSet("gpu-mem")) {
			return cfg, p, fmt.Errorf("plan: %w (for a GPU not in the table give --flops, --mem-bw and --gpu-mem)", err)
		}
		g = plan.GPU{Name: c.String("gpu")}
	}
	p.GPU = g
	if c.IsSet("gpu-mem") {
		if p.GPUMem, err = units.ParseSize(c.String("gpu-mem")); err != nil {
			return cfg, p, fmt.Errorf("plan: --gpu-mem: %w", err)
		}
	}
	if p.Link, err = units.ParseLink(c.String("link")); err != nil {
		return cfg, p, fmt.Errorf("plan: --link: %w", err)
	}
	if p.Link == 0 {
		return cfg, p, fmt.Errorf("plan: --link %q: the plan needs a link speed", c.String("link"))
	}
	if c.IsSet("flops") {
		if p.FLOPS, err = units.ParseFLOPS(c.String("flops")); err != nil {
			return cfg, p, fmt.Errorf("plan: --flops: %w", err)
		}
	}
	if c.IsSet("mem-bw") {
		if p.MemBW, err = units.ParseRate(c.String("mem-bw")); err != nil {
			return cfg, p, fmt.Errorf("plan: --mem-bw: %w", err)
		}
	}
	p.Window, p.Keep, p.AAL, p.Context = c.Int("window"), c.Float64("keep"), c.Float64("aal"), c.Int("ctx")
	if p.Window < 1 {
		return cfg, p, fmt.Errorf("plan: --window %d, want >= 1", p.Window)
	}
	if c.IsSet("keep") && !(p.Keep > 0 && p.Keep <= 1) {
		return cfg, p, fmt.Errorf("plan: --keep %v, want a fraction in (0, 1]", p.Keep)
	}
	if c.IsSet("aal") && !(p.AAL >= 1) {
		return cfg, p, fmt.Errorf("plan: --aal %v, want 1..window", p.AAL)
	}
	if c.IsSet("ctx") && p.Context < 1 {
		return cfg, p, fmt.Errorf("plan: --ctx %d, want >= 1", p.Context)
	}
	p.Paper = c.Bool("paper")
	if c.IsSet("measured") {
		if p.Measured, err = plan.LoadMeasured(c.String("measured")); err != nil {
			return cfg, p, fmt.Errorf("plan: %w", err)
		}
	}
	return cfg, p, nil
}

func runPlan(c *cli.Context) error {
	cfg, p, err := planParams(c)
	if err != nil {
		return err
	}
	pred, err := plan.Predict(cfg, p)
	var be *plan.BudgetError
	if errors.As(err, &be) {
		return fmt.Errorf("%w; try a larger --gpu-mem, a smaller --ctx or a smaller --dtype", err)
	}
	if err != nil {
		return err
	}
	// The paper's setting on the same GPU and link, to show what residency
	// buys. It may not fit where the budget plan does (it keeps the embeddings
	// and reserves full-layer slots); then the comparison is skipped.
	var paper *plan.Prediction
	var paperErr error
	if !p.Paper {
		pp := p
		pp.Paper = true
		if x, err := plan.Predict(cfg, pp); err == nil {
			paper = &x
		} else {
			paperErr = err
		}
	}

	w := c.App.Writer
	if c.Bool("json") {
		out := struct {
			Plan        plan.Prediction  `json:"plan"`
			Paper       *plan.Prediction `json:"paper_setting,omitempty"`
			SiriusDense float64          `json:"sirius_dense_ratio"`
		}{pred, paper, pred.SiriusRatio()}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("plan: %w", err)
		}
	} else {
		fmt.Fprint(w, pred.String())
		fmt.Fprintf(w, "\nsirius/dense: %.3f\n", pred.SiriusRatio())
		switch {
		case paper != nil:
			fmt.Fprint(w, "\n"+plan.FormatGain(pred, *paper))
		case paperErr != nil:
			fmt.Fprintf(w, "\nno comparison with the paper's setting: %v\n", paperErr)
		}
	}

	if path := c.String("plot"); path != "" {
		mode, phase, _ := strings.Cut(c.String("timeline"), "/")
		m, err := plan.ParseMode(mode)
		if err != nil {
			return fmt.Errorf("plan: --timeline: %w", err)
		}
		if phase == "" {
			phase = map[plan.Mode]string{plan.Dense: plan.PhaseFull, plan.Sparse: plan.PhaseSparse, plan.Sirius: plan.PhaseCheck}[m]
		}
		spans, err := plan.PassTimeline(*pred.Mode(m), phase)
		if err != nil {
			return fmt.Errorf("plan: --timeline: %w", err)
		}
		title := fmt.Sprintf("%s %s, %s, link %.3g GB/s; timeline: one %s %s pass", pred.Model, pred.Params.DType,
			pred.Params.GPU.Name, pred.Params.Link/1e9, m, phase)
		if err := plot.Figure(plot.ModeBars(pred), spans, title, path); err != nil {
			return err
		}
		if !c.Bool("json") {
			fmt.Fprintf(w, "plot: %s\n", path)
		}
	}
	return nil
}
