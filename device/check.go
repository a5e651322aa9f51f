package device

import (
	"fmt"
	"math"
	"slices"
)

// The argument checks every backend runs before it enqueues a kernel, so that
// the contract in the Kernels docs is written (and enforced) once: operand
// dtypes, shapes, offsets and bounds within the buffer. A backend adds only
// what is its own to know (the buffer is one of its, and still live) and runs
// the kernel. Each check returns an error naming the operation and the
// operand, never panics, and is cheap enough to run on every call.

// CheckTensor checks that t is a well-formed view of its buffer: a buffer is
// set, the shape is not negative, a quantized row is a whole number of blocks,
// the offset is aligned to the element (2 bytes for block types, whose
// scales are halves) and the view ends inside the buffer.
func CheckTensor(op, name string, t Tensor) error {
	switch {
	case t.Buf == nil:
		return fmt.Errorf("%s: %s has no buffer", op, name)
	case !t.DType.Valid():
		return fmt.Errorf("%s: %s has an unknown dtype %d", op, name, uint8(t.DType))
	case t.Rows < 0 || t.Cols < 0:
		return fmt.Errorf("%s: %s has negative shape %d x %d", op, name, t.Rows, t.Cols)
	case !t.DType.WholeBlocks(t.Cols):
		return fmt.Errorf("%s: %s has %d columns, not a whole number of %d-element %s blocks", op, name, t.Cols, t.DType.BlockElems(), t.DType)
	}
	al := int64(t.DType.BlockBytes())
	if t.DType.Quantized() {
		al = 2
	}
	size := t.Buf.Size()
	switch {
	case t.Off < 0 || t.Off%al != 0:
		return fmt.Errorf("%s: %s offset %d is not a multiple of %d (%s)", op, name, t.Off, al, t.DType)
	case t.Cols > 0 && t.RowBytes() > 0 && int64(t.Rows) > size/t.RowBytes():
		return fmt.Errorf("%s: %s of %d x %d %s does not fit a buffer of %d bytes", op, name, t.Rows, t.Cols, t.DType, size)
	case t.Off > size-t.Bytes():
		return fmt.Errorf("%s: %s of %d x %d %s at offset %d does not fit a buffer of %d bytes", op, name, t.Rows, t.Cols, t.DType, t.Off, size)
	}
	return nil
}

// Operand is one tensor argument of a kernel call and the dtypes it may have.
type Operand struct {
	Name  string
	T     Tensor
	Types []DType
}

// F32Op is an operand that must be F32 (activations).
func F32Op(name string, t Tensor) Operand { return Operand{name, t, []DType{F32}} }

// CheckOperands runs CheckTensor and the dtype check on every operand.
func CheckOperands(op string, ops ...Operand) error {
	for _, o := range ops {
		if err := CheckTensor(op, o.Name, o.T); err != nil {
			return err
		}
		if !slices.Contains(o.Types, o.T.DType) {
			return fmt.Errorf("%s: %s is %s, want one of %v", op, o.Name, o.T.DType, o.Types)
		}
	}
	return nil
}

// Overlaps reports whether two tensors share bytes of one buffer.
func Overlaps(a, b Tensor) bool {
	return a.Buf == b.Buf && a.Buf != nil && a.Off < b.Off+b.Bytes() && b.Off < a.Off+a.Bytes() && a.Bytes() > 0 && b.Bytes() > 0
}

func noAlias(op string, out Tensor, ins ...Tensor) error {
	for _, in := range ins {
		if Overlaps(out, in) {
			return fmt.Errorf("%s: the output overlaps an input", op)
		}
	}
	return nil
}

func sameShape(op string, names []string, ts ...Tensor) error {
	for i := 1; i < len(ts); i++ {
		if ts[i].Rows != ts[0].Rows || ts[i].Cols != ts[0].Cols {
			return fmt.Errorf("%s: %s is %dx%d but %s is %dx%d", op, names[i], ts[i].Rows, ts[i].Cols, names[0], ts[0].Rows, ts[0].Cols)
		}
	}
	return nil
}

// CheckMatMul checks MatMul (w [out, in]) or, transposed, MatMulT (w [in, out])
// against weight dtypes wtypes (the backend's Capabilities.WeightTypes).
func CheckMatMul(y, x, w Tensor, transposed bool, wtypes []DType) error {
	op := "MatMul"
	in, out := w.Cols, w.Rows
	if transposed {
		op, in, out = "MatMulT", w.Rows, w.Cols
	}
	if err := CheckOperands(op, F32Op("y", y), F32Op("x", x), Operand{"w", w, wtypes}); err != nil {
		return err
	}
	if x.Cols != in || y.Cols != out || y.Rows != x.Rows {
		return fmt.Errorf("%s: y %dx%d = x %dx%d times w %dx%d: want x cols %d, y %dx%d", op, y.Rows, y.Cols, x.Rows, x.Cols, w.Rows, w.Cols, in, x.Rows, out)
	}
	return noAlias(op, y, x, w)
}

// CheckRMSNorm checks RMSNorm: y shaped like x, w a [1, cols] weight, eps
// finite and not negative. y may be x.
func CheckRMSNorm(y, x, w Tensor, eps float32, wtypes []DType) error {
	const op = "RMSNorm"
	if err := CheckOperands(op, F32Op("y", y), F32Op("x", x), Operand{"w", w, wtypes}); err != nil {
		return err
	}
	if w.DType.Quantized() {
		return fmt.Errorf("%s: w is %s; a norm weight must be a plain float type", op, w.DType)
	}
	if y.Rows != x.Rows || y.Cols != x.Cols || w.Rows != 1 || w.Cols != x.Cols {
		return fmt.Errorf("%s: y %dx%d, x %dx%d, w %dx%d: want y shaped like x and w 1x%d", op, y.Rows, y.Cols, x.Rows, x.Cols, w.Rows, w.Cols, x.Cols)
	}
	if !(eps >= 0) || math.IsInf(float64(eps), 0) {
		return fmt.Errorf("%s: eps %g must be finite and not negative", op, eps)
	}
	return nil
}

func checkRoPEShape(op string, x Tensor, pos0, headDim int, style RopeStyle) error {
	switch {
	case headDim <= 0 || headDim%2 != 0:
		return fmt.Errorf("%s: head dim %d must be positive and even", op, headDim)
	case x.Cols%headDim != 0:
		return fmt.Errorf("%s: x has %d columns, not a multiple of head dim %d", op, x.Cols, headDim)
	case pos0 < 0 || pos0 > math.MaxInt32-x.Rows:
		return fmt.Errorf("%s: positions %d..%d out of range", op, pos0, pos0+x.Rows-1)
	case style != RopeInterleaved && style != RopeHalf:
		return fmt.Errorf("%s: unknown style %d", op, style)
	}
	return nil
}

// CheckRoPE checks RoPE: an even head dim dividing x's columns, positions in
// range, a known style and a positive finite theta.
func CheckRoPE(x Tensor, pos0, headDim int, theta float32, style RopeStyle) error {
	const op = "RoPE"
	if err := CheckOperands(op, F32Op("x", x)); err != nil {
		return err
	}
	if err := checkRoPEShape(op, x, pos0, headDim, style); err != nil {
		return err
	}
	if !(theta > 0) || math.IsInf(float64(theta), 0) {
		return fmt.Errorf("%s: theta %g must be positive and finite", op, theta)
	}
	return nil
}

// CheckRoPEFreqs checks RoPEFreqs: as RoPE, with freqs a [1, headDim/2] F32
// tensor instead of theta.
func CheckRoPEFreqs(x Tensor, pos0, headDim int, freqs Tensor, style RopeStyle) error {
	const op = "RoPEFreqs"
	if err := CheckOperands(op, F32Op("x", x), F32Op("freqs", freqs)); err != nil {
		return err
	}
	if err := checkRoPEShape(op, x, pos0, headDim, style); err != nil {
		return err
	}
	if freqs.Rows != 1 || freqs.Cols != headDim/2 {
		return fmt.Errorf("%s: freqs is %d x %d, want 1 x %d", op, freqs.Rows, freqs.Cols, headDim/2)
	}
	return nil
}

// CheckAttention checks Attention: head counts that divide, q and out
// [n, heads*headDim], k and v caches [maxSeq, kvHeads*headDim] holding every
// position the rows attend to, and an output that aliases no input.
func CheckAttention(out, q, k, v Tensor, pos0, nHeads, nKVHeads, headDim int) error {
	const op = "Attention"
	if err := CheckOperands(op, F32Op("out", out), F32Op("q", q), F32Op("k", k), F32Op("v", v)); err != nil {
		return err
	}
	switch {
	case nHeads <= 0 || nKVHeads <= 0 || headDim <= 0:
		return fmt.Errorf("%s: heads %d, kv heads %d, head dim %d must be positive", op, nHeads, nKVHeads, headDim)
	case nHeads%nKVHeads != 0:
		return fmt.Errorf("%s: %d heads is not a multiple of %d kv heads", op, nHeads, nKVHeads)
	case q.Cols != nHeads*headDim:
		return fmt.Errorf("%s: q has %d columns, want %d heads x %d", op, q.Cols, nHeads, headDim)
	case out.Rows != q.Rows || out.Cols != q.Cols:
		return fmt.Errorf("%s: out %dx%d is not shaped like q %dx%d", op, out.Rows, out.Cols, q.Rows, q.Cols)
	case k.Cols != nKVHeads*headDim || v.Rows != k.Rows || v.Cols != k.Cols:
		return fmt.Errorf("%s: k %dx%d, v %dx%d: want both [maxSeq, %d kv heads x %d]", op, k.Rows, k.Cols, v.Rows, v.Cols, nKVHeads, headDim)
	case pos0 < 0 || pos0 > k.Rows-q.Rows:
		return fmt.Errorf("%s: positions %d..%d do not fit a %d-position cache", op, pos0, pos0+q.Rows-1, k.Rows)
	}
	return noAlias(op, out, q, k, v)
}

// CheckSiLUMul checks SiLUMul: three F32 tensors of one shape (out may be
// gate or up).
func CheckSiLUMul(out, gate, up Tensor) error {
	const op = "SiLUMul"
	if err := CheckOperands(op, F32Op("out", out), F32Op("gate", gate), F32Op("up", up)); err != nil {
		return err
	}
	return sameShape(op, []string{"out", "gate", "up"}, out, gate, up)
}

// CheckAdd checks Add: two F32 tensors of one shape.
func CheckAdd(y, x Tensor) error {
	const op = "Add"
	if err := CheckOperands(op, F32Op("y", y), F32Op("x", x)); err != nil {
		return err
	}
	return sameShape(op, []string{"y", "x"}, y, x)
}

// GatherTypes are the dtypes the gathers move (rows of any plain type, and
// whole rows of a quantized one for GatherRows).
var GatherTypes = append([]DType{I32}, WeightTypes...)

func checkGather(op string, dst, src, idx Tensor) error {
	if err := CheckOperands(op, Operand{"dst", dst, GatherTypes}, Operand{"src", src, GatherTypes}, Operand{"idx", idx, []DType{I32}}); err != nil {
		return err
	}
	switch {
	case idx.Rows != 1:
		return fmt.Errorf("%s: idx is %dx%d, want 1 x k", op, idx.Rows, idx.Cols)
	case dst.DType != src.DType:
		return fmt.Errorf("%s: dst is %s but src is %s", op, dst.DType, src.DType)
	}
	return nil
}

// CheckGatherRows checks GatherRows: dst [k, src cols] of src's dtype, idx
// [1, k] I32, no aliasing. Index values are checked when the kernel runs.
func CheckGatherRows(dst, src, idx Tensor) error {
	const op = "GatherRows"
	if err := checkGather(op, dst, src, idx); err != nil {
		return err
	}
	if dst.Rows != idx.Cols || dst.Cols != src.Cols {
		return fmt.Errorf("%s: dst is %dx%d, want %d indices x %d src columns", op, dst.Rows, dst.Cols, idx.Cols, src.Cols)
	}
	return noAlias(op, dst, src, idx)
}

// CheckGatherColsT checks GatherColsT: dst [k, src rows] of src's plain
// dtype (a quantized column cuts across blocks), idx [1, k] I32.
func CheckGatherColsT(dst, src, idx Tensor) error {
	const op = "GatherColsT"
	if err := checkGather(op, dst, src, idx); err != nil {
		return err
	}
	if src.DType.Quantized() {
		return fmt.Errorf("%s: src is %s; columns of a quantized matrix cut across blocks", op, src.DType)
	}
	if dst.Rows != idx.Cols || dst.Cols != src.Rows {
		return fmt.Errorf("%s: dst is %dx%d, want %d indices x %d src rows", op, dst.Rows, dst.Cols, idx.Cols, src.Rows)
	}
	return noAlias(op, dst, src, idx)
}
