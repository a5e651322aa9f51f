package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
)

// Measured is what `offload bench --json` records, and what
// `offload plan --measured FILE` predicts from instead of the GPU and link
// tables. Times and bytes are totals over the run; Count says how many
// passes they cover, so per-pass figures are total/Count.
type Measured struct {
	Model    string         `json:"model,omitempty"`
	Device   string         `json:"device,omitempty"`
	LinkGBps float64        `json:"link_gbps"` // measured host->device copy rate of pinned memory, GB/s (10^9)
	Modes    []MeasuredMode `json:"modes"`
}

// MeasuredMode is one decoding mode's run.
type MeasuredMode struct {
	Mode   string          `json:"mode"`   // "dense", "sparse" or "sirius"
	Tokens int             `json:"tokens"` // tokens generated (prefill excluded)
	AAL    float64         `json:"aal,omitempty"`
	Phases []MeasuredPhase `json:"phases"`
}

// Phase names: a one-token pass of the full model, a one-token sparse pass,
// and a Sirius check (one full pass over the window).
const (
	PhaseFull   = "full"
	PhaseSparse = "sparse"
	PhaseCheck  = "check"
)

// MeasuredPhase is every pass of one kind in a run.
type MeasuredPhase struct {
	Phase  string          `json:"phase"` // PhaseFull, PhaseSparse or PhaseCheck
	Count  int             `json:"count"` // passes run
	Layers []MeasuredLayer `json:"layers"`
}

// MeasuredLayer is one pipeline stage's totals over a phase's passes. Layer
// -1 is the stage outside the layers (embedding rows, final norm, head).
type MeasuredLayer struct {
	Layer          int     `json:"layer"`
	CopyBytes      int64   `json:"copy_bytes"`
	CopySeconds    float64 `json:"copy_seconds"`
	ComputeSeconds float64 `json:"compute_seconds"`
}

// maxMeasuredFile bounds what LoadMeasured reads: a bench file holds a few
// numbers per layer and phase, far below this.
const maxMeasuredFile = 64 << 20

// LoadMeasured reads and checks a bench JSON file.
func LoadMeasured(path string) (*Measured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("measured: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMeasuredFile+1))
	if err != nil {
		return nil, fmt.Errorf("measured %s: %w", path, err)
	}
	if len(data) > maxMeasuredFile {
		return nil, fmt.Errorf("measured %s: larger than %d bytes, not a bench file", path, maxMeasuredFile)
	}
	m, err := ParseMeasured(data)
	if err != nil {
		return nil, fmt.Errorf("measured %s: %w", path, err)
	}
	return m, nil
}

// ParseMeasured decodes and validates bench JSON (unknown fields are
// ignored): known modes and phases, positive counts, finite non-negative
// times and bytes, layers in range and not repeated.
func ParseMeasured(data []byte) (*Measured, error) {
	var m Measured
	// Unknown fields are ignored: `offload bench --json` embeds Measured in a
	// larger record (its per-mode results, the memcpy ceiling, notes).
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the numbers a prediction will divide by and index with.
func (m *Measured) Validate() error {
	if bad(m.LinkGBps) {
		return fmt.Errorf("link_gbps %v is not a finite non-negative number", m.LinkGBps)
	}
	seen := map[Mode]bool{}
	for _, mm := range m.Modes {
		mode, err := ParseMode(mm.Mode)
		if err != nil {
			return err
		}
		if seen[mode] {
			return fmt.Errorf("mode %s appears twice", mode)
		}
		seen[mode] = true
		if mm.Tokens <= 0 {
			return fmt.Errorf("mode %s: tokens %d, want > 0", mode, mm.Tokens)
		}
		if bad(mm.AAL) {
			return fmt.Errorf("mode %s: aal %v is not a finite non-negative number", mode, mm.AAL)
		}
		phases := map[string]bool{}
		for _, p := range mm.Phases {
			switch p.Phase {
			case PhaseFull, PhaseSparse, PhaseCheck:
			default:
				return fmt.Errorf("mode %s: unknown phase %q (known: full, sparse, check)", mode, p.Phase)
			}
			if phases[p.Phase] {
				return fmt.Errorf("mode %s: phase %s appears twice", mode, p.Phase)
			}
			phases[p.Phase] = true
			if p.Count <= 0 {
				return fmt.Errorf("mode %s phase %s: count %d, want > 0", mode, p.Phase, p.Count)
			}
			layers := map[int]bool{}
			for _, l := range p.Layers {
				if l.Layer < -1 || l.Layer >= 1<<12 {
					return fmt.Errorf("mode %s phase %s: layer %d out of range", mode, p.Phase, l.Layer)
				}
				if layers[l.Layer] {
					return fmt.Errorf("mode %s phase %s: layer %d appears twice", mode, p.Phase, l.Layer)
				}
				layers[l.Layer] = true
				if l.CopyBytes < 0 || bad(l.CopySeconds) || bad(l.ComputeSeconds) {
					return fmt.Errorf("mode %s phase %s layer %d: negative or non-finite figures", mode, p.Phase, l.Layer)
				}
			}
		}
		if len(mm.Phases) == 0 {
			return fmt.Errorf("mode %s: no phases", mode)
		}
	}
	return nil
}

func bad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }

// mode returns the measured run of a mode, or nil.
func (m *Measured) mode(md Mode) *MeasuredMode {
	if m == nil {
		return nil
	}
	for i := range m.Modes {
		if x, err := ParseMode(m.Modes[i].Mode); err == nil && x == md {
			return &m.Modes[i]
		}
	}
	return nil
}

func (mm *MeasuredMode) phase(name string) *MeasuredPhase {
	for i := range mm.Phases {
		if mm.Phases[i].Phase == name {
			return &mm.Phases[i]
		}
	}
	return nil
}

func (p *MeasuredPhase) layer(l int) *MeasuredLayer {
	for i := range p.Layers {
		if p.Layers[i].Layer == l {
			return &p.Layers[i]
		}
	}
	return nil
}
