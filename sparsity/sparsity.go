// Package sparsity decides which FFN neurons a sparse forward pass uses.
//
// In a SwiGLU FFN y = W_down(silu(W_gate x) * (W_up x)), neuron j is row j of
// W_gate, row j of W_up and column j of W_down. Contextual sparsity keeps a
// fraction keep of the neurons and skips the rest; only the FFN is sparse
// (attention, embeddings, norms and the head stay dense). Two selectors are
// provided, following the Sirius paper's two baselines:
//
//   - Griffin (per sequence): statistics gathered during prefill choose one
//     neuron set that is frozen for the whole generation, so the reduced
//     weights can be packed once and reused every token.
//   - Top-k by |silu(gate x)| (CATS-like, per token): the gate is computed in
//     full every token and only the rows with the largest activations are used
//     for up and down. A calibrated-threshold variant mirrors the original CATS.
//
// Every index list this package returns is sorted ascending, because the
// engine gathers rows from memory-mapped weights and ascending order keeps the
// reads sequential.
//
// The package is pure logic: no device, no model, nothing else of ours.
package sparsity

import (
	"fmt"
	"math"
	"strings"
)

// Policy names a neuron-selection policy.
type Policy string

const (
	// PolicyGriffin selects one neuron set per sequence from prefill statistics.
	PolicyGriffin Policy = "griffin"
	// PolicyTopK selects, per token, the neurons with the largest |silu(gate x)|.
	PolicyTopK Policy = "topk"
	// PolicyDense uses every neuron (no sparsity).
	PolicyDense Policy = "dense"
)

// Policies lists the valid policies in the order they are documented.
func Policies() []Policy { return []Policy{PolicyGriffin, PolicyTopK, PolicyDense} }

// ParsePolicy maps a user-supplied name (case-insensitive, surrounding spaces
// ignored) to a Policy. The error lists the valid names so a CLI can show it
// as is.
func ParsePolicy(s string) (Policy, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for _, p := range Policies() {
		if name == string(p) {
			return p, nil
		}
	}
	valid := make([]string, 0, len(Policies()))
	for _, p := range Policies() {
		valid = append(valid, string(p))
	}
	return "", fmt.Errorf("sparsity: unknown policy %q (valid: %s)", s, strings.Join(valid, ", "))
}

// CheckKeep reports whether keep is a usable fraction of neurons: it must lie
// in (0, 1]. Callers validate user input with it once, so that KeepCount can
// clamp silently.
func CheckKeep(keep float64) error {
	if !(keep > 0 && keep <= 1) { // also rejects NaN
		return fmt.Errorf("sparsity: keep %v is outside (0, 1]", keep)
	}
	return nil
}

// KeepCount is the number of neurons kept out of hidden for fraction keep:
// round(keep*hidden) clamped to [1, hidden] (0 when hidden <= 0). Values of
// keep outside (0, 1], NaN included, are clamped here; CheckKeep is where
// they become an error.
func KeepCount(keep float64, hidden int) int {
	if hidden <= 0 {
		return 0
	}
	if !(keep > 0) {
		return 1
	}
	if keep >= 1 {
		return hidden
	}
	k := int(math.Round(keep * float64(hidden)))
	return min(max(k, 1), hidden)
}
