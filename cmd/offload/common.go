package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"offload"
	"offload/corrector"
	_ "offload/cuda" // registers the "cuda" backend
	"offload/device"
	_ "offload/device/host" // registers the "host" backend
	"offload/internal/units"
	"offload/model"
	"offload/sparsity"
)

// defaultModel is where `make model` puts stories260K.
const defaultModel = "models/stories260K.gguf"

func modelFlag() cli.Flag {
	return &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Value: defaultModel,
		Usage: "model: a GGUF file, a Hugging Face directory (config.json + *.safetensors) or a llama2.c .bin"}
}

// deviceFlags choose and bound the device.
func deviceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "device", Value: "auto", Usage: "auto (CUDA if a GPU is found, else host), cuda, or host"},
		&cli.StringFlag{Name: "device-mem", Usage: "device memory to use, e.g. 24GiB or 600MiB (default: all of it; the host backend: enough for the whole model)"},
		&cli.StringFlag{Name: "link", Usage: "host backend only: pace host->device copies to a link, e.g. 25GB/s, pcie3, pcie4, pcie5 (default: unpaced memcpy)"},
		&cli.BoolFlag{Name: "pinned", Value: true, Usage: "CUDA: stage copies in page-locked memory (--pinned=false measures pageable copies)"},
		&cli.BoolFlag{Name: "no-prefetch", Usage: "turn the copy/compute pipeline off: each layer is copied after the previous one finished computing"},
		&cli.IntFlag{Name: "ctx", Usage: "KV cache positions (default: prompt + tokens + window, at most the model's context)"},
		&cli.BoolFlag{Name: "plan", Usage: "print the residency plan (what stays on the device, what streams) to stderr"},
	}
}

// decodeFlags choose the decoding mode and its parameters.
func decodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mode", Value: "sirius", Usage: "dense (plain decoding), sparse (sparse model only) or sirius (sparse drafts, full checks)"},
		&cli.StringFlag{Name: "sparsity", Value: "griffin", Usage: "sparse model: griffin (per-sequence neuron set from the prompt), topk (per-token top-k of |silu(gate x)|) or dense"},
		&cli.Float64Flag{Name: "keep", Value: 0.5, Usage: "fraction of FFN neurons the sparse model keeps"},
		&cli.IntFlag{Name: "window", Value: corrector.DefaultWindow, Usage: "Sirius period K: every K tokens the full model checks the window in one pass"},
		&cli.Float64Flag{Name: "threshold", Value: corrector.DefaultThreshold, Usage: "Sirius: keep a draft while the full model gives it at least this likelihood (at temperature 0.6)"},
		&cli.StringFlag{Name: "accept", Value: "threshold", Usage: "threshold (the paper's rule), strict (keep a draft only if it is the full model's argmax: lossless), or all (diagnostic: keep every draft)"},
		&cli.IntFlag{Name: "width", Value: 1, Usage: "Sirius beam width: drafts this many branches, all verified in one batched pass"},
		&cli.Float64Flag{Name: "temperature", Aliases: []string{"t"}, Value: 0, Usage: "0 is greedy; above 0 samples (Sirius then uses speculative-sampling acceptance)"},
		&cli.Float64Flag{Name: "top-p", Aliases: []string{"p"}, Value: 0.9, Usage: "nucleus sampling cutoff when --temperature > 0"},
		&cli.Uint64Flag{Name: "seed", Aliases: []string{"s"}, Value: 42, Usage: "random seed (same seed, same output)"},
	}
}

// openDevice opens the device the flags ask for; note says what happened
// (e.g. the fallback from auto to host).
func openDevice(c *cli.Context, wantBytes int64) (dev device.Device, note string, err error) {
	var cfg device.Config
	if s := c.String("device-mem"); s != "" {
		if cfg.Capacity, err = units.ParseSize(s); err != nil {
			return nil, "", fmt.Errorf("--device-mem: %w", err)
		}
	}
	if s := c.String("link"); s != "" {
		if cfg.Link, err = units.ParseLink(s); err != nil {
			return nil, "", fmt.Errorf("--link: %w", err)
		}
	}
	cfg.Pageable = !c.Bool("pinned")
	kind := c.String("device")
	switch kind {
	case "auto", "cuda":
		d, cerr := device.Open("cuda", cfg)
		if cerr == nil {
			if cfg.Link > 0 {
				note = "--link is ignored on a GPU: the real link is measured"
			}
			return d, note, nil
		}
		if kind == "cuda" {
			return nil, "", cerr
		}
		note = "no CUDA GPU found, running on the host backend (" + firstLine(cerr.Error()) + ")"
	case "host":
	default:
		return nil, "", fmt.Errorf("--device %q: use auto, cuda or host", kind)
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = math.MaxInt64 / 4
	}
	d, err := device.Open("host", cfg)
	if err != nil {
		return nil, "", err
	}
	return d, note, nil
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}

// openModel opens a model with a friendly hint when the default is missing.
func openModel(path string) (*model.Model, error) {
	if path == defaultModel {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("model %s not found: run `make model` (or scripts/get-model.sh) to fetch stories260K, or pass --model PATH", path)
		}
	}
	return model.Open(path)
}

// decodeConfig reads the decoding flags.
func decodeConfig(c *cli.Context, maxTokens int, modeName string) (offload.Mode, corrector.Config, sparsity.Policy, error) {
	mode, err := offload.ParseMode(modeName)
	if err != nil {
		return 0, corrector.Config{}, "", fmt.Errorf("--mode: %w", err)
	}
	pol, err := sparsity.ParsePolicy(c.String("sparsity"))
	if err != nil {
		return 0, corrector.Config{}, "", fmt.Errorf("--sparsity: %w", err)
	}
	if err := sparsity.CheckKeep(c.Float64("keep")); err != nil {
		return 0, corrector.Config{}, "", fmt.Errorf("--keep: %w", err)
	}
	acc, err := corrector.ParseAccept(c.String("accept"))
	if err != nil {
		return 0, corrector.Config{}, "", fmt.Errorf("--accept: %w", err)
	}
	cfg := corrector.DefaultConfig()
	cfg.Mode = map[offload.Mode]corrector.Mode{offload.ModeDense: corrector.Dense, offload.ModeSparse: corrector.Sparse, offload.ModeSirius: corrector.Sirius}[mode]
	cfg.Window = c.Int("window")
	cfg.Threshold = c.Float64("threshold")
	cfg.Accept = acc
	cfg.Width = c.Int("width")
	cfg.Temperature = c.Float64("temperature")
	cfg.TopP = c.Float64("top-p")
	cfg.Seed = c.Uint64("seed")
	cfg.MaxTokens = maxTokens
	if cfg.Window < 2 && mode == offload.ModeSirius {
		return 0, cfg, "", fmt.Errorf("--window %d: Sirius needs a window of at least 2", cfg.Window)
	}
	if cfg.Width < 1 {
		return 0, cfg, "", fmt.Errorf("--width must be at least 1")
	}
	return mode, cfg, pol, nil
}

// engineOptions turns flags into engine options.
func engineOptions(c *cli.Context, m *model.Model, mode offload.Mode, cfg corrector.Config, pol sparsity.Policy, promptLen int) offload.Options {
	ctx := c.Int("ctx")
	if ctx <= 0 {
		ctx = promptLen + cfg.MaxTokens + cfg.Window + 1
	}
	ctx = min(ctx, m.Config.MaxSeq)
	var mem int64
	if s := c.String("device-mem"); s != "" {
		mem, _ = units.ParseSize(s)
	}
	return offload.Options{
		DeviceMem: mem, NoPrefetch: c.Bool("no-prefetch"), Policy: pol, Keep: c.Float64("keep"),
		Mode: mode, Window: cfg.Window, Branches: max(1, cfg.Width), Context: ctx, Trace: c.String("trace") != "",
		// Prefill in as few passes as possible: each pass streams every
		// layer that is not resident.
		MaxBatch: min(max(promptLen, 64), 512),
	}
}

func modelName(path string) string { return filepath.Base(filepath.Clean(path)) }
