package model

import (
	"fmt"

	"offload/device"
)

// The Llama forward pass, written over device operations so that it reads
// like the math and runs on any backend. Weights here are device tensors,
// named after the GGUF tensors they hold; where they came from (resident,
// streamed into a slot, packed per sequence) is the engine's business.

// AttnWeights is one block's attention on the device, with both norms (they
// are tiny and every pass needs them, so they travel with the attention).
type AttnWeights struct {
	AttnNorm device.Tensor // blk.N.attn_norm   [1, dim]
	Q        device.Tensor // blk.N.attn_q      [heads*headDim, dim]
	K        device.Tensor // blk.N.attn_k      [kvHeads*headDim, dim]
	V        device.Tensor // blk.N.attn_v      [kvHeads*headDim, dim]
	O        device.Tensor // blk.N.attn_output [dim, heads*headDim]
	FFNNorm  device.Tensor // blk.N.ffn_norm    [1, dim]
}

// FFNWeights is a SwiGLU FFN restricted to K neurons: gate and up [K, dim];
// down either [dim, K] as in the file (MatMul) or, when DownT, [K, dim]
// (neuron bundles and packed neuron sets keep each neuron's down column as
// a row, MatMulT).
type FFNWeights struct {
	Gate  device.Tensor // blk.N.ffn_gate
	Up    device.Tensor // blk.N.ffn_up
	Down  device.Tensor // blk.N.ffn_down
	DownT bool
	K     int
}

// HeadWeights is the final norm and the LM head.
type HeadWeights struct {
	Norm device.Tensor // output_norm [1, dim]
	Out  device.Tensor // output      [vocab, dim] (token_embd when tied)
}

// Activations are a pass's working tensors, each with room for the largest
// pass: X is the residual stream, XB and XB2 its normalised and projected
// copies, HB and HB2 the FFN's hidden rows, Logits the head's output.
type Activations struct {
	X, XB, XB2   device.Tensor // [rows, dim]
	Q, Att       device.Tensor // [rows, heads*headDim]
	K, V         device.Tensor // [rows, kvHeads*headDim]
	HB, HB2      device.Tensor // [rows, hidden]
	Logits       device.Tensor // [logitRows, vocab]
	RopeFreqs    device.Tensor // scaled RoPE's inverse frequencies (Rows 0: theta RoPE)
	MaxRows      int
	MaxLogitRows int
}

// Span is one sequence's rows in a pass: rows [Row, Row+N) of the
// activations are positions Pos.. of the sequence whose key and value caches
// for this layer are K and V ([context, kvHeads*headDim]).
type Span struct {
	Row, N, Pos int
	K, V        device.Tensor
}

// errs keeps the first error of a run of enqueued operations, so a forward
// pass reads as the math with one check at the end.
type errs struct{ err error }

func (e *errs) do(err error) {
	if e.err == nil && err != nil {
		e.err = err
	}
}

// Attention runs the attention half of a block over rows of a.X:
//
//	h = RMSNorm(x, attn_norm); q, k, v = Q h, K h, V h; RoPE(q, k)
//	cache[pos..] = k, v;  x += O · attention(q, cache)
//	a.XB = RMSNorm(x, ffn_norm)   (the FFN's input)
//
// Each span attends over its own cache.
func (c *Config) Attention(d device.Device, s device.Stream, a *Activations, w *AttnWeights, spans []Span, rows int) error {
	x, xb, xb2 := a.X.Slice(0, rows), a.XB.Slice(0, rows), a.XB2.Slice(0, rows)
	q, k, v, at := a.Q.Slice(0, rows), a.K.Slice(0, rows), a.V.Slice(0, rows), a.Att.Slice(0, rows)
	var e errs
	e.do(d.RMSNorm(s, xb, x, w.AttnNorm, c.NormEps))
	e.do(d.MatMul(s, q, xb, w.Q))
	e.do(d.MatMul(s, k, xb, w.K))
	e.do(d.MatMul(s, v, xb, w.V))
	for _, sp := range spans {
		qs, ks, vs := q.Slice(sp.Row, sp.Row+sp.N), k.Slice(sp.Row, sp.Row+sp.N), v.Slice(sp.Row, sp.Row+sp.N)
		if a.RopeFreqs.Rows > 0 {
			e.do(d.RoPEFreqs(s, qs, sp.Pos, c.HeadDim, a.RopeFreqs, c.RopeStyle))
			e.do(d.RoPEFreqs(s, ks, sp.Pos, c.HeadDim, a.RopeFreqs, c.RopeStyle))
		} else {
			e.do(d.RoPE(s, qs, sp.Pos, c.HeadDim, c.RopeTheta, c.RopeStyle))
			e.do(d.RoPE(s, ks, sp.Pos, c.HeadDim, c.RopeTheta, c.RopeStyle))
		}
		if sp.Pos+sp.N > sp.K.Rows {
			return fmt.Errorf("span at %d of %d rows runs past a %d-position cache", sp.Pos, sp.N, sp.K.Rows)
		}
		ck, cv := sp.K.Slice(sp.Pos, sp.Pos+sp.N), sp.V.Slice(sp.Pos, sp.Pos+sp.N)
		e.do(d.CopyDevice(s, ck.Buf, ck.Off, ks.Buf, ks.Off, ks.Bytes()))
		e.do(d.CopyDevice(s, cv.Buf, cv.Off, vs.Buf, vs.Off, vs.Bytes()))
		e.do(d.Attention(s, at.Slice(sp.Row, sp.Row+sp.N), qs, sp.K, sp.V, sp.Pos, c.Heads, c.KVHeads, c.HeadDim))
	}
	e.do(d.MatMul(s, xb2, at, w.O))
	e.do(d.Add(s, x, xb2))
	e.do(d.RMSNorm(s, xb, x, w.FFNNorm, c.NormEps))
	return e.err
}

// FFNHooks let the engine see inside the FFN without the math knowing why.
type FFNHooks struct {
	// GateDone says a.HB already holds the gate pre-activations of the
	// chosen neurons (per-token top-k computes the whole gate to choose).
	GateDone bool
	// Hidden, if set, is called with h = silu(gate)·up ([rows, K] in a.HB)
	// before the down projection (Griffin statistics during prefill).
	Hidden func(h device.Tensor) error
}

// FFN runs the SwiGLU half of a block on a.XB (the normed residual):
//
//	h = silu(Gate xb) * (Up xb);  x += Down h
func (c *Config) FFN(d device.Device, s device.Stream, a *Activations, w *FFNWeights, rows int, hooks FFNHooks) error {
	xb, x, xb2 := a.XB.Slice(0, rows), a.X.Slice(0, rows), a.XB2.Slice(0, rows)
	hb, err := device.View(a.HB.Buf, a.HB.Off, device.F32, rows, w.K)
	if err != nil {
		return fmt.Errorf("ffn of %d neurons: %w", w.K, err)
	}
	hb2, err := device.View(a.HB2.Buf, a.HB2.Off, device.F32, rows, w.K)
	if err != nil {
		return fmt.Errorf("ffn of %d neurons: %w", w.K, err)
	}
	var e errs
	if !hooks.GateDone {
		e.do(d.MatMul(s, hb, xb, w.Gate))
	}
	e.do(d.MatMul(s, hb2, xb, w.Up))
	e.do(d.SiLUMul(s, hb, hb, hb2))
	if e.err != nil {
		return e.err
	}
	if hooks.Hidden != nil {
		if err := hooks.Hidden(hb); err != nil {
			return err
		}
	}
	if w.DownT {
		e.do(d.MatMulT(s, xb2, hb, w.Down))
	} else {
		e.do(d.MatMul(s, xb2, hb, w.Down))
	}
	e.do(d.Add(s, x, xb2))
	return e.err
}

// HeadRows is a run of rows of a pass whose logits are wanted: rows
// [Row, Row+N) of a.X give logits rows [Out, Out+N).
type HeadRows struct{ Row, N, Out int }

// Head computes the logits of the wanted rows: logits = Out · RMSNorm(x).
func (c *Config) Head(d device.Device, s device.Stream, a *Activations, w *HeadWeights, rows int, want []HeadRows) error {
	if err := d.RMSNorm(s, a.XB.Slice(0, rows), a.X.Slice(0, rows), w.Norm, c.NormEps); err != nil {
		return err
	}
	for _, h := range want {
		if err := d.MatMul(s, a.Logits.Slice(h.Out, h.Out+h.N), a.XB.Slice(h.Row, h.Row+h.N), w.Out); err != nil {
			return err
		}
	}
	return nil
}
