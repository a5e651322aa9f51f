package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"offload"
	"offload/corrector"
	"offload/device"
	"offload/engine"
	"offload/internal/units"
	"offload/plan"
	"offload/sparsity"
)

// defaultModel is where `make model` puts stories260K.
const defaultModel = "models/stories260K.gguf"

func modelFlag() cli.Flag {
	return &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Value: defaultModel,
		Usage: "model `PATH`: a GGUF file, a Hugging Face directory (config.json + *.safetensors) or a llama2.c .bin"}
}

// deviceFlags choose and bound the device.
func deviceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "device", Value: "auto", Usage: "auto (CUDA if a GPU is found, else host), cuda, or host"},
		&cli.StringFlag{Name: "device-mem", Usage: "device memory to use, a `SIZE` such as 24GiB or 600MiB (default: all of a GPU; on the host backend, the machine's RAM)"},
		&cli.StringFlag{Name: "link", Usage: "host backend only: pace host->device copies to a link `RATE`, e.g. 25GB/s, 4Gb/s (bits), pcie3, pcie4, pcie5 (default: unpaced memcpy)"},
		&cli.StringFlag{Name: "kernels", Value: "simd", Usage: "host backend: simd (AVX-512 or AVX2, whichever this CPU has) or plain (the portable Go kernels, to measure what SIMD gains)"},
		&cli.BoolFlag{Name: "pinned", Value: true, Usage: "CUDA: stage copies in page-locked memory (--pinned=false measures pageable copies)"},
		&cli.BoolFlag{Name: "no-prefetch", Usage: "turn the copy/compute pipeline off: each layer is copied after the previous one finished computing"},
		&cli.IntFlag{Name: "ctx", Usage: "`N` KV cache positions (default: prompt + tokens + window, at most the model's context)"},
		&cli.IntFlag{Name: "threads", Usage: "`N` CPU threads for the host backend's compute, and GOMAXPROCS (default: all cores)"},
	}
}

// except is flags without the named ones (a command that does not read a
// shared flag must not offer it).
func except(flags []cli.Flag, names ...string) []cli.Flag {
	var out []cli.Flag
	for _, f := range flags {
		if !slices.Contains(names, f.Names()[0]) {
			out = append(out, f)
		}
	}
	return out
}

// decodeFlags choose the decoding mode and its parameters.
func decodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mode", Value: "sirius", Usage: "dense (plain decoding), sparse (sparse model only) or sirius (sparse drafts, full checks)"},
		&cli.StringFlag{Name: "sparsity", Value: "griffin", Usage: "sparse model: griffin (per-sequence neuron set from the prompt), topk (per-token top-k of |silu(gate x)|) or dense"},
		&cli.Float64Flag{Name: "keep", Value: 0.5, Usage: "fraction of FFN neurons the sparse model keeps"},
		&cli.IntFlag{Name: "window", Value: corrector.DefaultWindow, Usage: "Sirius period K: the full model checks up to K tokens in one pass (exactly K with --window-policy fixed)"},
		&cli.StringFlag{Name: "window-policy", Value: "adaptive", Usage: "adaptive (choose each window's length and width from measured pass costs and the acceptance so far; never much slower than dense) or fixed (every window is --window long, as in the paper)"},
		&cli.Float64Flag{Name: "threshold", Value: corrector.DefaultThreshold, Usage: "Sirius: keep a draft while the full model gives it at least this likelihood (at temperature 0.6)"},
		&cli.StringFlag{Name: "accept", Value: "threshold", Usage: "threshold (the paper's rule), strict (keep a draft only if it is the full model's argmax: lossless), or all (diagnostic: keep every draft)"},
		&cli.IntFlag{Name: "width", Value: 1, Usage: "Sirius width: the most branches of a draft tree (adaptive) or beams (fixed), all verified in one batched pass"},
		&cli.Float64Flag{Name: "temperature", Aliases: []string{"t"}, Value: 0, Usage: "0 is greedy; above 0 samples (Sirius then uses speculative-sampling acceptance)"},
		&cli.Float64Flag{Name: "top-p", Aliases: []string{"p"}, Value: 0.9, Usage: "nucleus sampling cutoff when --temperature > 0"},
		&cli.Uint64Flag{Name: "seed", Aliases: []string{"s"}, Value: 42, Usage: "random seed (same seed, same output)"},
	}
}

// deviceSettings are the device flags, parsed once.
type deviceSettings struct {
	name string
	cfg  device.Config
}

// readDevice parses the device flags and says on stderr what a --link
// value was read as, so "4Gb/s" (bits) and "4GB/s" (bytes) cannot be
// confused silently.
func readDevice(c *cli.Context) (deviceSettings, error) {
	var d deviceSettings
	var err error
	if s := c.String("device-mem"); s != "" {
		if d.cfg.Capacity, err = units.ParseSize(s); err != nil {
			return d, fmt.Errorf("--device-mem: %w", err)
		}
	}
	if s := c.String("link"); s != "" {
		if d.cfg.Link, err = units.ParseLink(s); err != nil {
			return d, fmt.Errorf("--link: %w", err)
		}
		if d.cfg.Link > 0 {
			fmt.Fprintf(os.Stderr, "link: pacing host->device copies at %s (--link %s)\n", units.Rate(d.cfg.Link), s)
		}
	}
	d.cfg.Pageable = !c.Bool("pinned")
	switch k := c.String("kernels"); k {
	case "simd", "":
	case "plain":
		d.cfg.PlainKernels = true
	default:
		return d, fmt.Errorf("--kernels %q: use simd or plain", k)
	}
	d.name = c.String("device")
	switch d.name {
	case "auto", "cuda", "host":
	default:
		return d, fmt.Errorf("--device %q: use auto, cuda or host", d.name)
	}
	if d.cfg.Threads = c.Int("threads"); d.cfg.Threads < 0 || (c.IsSet("threads") && d.cfg.Threads == 0) {
		return d, fmt.Errorf("--threads %d: must be at least 1 (leave it out to use every core)", d.cfg.Threads)
	}
	if c.IsSet("ctx") && c.Int("ctx") < 1 {
		return d, fmt.Errorf("--ctx %d: must be at least 1 (leave it out for prompt + tokens + window)", c.Int("ctx"))
	}
	return d, nil
}

// open opens the device; the note (e.g. the fallback from auto to host)
// belongs in the report. --threads also bounds the Go scheduler, so the
// process uses no more cores than asked for.
func (d deviceSettings) open() (device.Device, string, error) {
	if d.cfg.Threads > 0 {
		runtime.GOMAXPROCS(d.cfg.Threads)
	}
	return offload.OpenDevice(d.name, d.cfg)
}

// readDecoding parses the decoding flags; modeName overrides --mode.
func readDecoding(c *cli.Context, modeName string) (engine.Decoding, error) {
	d := engine.DefaultDecoding()
	var err error
	if d.Mode, err = corrector.ParseMode(modeName); err != nil {
		return d, fmt.Errorf("--mode: %w", err)
	}
	if d.Sparsity, err = sparsity.ParsePolicy(c.String("sparsity")); err != nil {
		return d, fmt.Errorf("--sparsity: %w", err)
	}
	if err := sparsity.CheckKeep(c.Float64("keep")); err != nil {
		return d, fmt.Errorf("--keep: %w", err)
	}
	if d.Accept, err = corrector.ParseAccept(c.String("accept")); err != nil {
		return d, fmt.Errorf("--accept: %w", err)
	}
	if d.Policy, err = corrector.ParseWindowPolicy(c.String("window-policy")); err != nil {
		return d, fmt.Errorf("--window-policy: %w", err)
	}
	d.Keep, d.Window, d.Threshold, d.Width = c.Float64("keep"), c.Int("window"), c.Float64("threshold"), c.Int("width")
	// Each check names its flag; Validate below is the engine's own word,
	// kept as a backstop for rules added there later.
	switch {
	case d.Window < 1:
		return d, fmt.Errorf("--window %d: must be at least 1", d.Window)
	case d.Mode == corrector.Sirius && d.Window < 2:
		return d, fmt.Errorf("--window %d: Sirius needs a window of at least 2 (one draft per check)", d.Window)
	case d.Width < 1:
		return d, fmt.Errorf("--width %d: must be at least 1", d.Width)
	case !(d.Threshold >= 0 && d.Threshold <= 1):
		return d, fmt.Errorf("--threshold %g: must be a probability in [0, 1]", d.Threshold)
	}
	if err := d.Validate(); err != nil {
		return d, oneLine(err)
	}
	return d, nil
}

// readSampling parses -n and the sampling flags into a request. --top-p is
// checked even when greedy decoding ignores it: a bad value is a typo.
func readSampling(c *cli.Context, n int) (offload.Request, error) {
	r := offload.Request{MaxTokens: n, Temperature: c.Float64("temperature"), TopP: c.Float64("top-p"), Seed: c.Uint64("seed")}
	switch {
	case n < 1:
		return r, fmt.Errorf("-n %d: generate at least 1 token", n)
	case !(r.Temperature >= 0) || math.IsInf(r.Temperature, 0):
		return r, fmt.Errorf("-t/--temperature %g: must be 0 (greedy) or a finite positive number", r.Temperature)
	case !(r.TopP > 0 && r.TopP <= 1):
		return r, fmt.Errorf("-p/--top-p %g: must be in (0, 1] (1 turns nucleus sampling off)", r.TopP)
	}
	if err := (engine.Request{Prompt: []int{0}, MaxTokens: n, Temperature: r.Temperature, TopP: r.TopP}).Validate(); err != nil {
		return r, oneLine(err)
	}
	return r, nil
}

// oneLine joins a multi-error's lines, so every refusal is one line.
func oneLine(err error) error {
	return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
}

// engineOptions are the engine settings the flags ask for, for prompts of
// up to promptLen tokens. note says when --ctx was lowered to the model's
// context.
func engineOptions(c *cli.Context, m *offload.Model, dec engine.Decoding, n, promptLen int) (opt engine.Options, note string) {
	ctx := c.Int("ctx")
	if ctx <= 0 {
		ctx = promptLen + n + dec.Window + 1
	} else if ctx > m.Config.MaxSeq {
		note = fmt.Sprintf("--ctx %d is above the model's context of %d positions: capped to %d", ctx, m.Config.MaxSeq, m.Config.MaxSeq)
	}
	ctx = min(ctx, m.Config.MaxSeq)
	return engine.Options{
		Decoding: dec, NoPrefetch: c.Bool("no-prefetch"), Context: ctx, Trace: c.String("trace") != "",
		// Prefill in as few passes as possible: each pass streams every
		// layer that is not resident.
		MaxBatch: min(max(promptLen, 64), 512),
	}, note
}

// loadModel opens the model and its tokenizer, with a hint when the default
// model is missing.
func loadModel(c *cli.Context) (*offload.Model, error) {
	path := c.String("model")
	if path == defaultModel {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("model %s not found: run `make model` (or scripts/get-model.sh) to fetch stories260K, or pass --model PATH", path)
		}
	}
	tok := ""
	if c.IsSet("tokenizer") {
		tok = c.String("tokenizer")
	}
	return offload.Load(path, tok)
}

// flagErr says which flag to change for errors the engine reports in its own
// words.
func flagErr(err error) error {
	var be *plan.BudgetError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, engine.ErrContextFull):
		return fmt.Errorf("%w (raise --ctx, or shorten the prompt)", err)
	case errors.As(err, &be):
		return fmt.Errorf("%w (raise --device-mem, lower --ctx or --window, or use a smaller model)", err)
	}
	return err
}
