package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"offload/internal/fault"
	"offload/pager"
)

// Non-finite numbers are caught twice, and the fast path pays for neither:
//
//   - Weights: every file tensor is scanned for NaN/Inf the first time the
//     engine reads it (resident weights when the engine is built, streamed
//     ones on their layer's first pass), so a corrupt file fails with the
//     tensor's name instead of decoding as <unk><unk>... Later passes skip
//     the scan.
//   - Activations: the logits a pass brings back are scanned (they are read
//     on the host anyway). Only when they hold NaN/Inf is the pass run again
//     with the residual stream checked after every layer, to name the layer
//     where the activations first went non-finite.

// ErrNonFinite is wrapped by the error of a pass whose logits are not finite.
var ErrNonFinite = errors.New("activations went non-finite")

// finiteChecker remembers which file tensors have been scanned.
type finiteChecker struct {
	path string // the model, for errors ("" while New runs: its callers add it)
	done map[*pager.Tensor]bool
}

// check scans the not yet scanned source tensors of items, on up to workers
// goroutines (each under fault.Guard: they read the mapping).
func (f *finiteChecker) check(items []xfer, workers int) error {
	var ts []*pager.Tensor
	for _, it := range items {
		ts = append(ts, it.src...)
	}
	return f.checkTensors(ts, workers)
}

// checkTensors scans the tensors of ts not yet scanned.
func (f *finiteChecker) checkTensors(ts []*pager.Tensor, workers int) error {
	if f.done == nil {
		f.done = map[*pager.Tensor]bool{}
	}
	var todo []*pager.Tensor
	for _, t := range ts {
		if !f.done[t] {
			f.done[t] = true // at most once, even if listed twice
			todo = append(todo, t)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	errs := make([]error, len(todo))
	var next atomic.Int64
	ferr := fault.Go(max(1, min(workers, len(todo))), func(int) {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(todo) {
				return
			}
			errs[i] = todo[i].CheckFinite()
		}
	})
	if ferr != nil {
		return ferr
	}
	for i, err := range errs {
		if err != nil {
			// Not done: a later run on the same engine fails the same way.
			for _, t := range todo[i:] {
				delete(f.done, t)
			}
			if f.path != "" {
				err = fmt.Errorf("%s: %w", f.path, err)
			}
			return err
		}
	}
	return nil
}

// nonFiniteLogits says which of the fetched logit rows hold NaN or Inf.
func nonFiniteLogits(b []byte) bool { return pager.NonFinite(pager.F32, b) >= 0 }

// diagnose runs the pass again with the residual stream fetched and scanned
// after every layer, and returns an error naming the first layer whose
// output is not finite (or the LM head, if every layer's is). The KV cache
// lengths are unchanged (the pass rewrites the same positions).
func (e *Engine) diagnose(ctx context.Context, seqs []Seq, rows int, phase Phase, ffn FFNMode) error {
	host := make([]byte, rows*e.cfg.Dim*4)
	e.diag = func(u int) error {
		if u == e.cfg.Layers {
			return nil
		}
		if err := e.dev.CopyToHost(e.comp, host, e.act.X.Buf, e.act.X.Off); err != nil {
			return err
		}
		if err := e.dev.Synchronize(e.comp); err != nil {
			return err
		}
		if i := pager.NonFinite(pager.F32, host); i >= 0 {
			return &layerError{layer: u, row: i / e.cfg.Dim}
		}
		return nil
	}
	defer func() { e.diag = nil }()
	pass := e.Prof.begin(phase, rows)
	if err := e.embed(seqs, rows, pass); err != nil {
		return err
	}
	lerr := e.layersForward(ctx, seqs, rows, phase, ffn, pass)
	_, err := e.logits(seqs, pass, false)
	var le *layerError
	switch {
	case errors.As(lerr, &le):
		return fmt.Errorf("%w in layer %d (row %d of the pass): its output holds NaN or Inf although every weight is finite; the weights of blk.%d.* are out of range for this arithmetic",
			ErrNonFinite, le.layer, le.row, le.layer)
	case lerr != nil:
		return lerr
	case err != nil:
		return err
	}
	return fmt.Errorf("%w in the LM head: every layer's output is finite but the logits are not; output_norm.weight or %s is out of range for this arithmetic",
		ErrNonFinite, e.M.Head.Name)
}

// plainFault returns a fault of the mapped file as itself: "model file
// changed on disk" is the whole story, whichever copy or gather of which
// pass happened to touch the vanished page first.
func plainFault(err error) error {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return fe
	}
	return err
}

type layerError struct{ layer, row int }

func (l *layerError) Error() string { return fmt.Sprintf("layer %d output is not finite", l.layer) }
