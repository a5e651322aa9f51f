package devicetest

import (
	"bytes"
	"fmt"

	"offload/device"
	"offload/quant"
)

// quantTypes maps the device's block-quantized types to ggml's.
var quantTypes = map[device.DType]quant.Type{
	device.Q4_0: quant.Q4_0, device.Q4_1: quant.Q4_1, device.Q5_0: quant.Q5_0, device.Q5_1: quant.Q5_1,
	device.Q8_0: quant.Q8_0, device.Q2_K: quant.Q2_K, device.Q3_K: quant.Q3_K, device.Q4_K: quant.Q4_K,
	device.Q5_K: quant.Q5_K, device.Q6_K: quant.Q6_K,
}

// testMatMulQuant: MatMul with each block-quantized weight type the backend
// says it computes with (Capabilities.WeightTypes) equals the float64
// product with the exactly dequantized weights (ggml's definition, package
// quant), for a single row (decode), a check-sized batch and a prefill-sized
// one, with an output count that is not a multiple of any block or tile; the
// output's surroundings stay untouched. MatMulT with the same rows (the
// layout of quantized neuron bundles' down columns) equals its product too.
func testMatMulQuant(f *fixture) {
	for _, dt := range f.dev.Caps().WeightTypes {
		if !dt.Quantized() {
			continue
		}
		qt, ok := quantTypes[dt]
		if !ok {
			f.t.Fatalf("no reference for %s", dt)
		}
		f.sub(dt.String(), func(f *fixture) {
			in, out := 2*dt.BlockElems()*max(1, 512/dt.BlockElems()/2), 37
			wv := f.randVals(in*out, -1, 1)
			raw := make([]byte, int(dt.RowBytes(in))*out)
			held := make([]float64, in*out)
			row := make([]float32, in)
			for o := range out {
				src := make([]float32, in)
				for i := range src {
					src[i] = float32(wv[o*in+i])
				}
				rb := raw[o*int(dt.RowBytes(in)) : (o+1)*int(dt.RowBytes(in))]
				if err := quant.QuantizeRow(qt, rb, src); err != nil {
					f.t.Fatal(err)
				}
				if err := quant.DequantizeRow(qt, row, rb); err != nil {
					f.t.Fatal(err)
				}
				for i, v := range row {
					held[o*in+i] = float64(v)
				}
			}
			b := f.alloc(int64(len(raw))+2, fmt.Sprintf("%s weights", dt))
			f.upload(b, 2, raw) // an offset that is a whole number of halves, not of blocks
			w, err := device.View(b, 2, dt, out, in)
			if err != nil {
				f.t.Fatal(err)
			}
			for _, n := range []int{1, 3, 16, 67} {
				x, xv := f.input(device.F32, n, in)
				y := f.tensor(device.F32, n, out)
				if err := f.dev.MatMul(f.s, y, x, w); err != nil {
					f.t.Fatalf("MatMul %s n=%d: %v", dt, n, err)
				}
				want, scale := refMatMul(xv, held, n, in, out)
				f.near(fmt.Sprintf("MatMul %s n=%d", dt, n), f.get(y), want, scale, 1e-5)
				f.checkPad(y, fmt.Sprintf("MatMul %s n=%d", dt, n))
			}
			// The transposed product reads the same rows as a [out][in]
			// matrix (in whole blocks along in): quantized neuron bundles
			// store FFN down columns so.
			for _, n := range []int{1, 16} {
				x, xv := f.input(device.F32, n, out)
				y := f.tensor(device.F32, n, in)
				if err := f.dev.MatMulT(f.s, y, x, w); err != nil {
					f.t.Fatalf("MatMulT %s n=%d: %v", dt, n, err)
				}
				want, scale := refMatMulT(xv, held, n, out, in)
				f.near(fmt.Sprintf("MatMulT %s n=%d", dt, n), f.get(y), want, scale, 1e-5)
				f.checkPad(y, fmt.Sprintf("MatMulT %s n=%d", dt, n))
			}
		})
	}
}

// testGatherRowsQuant: GatherRows moves whole rows of blocks of every
// quantized type byte for byte (the engine packs Griffin's gate and up rows
// on the device with it), from and to offsets that are whole halves but
// not whole words, and writes nothing outside dst.
func testGatherRowsQuant(f *fixture) {
	idx := []int32{9, 0, 3, 3, 7}
	const rows = 10
	for _, dt := range device.WeightTypes {
		if !dt.Quantized() {
			continue
		}
		for _, off := range []int64{0, 2} {
			f.sub(fmt.Sprintf("%s/off=%d", dt, off), func(f *fixture) {
				cols := 3 * dt.BlockElems()
				rb := dt.RowBytes(cols)
				raw := f.randBytes(int(rb) * rows)
				sb := f.alloc(int64(len(raw))+off+2, "src")
				f.upload(sb, 0, bytes.Repeat([]byte{sentinel}, int(sb.Size())))
				f.upload(sb, off, raw)
				src, err := device.View(sb, off, dt, rows, cols)
				if err != nil {
					f.t.Fatal(err)
				}
				db := f.alloc(rb*int64(len(idx))+2*off+2, "dst")
				f.upload(db, 0, bytes.Repeat([]byte{sentinel}, int(db.Size())))
				dst, err := device.View(db, 2*off+2, dt, len(idx), cols)
				if err != nil {
					f.t.Fatal(err)
				}
				if err := f.dev.GatherRows(f.s, dst, src, f.index(idx)); err != nil {
					f.t.Fatal(err)
				}
				f.sync(f.s)
				got := f.download(db, dst.Off, dst.Bytes())
				for i, r := range idx {
					if want := raw[int64(r)*rb : int64(r+1)*rb]; !bytes.Equal(got[int64(i)*rb:int64(i+1)*rb], want) {
						f.t.Errorf("dst row %d is not src row %d", i, r)
					}
				}
				f.checkPad(dst, "dst")
			})
		}
	}
}
