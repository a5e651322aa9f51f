package devicetest

import (
	"bytes"
	"fmt"

	"offload/device"
)

// call runs fn, turning a panic into a reported failure so that a backend
// that panics on bad input fails the test instead of crashing the run.
func call(fn func() error) (err error, panicked any) {
	defer func() {
		if r := recover(); r != nil {
			panicked = r
		}
	}()
	return fn(), nil
}

// testShapeErrors: every malformed call returns an error at enqueue time,
// never panics, and enqueues nothing (the output stays untouched and the
// stream reports no error afterwards).
func testShapeErrors(f *fixture) {
	d, s := f.dev, f.s
	F32, F16, I32 := device.F32, device.F16, device.I32
	x := f.tensor(F32, 4, 8)  // [n, in]
	w := f.tensor(F32, 6, 8)  // [out, in]
	wt := f.tensor(F32, 8, 6) // [in, out]
	y := f.tensor(F32, 4, 6)  // [n, out]
	t := func(dt device.DType, r, c int) device.Tensor { return f.tensor(dt, r, c) }
	nilBuf := device.Tensor{DType: F32, Rows: 4, Cols: 8}
	past := x
	past.Off += 64 // runs off the end of its buffer
	misaligned := x
	misaligned.Off++
	negative := x
	negative.Rows = -1
	freedBuf := f.alloc(4*32, "freed")
	freed, _ := device.View(freedBuf, 0, F32, 4, 8)
	d.Free(freedBuf)

	nw := f.tensor(F32, 1, 8)
	q := f.tensor(F32, 2, 4*8) // 4 heads x 8
	kc := f.tensor(F32, 16, 2*8)
	vc := f.tensor(F32, 16, 2*8)
	att := f.tensor(F32, 2, 4*8)
	src := f.tensor(F32, 10, 8)
	idx := f.index([]int32{1, 2, 3})
	g3 := f.tensor(F32, 3, 8)
	ct := f.tensor(F32, 3, 10) // [k, src.Rows]
	buf := f.alloc(100, "copy target")
	host := make([]byte, 64)

	cases := []struct {
		name string
		fn   func() error
	}{
		{"MatMul/in", func() error { return d.MatMul(s, y, t(F32, 4, 7), w) }},
		{"MatMul/out", func() error { return d.MatMul(s, t(F32, 4, 5), x, w) }},
		{"MatMul/n", func() error { return d.MatMul(s, t(F32, 3, 6), x, w) }},
		{"MatMul/xDType", func() error { return d.MatMul(s, y, t(F16, 4, 8), w) }},
		{"MatMul/yDType", func() error { return d.MatMul(s, t(F16, 4, 6), x, w) }},
		{"MatMul/wI32", func() error { return d.MatMul(s, y, x, t(I32, 6, 8)) }},
		{"MatMul/nilBuffer", func() error { return d.MatMul(s, y, nilBuf, w) }},
		{"MatMul/pastEnd", func() error { return d.MatMul(s, y, past, w) }},
		{"MatMul/misaligned", func() error { return d.MatMul(s, y, misaligned, w) }},
		{"MatMul/negativeRows", func() error { return d.MatMul(s, y, negative, w) }},
		{"MatMul/freed", func() error { return d.MatMul(s, y, freed, w) }},
		{"MatMulT/in", func() error { return d.MatMulT(s, y, t(F32, 4, 7), wt) }},
		{"MatMulT/out", func() error { return d.MatMulT(s, t(F32, 4, 5), x, wt) }},
		{"MatMulT/untransposed", func() error { return d.MatMulT(s, y, x, w) }},
		{"MatMulT/wI32", func() error { return d.MatMulT(s, y, x, t(I32, 8, 6)) }},
		{"RMSNorm/wCols", func() error { return d.RMSNorm(s, x, x, t(F32, 1, 7), 1e-5) }},
		{"RMSNorm/wRows", func() error { return d.RMSNorm(s, x, x, t(F32, 2, 8), 1e-5) }},
		{"RMSNorm/yShape", func() error { return d.RMSNorm(s, t(F32, 3, 8), x, nw, 1e-5) }},
		{"RMSNorm/xDType", func() error { return d.RMSNorm(s, x, t(F16, 4, 8), nw, 1e-5) }},
		{"RoPE/oddHeadDim", func() error { return d.RoPE(s, t(F32, 2, 9), 0, 3, 10000, device.RopeInterleaved) }},
		{"RoPE/colsNotHeads", func() error { return d.RoPE(s, x, 0, 6, 10000, device.RopeHalf) }},
		{"RoPE/zeroHeadDim", func() error { return d.RoPE(s, x, 0, 0, 10000, device.RopeHalf) }},
		{"RoPE/negativePos", func() error { return d.RoPE(s, x, -1, 8, 10000, device.RopeHalf) }},
		{"RoPE/dtype", func() error { return d.RoPE(s, t(F16, 4, 8), 0, 8, 10000, device.RopeHalf) }},
		{"RoPE/style", func() error { return d.RoPE(s, x, 0, 8, 10000, device.RopeStyle(9)) }},
		{"RoPEFreqs/freqsShape", func() error { return d.RoPEFreqs(s, x, 0, 8, t(F32, 1, 3), device.RopeHalf) }},
		{"RoPEFreqs/freqsDType", func() error { return d.RoPEFreqs(s, x, 0, 8, t(F16, 1, 4), device.RopeHalf) }},
		{"Attention/groups", func() error { return d.Attention(s, att, q, t(F32, 16, 3*8), t(F32, 16, 3*8), 0, 4, 3, 8) }},
		{"Attention/qCols", func() error { return d.Attention(s, att, q, kc, vc, 0, 4, 2, 4) }},
		{"Attention/kvCols", func() error { return d.Attention(s, att, q, t(F32, 16, 8), t(F32, 16, 8), 0, 4, 2, 8) }},
		{"Attention/pastCache", func() error { return d.Attention(s, att, q, kc, vc, 15, 4, 2, 8) }},
		{"Attention/negativePos", func() error { return d.Attention(s, att, q, kc, vc, -1, 4, 2, 8) }},
		{"Attention/outShape", func() error { return d.Attention(s, t(F32, 1, 32), q, kc, vc, 0, 4, 2, 8) }},
		{"Attention/vShape", func() error { return d.Attention(s, att, q, kc, t(F32, 8, 16), 0, 4, 2, 8) }},
		{"Attention/zeroKV", func() error { return d.Attention(s, att, q, kc, vc, 0, 4, 0, 8) }},
		{"Attention/cacheDType", func() error { return d.Attention(s, att, q, t(F16, 16, 16), vc, 0, 4, 2, 8) }},
		{"SiLUMul/shape", func() error { return d.SiLUMul(s, x, x, t(F32, 4, 7)) }},
		{"SiLUMul/outShape", func() error { return d.SiLUMul(s, t(F32, 8, 4), x, x) }},
		{"Add/shape", func() error { return d.Add(s, x, t(F32, 8, 4)) }},
		{"Add/dtype", func() error { return d.Add(s, x, t(F16, 4, 8)) }},
		{"Add/freed", func() error { return d.Add(s, x, freed) }},
		{"GatherRows/idxDType", func() error { return d.GatherRows(s, g3, src, t(F32, 1, 3)) }},
		{"GatherRows/idxRows", func() error { return d.GatherRows(s, g3, src, t(I32, 3, 1)) }},
		{"GatherRows/dstDType", func() error { return d.GatherRows(s, t(F16, 3, 8), src, idx) }},
		{"GatherRows/dstCols", func() error { return d.GatherRows(s, t(F32, 3, 7), src, idx) }},
		{"GatherRows/dstRows", func() error { return d.GatherRows(s, t(F32, 2, 8), src, idx) }},
		{"GatherColsT/dstCols", func() error { return d.GatherColsT(s, t(F32, 3, 9), src, idx) }},
		{"GatherColsT/dstRows", func() error { return d.GatherColsT(s, t(F32, 4, 10), src, idx) }},
		{"GatherColsT/dstDType", func() error { return d.GatherColsT(s, t(F16, 3, 10), src, idx) }},
		{"CopyToDevice/pastEnd", func() error { return d.CopyToDevice(s, buf, 90, host[:11]) }},
		{"CopyToDevice/negativeOff", func() error { return d.CopyToDevice(s, buf, -1, host[:4]) }},
		{"CopyToDevice/nil", func() error { return d.CopyToDevice(s, nil, 0, host[:4]) }},
		{"CopyToDevice/freed", func() error { return d.CopyToDevice(s, freedBuf, 0, host[:4]) }},
		{"CopyToHost/pastEnd", func() error { return d.CopyToHost(s, host, buf, 40) }},
		{"CopyToHost/negativeOff", func() error { return d.CopyToHost(s, host[:4], buf, -4) }},
		{"CopyDevice/srcPastEnd", func() error { return d.CopyDevice(s, buf, 0, buf, 60, 50) }},
		{"CopyDevice/dstPastEnd", func() error { return d.CopyDevice(s, buf, 60, buf, 0, 50) }},
		{"CopyDevice/negativeN", func() error { return d.CopyDevice(s, buf, 0, buf, 50, -1) }},
		{"CopyDevice/freed", func() error { return d.CopyDevice(s, buf, 0, freedBuf, 0, 4) }},
	}
	f.sync(s)
	before := f.download(y.Buf, 0, y.Buf.Size())
	for _, c := range cases {
		err, p := call(c.fn)
		switch {
		case p != nil:
			f.t.Errorf("%s: panicked: %v", c.name, p)
		case err == nil:
			f.t.Errorf("%s: no error", c.name)
		}
	}
	// Nothing was enqueued: no error surfaces, outputs are untouched.
	if err := d.Synchronize(s); err != nil {
		f.t.Errorf("Synchronize after rejected calls: %v", err)
	}
	for _, out := range []device.Tensor{y, att, g3, ct, x} {
		all := f.download(out.Buf, 0, out.Buf.Size())
		if out.Buf == y.Buf {
			if !bytes.Equal(all, before) {
				f.t.Errorf("y changed after rejected calls")
			}
			continue
		}
		if bytes.Count(all, []byte{sentinel}) != len(all) {
			f.t.Errorf("%s: a rejected call wrote to it", fmt.Sprintf("%d x %d output", out.Rows, out.Cols))
		}
	}
}
