package devicetest

import (
	"fmt"
	"testing"

	"offload/device"
)

// tol is the relative tolerance of the float kernels, taken against the
// per-element scale the references return (Σ|terms| for sums).
const tol = 1e-5

var weightTypes = []device.DType{device.F32, device.F16, device.BF16}

func (f *fixture) sub(name string, fn func(*fixture)) {
	f.t.Run(name, func(t *testing.T) {
		g := *f
		g.t = t
		fn(&g)
	})
}

func testMatMul(f *fixture, transposed bool) {
	shapes := []struct{ in, out int }{{16, 8}, {67, 37}, {256, 96}, {1, 5}}
	for _, dt := range weightTypes {
		for _, sh := range shapes {
			for _, n := range []int{1, 2, 5, 8, 9} {
				f.sub(fmt.Sprintf("%s/n=%d/in=%d/out=%d", dt, n, sh.in, sh.out), func(f *fixture) {
					x, xv := f.input(device.F32, n, sh.in)
					y := f.tensor(device.F32, n, sh.out)
					var (
						w          device.Tensor
						wv         []float64
						want, scal []float64
						err        error
					)
					if transposed {
						w, wv = f.input(dt, sh.in, sh.out)
						want, scal = refMatMulT(xv, wv, n, sh.in, sh.out)
						err = f.dev.MatMulT(f.s, y, x, w)
					} else {
						w, wv = f.input(dt, sh.out, sh.in)
						want, scal = refMatMul(xv, wv, n, sh.in, sh.out)
						err = f.dev.MatMul(f.s, y, x, w)
					}
					if err != nil {
						f.t.Fatal(err)
					}
					f.sync(f.s)
					f.near("y", f.get(y), want, scal, tol)
					f.checkPad(y, "y")
				})
			}
		}
	}
}

func testRMSNorm(f *fixture) {
	for _, dt := range weightTypes {
		for _, cols := range []int{8, 67, 1024} {
			for _, n := range []int{1, 3} {
				for _, eps := range []float32{1e-5, 1e-6} {
					for _, inPlace := range []bool{false, true} {
						f.sub(fmt.Sprintf("%s/n=%d/cols=%d/eps=%g/inplace=%v", dt, n, cols, eps, inPlace), func(f *fixture) {
							x, xv := f.input(device.F32, n, cols)
							w := f.tensor(dt, 1, cols)
							wv := f.set(w, f.randVals(cols, 0.5, 1.5))
							y := x
							if !inPlace {
								y = f.tensor(device.F32, n, cols)
							}
							if err := f.dev.RMSNorm(f.s, y, x, w, eps); err != nil {
								f.t.Fatal(err)
							}
							f.sync(f.s)
							want, scale := refRMSNorm(xv, wv, n, cols, float64(eps))
							f.near("y", f.get(y), want, scale, tol)
							f.checkPad(y, "y")
						})
					}
				}
			}
		}
	}
}

func testRoPE(f *fixture) {
	type tc struct {
		heads, headDim, n, pos0 int
		theta                   float32
		tol                     float64
	}
	var cases []tc
	for _, hd := range []int{8, 16, 64} {
		for _, heads := range []int{1, 3} {
			for _, pos0 := range []int{0, 13} {
				for _, n := range []int{1, 4} {
					cases = append(cases, tc{heads, hd, n, pos0, 10000, tol})
				}
			}
		}
	}
	cases = append(cases, tc{2, 128, 3, 40, 500000, tol})
	// Far positions: a float32 angle pos*freq is only good to about
	// pos * 2^-24 radians, so the tolerance widens with the position.
	cases = append(cases, tc{2, 64, 2, 4000, 10000, 1e-3}, tc{1, 128, 1, 8000, 500000, 2e-3})
	for _, style := range []device.RopeStyle{device.RopeInterleaved, device.RopeHalf} {
		name := map[device.RopeStyle]string{device.RopeInterleaved: "interleaved", device.RopeHalf: "half"}[style]
		for _, c := range cases {
			f.sub(fmt.Sprintf("%s/heads=%d/hd=%d/n=%d/pos0=%d/theta=%g", name, c.heads, c.headDim, c.n, c.pos0, c.theta), func(f *fixture) {
				cols := c.heads * c.headDim
				x, xv := f.input(device.F32, c.n, cols)
				if err := f.dev.RoPE(f.s, x, c.pos0, c.headDim, c.theta, style); err != nil {
					f.t.Fatal(err)
				}
				f.sync(f.s)
				want, scale := refRoPE(xv, c.n, cols, c.pos0, c.headDim, float64(c.theta), style == device.RopeHalf)
				f.near("x", f.get(x), want, scale, c.tol)
				f.checkPad(x, "x")
			})
		}
	}
}

// testRoPEFreqs checks RoPE with explicit inverse frequencies: plain theta
// frequencies, and Llama 3.1-style scaled ones (low frequencies divided by 8).
func testRoPEFreqs(f *fixture) {
	for _, style := range []device.RopeStyle{device.RopeInterleaved, device.RopeHalf} {
		for _, scaled := range []bool{false, true} {
			for _, c := range []struct{ heads, headDim, n, pos0 int }{{1, 8, 1, 0}, {3, 16, 4, 13}, {2, 128, 3, 40}} {
				name := fmt.Sprintf("style=%d/scaled=%v/heads=%d/hd=%d/n=%d/pos0=%d", style, scaled, c.heads, c.headDim, c.n, c.pos0)
				f.sub(name, func(f *fixture) {
					half := c.headDim / 2
					fr := make([]float64, half)
					for i := range fr {
						fr[i] = float64(float32(ropeFreq(i, c.headDim, 500000)))
						if scaled && i >= half/2 {
							fr[i] = float64(float32(fr[i] / 8))
						}
					}
					freqs := f.tensor(device.F32, 1, half)
					f.set(freqs, fr)
					cols := c.heads * c.headDim
					x, xv := f.input(device.F32, c.n, cols)
					if err := f.dev.RoPEFreqs(f.s, x, c.pos0, c.headDim, freqs, style); err != nil {
						f.t.Fatal(err)
					}
					f.sync(f.s)
					want, scale := refRoPEFreqs(xv, c.n, cols, c.pos0, c.headDim, fr, style == device.RopeHalf)
					f.near("x", f.get(x), want, scale, tol)
					f.checkPad(x, "x")
				})
			}
		}
	}
}

type attnCase struct{ nHeads, nKV, headDim, maxSeq, pos0, n int }

func (c attnCase) String() string {
	return fmt.Sprintf("heads=%d/kv=%d/hd=%d/seq=%d/pos0=%d/n=%d", c.nHeads, c.nKV, c.headDim, c.maxSeq, c.pos0, c.n)
}

func testAttention(f *fixture) {
	cases := []attnCase{
		{4, 4, 8, 16, 0, 1},
		{4, 2, 16, 32, 5, 1},
		{4, 2, 16, 32, 0, 6},
		{8, 2, 16, 40, 7, 5},
		{6, 1, 32, 24, 3, 4},
		{2, 1, 64, 24, 0, 24},
		{8, 4, 64, 600, 520, 3},
		{16, 2, 128, 300, 0, 17},
	}
	for _, c := range cases {
		f.sub(c.String(), func(f *fixture) { runAttention(f, c, false) })
	}
}

// testAttentionLong attends over contexts on both sides of the boundaries
// where a backend may split the positions into tiles (a power of two up to
// 4096, such as the CUDA kernel's 1024): 1023, 1024 and 1025 positions in
// one call of three rows, 2047, 2048 and a Sirius-sized window of 16 rows
// across 2048, and 4096, for head sizes 64 and 128. Keys grow with the
// position, so that the running maximum of the scores rises from tile to
// tile and the rescaling of earlier tiles' sums matters.
func testAttentionLong(f *fixture) {
	for _, hd := range []int{64, 128} {
		for _, p := range []struct{ pos0, n int }{{1022, 3}, {2046, 2}, {2040, 16}, {4095, 1}} {
			c := attnCase{4, 2, hd, p.pos0 + p.n + 5, p.pos0, p.n}
			f.sub(c.String(), func(f *fixture) { runAttention(f, c, true) })
		}
	}
}

// runAttention checks one attention call against refAttention; with rising,
// key t is scaled by 1 + 1.5 t/maxSeq.
func runAttention(f *fixture, c attnCase, rising bool) {
	qCols, kvCols := c.nHeads*c.headDim, c.nKV*c.headDim
	q, qv := f.input(device.F32, c.n, qCols)
	k, v := f.tensor(device.F32, c.maxSeq, kvCols), f.tensor(device.F32, c.maxSeq, kvCols)
	// Positions past pos0+n-1 hold large values: attending to them
	// would swamp the result.
	filled := (c.pos0 + c.n) * kvCols
	kvals, vvals := f.randVals(c.maxSeq*kvCols, -1, 1), f.randVals(c.maxSeq*kvCols, -1, 1)
	if rising {
		for i := range filled {
			kvals[i] *= 1 + 1.5*float64(i/kvCols)/float64(c.maxSeq)
		}
	}
	for i := filled; i < len(kvals); i++ {
		kvals[i], vvals[i] = 30, 1000
	}
	kv, vv := f.set(k, kvals), f.set(v, vvals)
	out := f.tensor(device.F32, c.n, qCols)
	if err := f.dev.Attention(f.s, out, q, k, v, c.pos0, c.nHeads, c.nKV, c.headDim); err != nil {
		f.t.Fatal(err)
	}
	f.sync(f.s)
	want, scale := refAttention(qv, kv, vv, c.n, c.pos0, c.nHeads, c.nKV, c.headDim)
	f.near("out", f.get(out), want, scale, 2*tol)
	f.checkPad(out, "out")
}

func testSiLUMul(f *fixture) {
	for _, sh := range [][2]int{{1, 7}, {3, 172}, {2, 4096}} {
		for _, inPlace := range []bool{false, true} {
			f.sub(fmt.Sprintf("%dx%d/inplace=%v", sh[0], sh[1], inPlace), func(f *fixture) {
				g := f.tensor(device.F32, sh[0], sh[1])
				gv := f.set(g, f.randVals(sh[0]*sh[1], -8, 8))
				u, uv := f.input(device.F32, sh[0], sh[1])
				out := g
				if !inPlace {
					out = f.tensor(device.F32, sh[0], sh[1])
				}
				if err := f.dev.SiLUMul(f.s, out, g, u); err != nil {
					f.t.Fatal(err)
				}
				f.sync(f.s)
				want, scale := refSiLUMul(gv, uv)
				f.near("out", f.get(out), want, scale, tol)
				f.checkPad(out, "out")
			})
		}
	}
}

func testAdd(f *fixture) {
	for _, sh := range [][2]int{{1, 1}, {1, 7}, {3, 172}, {5, 40000}} {
		f.sub(fmt.Sprintf("%dx%d", sh[0], sh[1]), func(f *fixture) {
			y, yv := f.input(device.F32, sh[0], sh[1])
			x, xv := f.input(device.F32, sh[0], sh[1])
			if err := f.dev.Add(f.s, y, x); err != nil {
				f.t.Fatal(err)
			}
			f.sync(f.s)
			want := make([]float64, len(yv))
			for i := range want {
				want[i] = float64(float32(yv[i]) + float32(xv[i]))
			}
			f.near("y", f.get(y), want, nil, 0)
			f.checkPad(y, "y")
		})
	}
}

func testGatherRows(f *fixture) {
	for _, dt := range []device.DType{device.F32, device.F16, device.BF16, device.I32} {
		for _, idx := range [][]int32{{9, 0, 3, 3, 7}, {4}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}} {
			f.sub(fmt.Sprintf("%s/k=%d", dt, len(idx)), func(f *fixture) {
				const rows, cols = 10, 7
				src := f.tensor(dt, rows, cols)
				sv := f.set(src, f.randVals(rows*cols, -1000, 1000))
				dst := f.tensor(dt, len(idx), cols)
				if err := f.dev.GatherRows(f.s, dst, src, f.index(idx)); err != nil {
					f.t.Fatal(err)
				}
				f.sync(f.s)
				want := make([]float64, 0, len(idx)*cols)
				for _, r := range idx {
					want = append(want, sv[int(r)*cols:(int(r)+1)*cols]...)
				}
				f.near("dst", f.get(dst), want, nil, 0)
				f.checkPad(dst, "dst")
			})
		}
	}
}

func testGatherColsT(f *fixture) {
	for _, dt := range []device.DType{device.F32, device.F16, device.BF16} {
		for _, idx := range [][]int32{{10, 0, 5, 5}, {3}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}} {
			f.sub(fmt.Sprintf("%s/k=%d", dt, len(idx)), func(f *fixture) {
				const rows, cols = 6, 11
				src := f.tensor(dt, rows, cols)
				sv := f.set(src, f.randVals(rows*cols, -1000, 1000))
				dst := f.tensor(dt, len(idx), rows)
				if err := f.dev.GatherColsT(f.s, dst, src, f.index(idx)); err != nil {
					f.t.Fatal(err)
				}
				f.sync(f.s)
				want := make([]float64, 0, len(idx)*rows)
				for _, c := range idx {
					for r := range rows {
						want = append(want, sv[r*cols+int(c)])
					}
				}
				f.near("dst", f.get(dst), want, nil, 0)
				f.checkPad(dst, "dst")
			})
		}
	}
}
