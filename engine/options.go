package engine

import (
	"errors"
	"fmt"
	"math"

	"offload/corrector"
	"offload/sparsity"
)

// Decoding is how an engine produces tokens: the decoding mode, the Sirius
// window and width, the acceptance rule and the sparse model. It is fixed
// when the engine is built, because the residency plan, the KV caches and
// the batch size all depend on it; a request cannot ask for another window.
// Every other part of the program reads these numbers from here, so the
// engine and the corrector can never disagree about them.
type Decoding struct {
	Mode corrector.Mode
	// Policy chooses each window's length and width: adaptive (from the
	// measured pass costs and the acceptance seen so far; Window is then
	// the maximum) or fixed (every window is Window long, as in the paper).
	Policy corrector.WindowPolicy
	// Window is the Sirius period K: a check covers the last checked token
	// and K-1 drafts (at most K-1 under the adaptive policy).
	Window int
	// Width is the number of branches drafted per window (beams).
	Width int
	// Accept and Threshold decide which drafts a check keeps.
	Accept    corrector.Accept
	Threshold float64
	// Sparsity and Keep choose the sparse model.
	Sparsity sparsity.Policy
	Keep     float64
}

// DefaultDecoding is Sirius over a Griffin model with the paper's settings
// (keep 0.5, threshold 0.1) and windows of up to 16 chosen by the adaptive
// policy, which falls back to plain decoding when drafts do not pay.
func DefaultDecoding() Decoding {
	c := corrector.DefaultConfig()
	return Decoding{Mode: corrector.Sirius, Policy: corrector.PolicyAdaptive, Window: c.Window, Width: 1, Accept: c.Accept,
		Threshold: c.Threshold, Sparsity: sparsity.PolicyGriffin, Keep: 0.5}
}

// Validate checks the settings before anything is allocated.
func (d Decoding) Validate() error {
	var errs []error
	if d.Mode != corrector.Sirius && d.Mode != corrector.Dense && d.Mode != corrector.Sparse {
		errs = append(errs, fmt.Errorf("unknown mode %d", int(d.Mode)))
	}
	switch {
	case d.Window < 1:
		errs = append(errs, fmt.Errorf("window %d must be at least 1", d.Window))
	case d.Mode == corrector.Sirius && d.Window < 2:
		errs = append(errs, fmt.Errorf("window %d: Sirius needs a window of at least 2", d.Window))
	}
	if d.Width < 1 {
		errs = append(errs, fmt.Errorf("width %d must be at least 1", d.Width))
	}
	if !(d.Threshold >= 0 && d.Threshold <= 1) {
		errs = append(errs, fmt.Errorf("threshold %g must be a probability in [0, 1]", d.Threshold))
	}
	if err := sparsity.CheckKeep(d.Keep); err != nil {
		errs = append(errs, err)
	}
	if _, err := sparsity.ParsePolicy(string(d.Sparsity)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// corrector is the corrector's configuration for one request.
func (d Decoding) corrector(r Request) corrector.Config {
	c := corrector.DefaultConfig()
	c.Mode, c.Policy, c.Window, c.Width, c.Accept, c.Threshold = d.Mode, d.Policy, d.Window, d.Width, d.Accept, d.Threshold
	c.Temperature, c.TopP, c.Seed = r.Temperature, r.TopP, r.Seed
	c.MaxTokens, c.EOS, c.Stop = r.MaxTokens, r.EOS, r.Stop
	return c
}

// Request is one generation: what may change from one call to the next on
// the same engine.
type Request struct {
	Prompt []int
	// MaxTokens bounds the generated tokens (at least 1).
	MaxTokens int
	// Temperature 0 is greedy; above 0 tokens are sampled (top-p TopP,
	// seeded with Seed: the same seed gives the same output).
	Temperature float64
	TopP        float64
	Seed        uint64
	// EOS lists the ids that end generation (never emitted).
	EOS []int
	// Stop, if set, is asked after each final token with everything
	// generated so far; true ends generation after that token.
	Stop func(generated []int) bool
}

// Validate checks a request against the rules every front end shares.
func (r Request) Validate() error {
	var errs []error
	if len(r.Prompt) == 0 {
		errs = append(errs, errors.New("the prompt is empty"))
	}
	if r.MaxTokens < 1 {
		errs = append(errs, fmt.Errorf("max tokens %d must be at least 1", r.MaxTokens))
	}
	if !(r.Temperature >= 0) || math.IsInf(r.Temperature, 0) {
		errs = append(errs, fmt.Errorf("temperature %g must be finite and not negative", r.Temperature))
	}
	if r.Temperature > 0 && !(r.TopP > 0 && r.TopP <= 1) {
		errs = append(errs, fmt.Errorf("top-p %g must be in (0, 1]", r.TopP))
	}
	return errors.Join(errs...)
}

// Options configures an Engine: the decoding, and how it uses the device.
type Options struct {
	Decoding
	// DeviceMem is the device memory the engine may use (0: all of it).
	DeviceMem int64
	// Context is the number of positions the KV caches hold (0: the model's).
	Context int
	// MaxBatch bounds the rows of one pass (prefill is chunked to it).
	// Streamed weights cross the link once per chunk, so long prompts want
	// it large. It is raised to hold a whole window check.
	MaxBatch int
	// NoPrefetch turns the pipeline off: each layer's copy starts only after
	// the previous layer's compute has finished (one slot).
	NoPrefetch bool
	// ResidentAll forces everything resident (fails if it does not fit).
	ResidentAll bool
	// StreamAll keeps only the LM head resident and streams every layer
	// (the paper's offloading setting), whatever the budget.
	StreamAll bool
	// StageAll copies even contiguous weights through the pinned staging
	// buffers (set automatically for a device whose Capabilities prefer it).
	StageAll bool
	// CopyResident copies resident weights into device buffers even on a
	// device that could map the file in place (Capabilities.MapsHost).
	CopyResident bool
	// HostPack bounds the host memory used to pack the Griffin rows of the
	// streamed layers once per sequence (0: a quarter of physical memory;
	// negative: never pack, gather the rows every step).
	HostPack int64
	// Workers gather rows into staging (0: GOMAXPROCS).
	Workers int
	// Trace keeps every span for WriteTrace.
	Trace bool
	// PrefillProgress, if set, is told after each prefill chunk how many
	// prompt tokens are done (a long prompt on a streamed 70B model takes
	// one full pass over the weights per chunk).
	PrefillProgress func(done, total int)
}
