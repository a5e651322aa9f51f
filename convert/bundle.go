package convert

import (
	"fmt"
	"io"

	"offload/pager"
	"offload/quant"
)

// bundleChunk is how many neurons are assembled at a time: a multiple of
// every block size (32, 256), so a chunk of down columns covers whole blocks
// of each down row and no block is decoded twice.
const bundleChunk = 256

// BundleDownType is the type a layer's down columns get in a bundle: a plain
// float down matrix keeps its type; a quantized one gets the policy's type
// (policy is a ParseBundleDown result),
// falling back (as llama.cpp's quantizer does) where its blocks do not
// divide dim.
func BundleDownType(policy string, down pager.DType, dim int) (pager.DType, error) {
	if !quant.Type(down).Quantized() {
		return down, nil
	}
	t := quant.Type(down)
	if policy != BundleDownSame {
		var err error
		if t, err = parseType(policy); err != nil {
			return 0, err
		}
	}
	t, err := fallback(t, dim)
	if err != nil {
		return 0, fmt.Errorf("down columns of %d elements: %w", dim, err)
	}
	return pager.DType(t), nil
}

// bundleOut builds layer l's bundle tensor: row j is gate row j and up row j
// in their output types, then down column j converted to the bundle's down
// type. A layer whose three parts share one plain float type is written as
// BundleFFN writes it (a [hidden, 3*dim] tensor of that type); any other is
// raw bytes (I8 [hidden, rowBytes]) described by MetaFFNBundleTypes.
func bundleOut(l int, p pager.LlamaParams, byName map[string]*pager.LlamaTensor, types map[string]pager.DType, policy string, threads int) (out, pager.BundleParts, error) {
	get := func(part string) *pager.LlamaTensor { return byName[fmt.Sprintf("blk.%d.%s.weight", l, part)] }
	gate, up, down := get("ffn_gate"), get("ffn_up"), get("ffn_down") // LlamaLayout checked them
	d, h := p.Dim, p.Hidden
	dt, err := BundleDownType(policy, types[down.Name], d)
	if err != nil {
		return out{}, pager.BundleParts{}, fmt.Errorf("layer %d: %w", l, err)
	}
	parts, err := pager.NewBundleParts([3]pager.DType{types[gate.Name], types[up.Name], dt}, d)
	if err != nil {
		return out{}, pager.BundleParts{}, fmt.Errorf("layer %d: %w", l, err)
	}
	o := out{Tensor: Tensor{Name: pager.BundleName(l), From: down.DType, Parts: &parts}}
	rb := parts.RowBytes()
	if uniformFloat(parts.Types) {
		o.DType, o.Shape = parts.Types[0], []int{h, 3 * d}
	} else {
		o.DType, o.Shape = pager.I8, []int{h, rb}
	}
	o.Bytes = int64(h) * int64(rb)
	o.fill = func(w io.Writer) error {
		return writeBundle(w, gate, up, down, parts, d, h, threads)
	}
	return o, parts, nil
}

// writeBundle writes the bundle rows bundleChunk neurons at a time. The
// chunk's down columns are read row by row from the down matrix (each row's
// run of the chunk's columns is whole blocks): copied element by element
// into the bundle rows when the type is unchanged, else decoded exactly to
// float32, transposed, and encoded per neuron.
func writeBundle(w io.Writer, gate, up, down *pager.LlamaTensor, parts pager.BundleParts, d, h, threads int) error {
	rb := parts.RowBytes()
	offUp, offDown := parts.Offset(pager.PartUp), parts.Offset(pager.PartDown)
	rows := make([]byte, bundleChunk*rb)
	src := quant.Type(down.DType)
	// A plain-float column is copied element by element; a quantized one
	// (which cuts across the down matrix's blocks) is always requantized.
	copyDown := down.DType == parts.Types[pager.PartDown] && !src.Quantized()
	var cols []float32
	if !copyDown {
		cols = make([]float32, bundleChunk*d)
	}
	es := src.BlockBytes() // element bytes when copying (a plain type)
	bs, bb := src.BlockElems(), src.BlockBytes()
	for j0 := 0; j0 < h; j0 += bundleChunk {
		nb := min(bundleChunk, h-j0)
		// Down columns j0..j0+nb, one down row (one element of each) at a time.
		err := parallel(d, threads, func(a, b int) error {
			f := make([]float32, nb)
			for i := a; i < b; i++ {
				run := down.Row(i)[j0/bs*bb : (j0+nb)/bs*bb]
				if copyDown {
					for jj := 0; jj < nb; jj++ {
						copy(rows[jj*rb+offDown+i*es:jj*rb+offDown+(i+1)*es], run[jj*es:(jj+1)*es])
					}
					continue
				}
				if err := quant.DequantizeRow(src, f, run); err != nil {
					return fmt.Errorf("tensor %s row %d: %w", down.Name, i, err)
				}
				for jj, v := range f {
					cols[jj*d+i] = v
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = parallel(nb, threads, func(a, b int) error {
			f := make([]float32, d)
			for jj := a; jj < b; jj++ {
				row := rows[jj*rb : (jj+1)*rb]
				j := j0 + jj
				if err := recode(row[:offUp], parts.Types[pager.PartGate], gate.Row(j), gate.DType, f); err != nil {
					return fmt.Errorf("tensor %s row %d: %w", gate.Name, j, err)
				}
				if err := recode(row[offUp:offDown], parts.Types[pager.PartUp], up.Row(j), up.DType, f); err != nil {
					return fmt.Errorf("tensor %s row %d: %w", up.Name, j, err)
				}
				if !copyDown {
					if err := quant.QuantizeRow(quant.Type(parts.Types[pager.PartDown]), row[offDown:], cols[jj*d:(jj+1)*d]); err != nil {
						return fmt.Errorf("tensor %s column %d: %w", down.Name, j, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if _, err := w.Write(rows[:nb*rb]); err != nil {
			return err
		}
	}
	return nil
}
