// Package convert rewrites a model (GGUF, Hugging Face safetensors or
// llama2.c) as the GGUF offload runs best: quantized to one of llama.cpp's
// file types (Q8_0, Q4_K_M, ...), with the FFN stored as neuron bundles, or
// both.
//
// It exists apart from pager (which reads and writes files but knows no
// quantization) and quant (which knows one row at a time) because a
// conversion is a policy over a whole model: which type each tensor gets
// (llama.cpp's per-tensor mixes, so a Q4_K_M file from here holds the same
// types, and for the reference quantizer's types the same bytes, as
// llama-quantize's), and how a neuron's down column, which cuts across the
// blocks of a quantized down matrix, is requantized into its bundle.
//
// Every tensor is streamed: rows are read from the mapped source, converted
// in parallel a few megabytes at a time and written through pager.WriteGGUF,
// which writes atomically (a temporary file renamed over the output).
package convert

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	"offload/internal/atomicfile"
	"offload/internal/fault"
	"offload/pager"
	"offload/quant"
)

// Bundle-down policies: the type a quantized down matrix's columns are
// requantized to in a neuron bundle.
const (
	// BundleDownSame requantizes each layer's down columns to the down
	// matrix's own type (Q4_K stays Q4_K).
	BundleDownSame = "same"
	// BundleDownQ8 requantizes them to Q8_0.
	BundleDownQ8 = "q8_0"
	// DefaultBundleDown is the policy used when none is given (chosen from
	// the measurements in BENCHMARKS.md, "Quantized neuron bundles").
	DefaultBundleDown = BundleDownSame
)

// Options says what to write.
type Options struct {
	// Type is the file type to quantize to (see ParseFileType); "" keeps
	// every tensor's type.
	Type string
	// Pure gives every converted matrix the base type of Type, without
	// llama.cpp's per-tensor mix (llama-quantize --pure).
	Pure bool
	// Bundle stores each layer's FFN as neuron bundles (gate row | up row |
	// down column per neuron, see pager.BundleFFN).
	Bundle bool
	// BundleDown is the type a quantized down matrix's columns get in the
	// bundles: BundleDownSame, BundleDownQ8 or any type name ("q6_k",
	// "f32"); "" means DefaultBundleDown. Plain-float down matrices keep
	// their type.
	BundleDown string
	// Threads converts rows in parallel (0: GOMAXPROCS).
	Threads int
	// Progress, if set, is called with the bytes written so far and the
	// total, about every 4 MiB and at the end.
	Progress func(done, total int64)
}

// Tensor is one tensor of the output and where it came from.
type Tensor struct {
	Name  string
	DType pager.DType
	Shape []int
	Bytes int64
	// From is the source type (for a bundle, the down matrix's).
	From pager.DType
	// Parts, for a bundle, is its row layout.
	Parts *pager.BundleParts
}

// TypeBytes is how many bytes of the tensor are of each type (a bundle's
// parts counted by their own types).
func (t Tensor) TypeBytes() map[pager.DType]int64 {
	if t.Parts == nil {
		return map[pager.DType]int64{t.DType: t.Bytes}
	}
	rows := t.Bytes / int64(t.Parts.RowBytes())
	m := map[pager.DType]int64{}
	for i, d := range t.Parts.Types {
		m[d] += rows * int64(t.Parts.Bytes[i])
	}
	return m
}

// Result describes the written file.
type Result struct {
	FileType string // the file type written ("" when the types were kept)
	Tensors  []Tensor
	Bytes    int64 // tensor data
	// BundleTypes, for a bundled output, is each layer's part types (gate,
	// up, down).
	BundleTypes [][3]pager.DType
}

// out is one output tensor and how to write it.
type out struct {
	Tensor
	fill func(w io.Writer) error
}

// Convert writes src to dst as opt says. The output is a llama GGUF that
// model.Open reads; the write is atomic.
func Convert(src *pager.Model, dst string, opt Options) (*Result, error) {
	res, err := convert(src, dst, opt)
	if err != nil {
		return nil, fmt.Errorf("convert %s -> %s: %w", src.Path, dst, err)
	}
	return res, nil
}

func convert(src *pager.Model, dst string, opt Options) (*Result, error) {
	// Writing over an input (the same path, or a link to it) would replace
	// the model being read with the conversion of its first pages.
	if err := atomicfile.SameFile(dst, src.Files()...); err != nil {
		return nil, err
	}
	if err := src.CheckDTypes(); err != nil {
		return nil, err
	}
	tensors, meta, p, err := pager.LlamaLayout(src)
	if err != nil {
		return nil, err
	}
	policy, err := ParseBundleDown(opt.BundleDown)
	if err != nil {
		return nil, err
	}
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	res := &Result{}
	var ft *FileType
	if opt.Type != "" {
		f, err := ParseFileType(opt.Type)
		if err != nil {
			return nil, err
		}
		ft = &f
		res.FileType = f.Name
	}
	byName := map[string]*pager.LlamaTensor{}
	for i := range tensors {
		byName[tensors[i].Name] = &tensors[i]
	}
	_, hasOutput := byName["output.weight"]
	arch := Arch{Layers: p.Layers, Heads: p.Heads, KVHeads: p.KVHeads, Tied: !hasOutput}

	// The type of every output tensor.
	types := make(map[string]pager.DType, len(tensors))
	for i := range tensors {
		t := &tensors[i]
		types[t.Name] = t.DType
		if ft == nil {
			continue
		}
		qt, ok, err := ft.tensorType(arch, t.Name, t.Shape, opt.Pure)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if quant.Type(t.DType).Quantized() && pager.DType(qt) != t.DType {
			return nil, fmt.Errorf("tensor %s is already quantized (%s): convert from an F32, F16 or BF16 model, or leave out --type to keep the file's types", t.Name, t.DType)
		}
		types[t.Name] = pager.DType(qt)
	}

	var outs []out
	bundled := map[int]bool{}
	for i := range tensors {
		t := &tensors[i]
		if l, _, ok := pager.FFNPart(t.Name); ok && opt.Bundle {
			if bundled[l] {
				continue
			}
			bundled[l] = true
			o, parts, err := bundleOut(l, p, byName, types, policy, threads)
			if err != nil {
				return nil, err
			}
			outs = append(outs, o)
			res.BundleTypes = append(res.BundleTypes, parts.Types)
			continue
		}
		outs = append(outs, tensorOut(t, types[t.Name], threads))
	}
	if opt.Bundle {
		meta[pager.MetaFFNBundled] = true
		raw := false
		for _, bt := range res.BundleTypes {
			raw = raw || !uniformFloat(bt)
		}
		if raw {
			meta[pager.MetaFFNBundleTypes] = pager.BundleTypesMeta(res.BundleTypes)
		}
	}
	quantized := false
	for _, o := range outs {
		quantized = quantized || quant.Type(o.DType).Quantized() || o.DType == pager.I8
	}
	switch {
	case ft != nil:
		meta["general.file_type"] = ft.ID
	case src.Meta["general.file_type"] != nil:
		meta["general.file_type"] = src.Meta["general.file_type"]
	}
	if quantized {
		meta["general.quantization_version"] = uint32(2)
	}

	specs := make([]pager.TensorSpec, len(outs))
	var total int64
	for i, o := range outs {
		specs[i] = pager.TensorSpec{Name: o.Name, DType: o.DType, Shape: o.Shape}
		total += o.Bytes
		res.Tensors = append(res.Tensors, o.Tensor)
	}
	res.Bytes = total
	if err := pager.WriteGGUFProgress(dst, meta, specs, total, opt.Progress, func(i int, w io.Writer) error { return outs[i].fill(w) }); err != nil {
		return nil, err
	}
	return res, nil
}

// tensorType is TensorType, or with pure the base type for every converted
// matrix (still falling back where its blocks do not fit the rows).
func (ft FileType) tensorType(a Arch, name string, shape []int, pure bool) (quant.Type, bool, error) {
	if !pure || !ft.Base.Quantized() {
		return ft.TensorType(a, name, shape)
	}
	if !Quantizable(name, shape) {
		return 0, false, nil
	}
	t, err := fallback(ft.Base, shape[len(shape)-1])
	if err != nil {
		return 0, false, fmt.Errorf("tensor %s: %w", name, err)
	}
	return t, true, nil
}

func uniformFloat(t [3]pager.DType) bool {
	return t[0] == t[1] && t[1] == t[2] && quant.Type(t[0]).Supported() && !quant.Type(t[0]).Quantized()
}

// rowShape is a tensor's rows and elements per row (a vector is one row).
func rowShape(shape []int) (rows, cols int) {
	if len(shape) == 0 {
		return 1, 1
	}
	cols = shape[len(shape)-1]
	rows = 1
	for _, s := range shape[:len(shape)-1] {
		rows *= s
	}
	return rows, cols
}

// tensorOut writes t as type to: copied when the type is unchanged, else
// every row decoded exactly to float32 and encoded with quant.QuantizeRow.
func tensorOut(t *pager.LlamaTensor, to pager.DType, threads int) out {
	o := out{Tensor: Tensor{Name: t.Name, DType: to, Shape: append([]int(nil), t.Shape...), From: t.DType}}
	rows, cols := rowShape(t.Shape)
	if to == t.DType {
		o.Bytes = t.Bytes()
		o.fill = func(w io.Writer) error { _, err := t.WriteTo(w); return err }
		return o
	}
	outRow, _ := quant.Type(to).RowBytes(cols) // sizes were checked by the type choice
	o.Bytes = int64(rows) * int64(outRow)
	o.fill = func(w io.Writer) error {
		chunk := max(1, min(rows, (4<<20)/max(outRow, 1)))
		buf := make([]byte, chunk*outRow)
		for r0 := 0; r0 < rows; r0 += chunk {
			n := min(chunk, rows-r0)
			err := parallel(n, threads, func(a, b int) error {
				f := make([]float32, cols)
				for r := a; r < b; r++ {
					if err := recode(buf[r*outRow:(r+1)*outRow], to, t.Row(r0+r), t.DType, f); err != nil {
						return fmt.Errorf("row %d: %w", r0+r, err)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if _, err := w.Write(buf[:n*outRow]); err != nil {
				return err
			}
		}
		return nil
	}
	return o
}

// recode converts one row from type from to type to through f (its length
// is the row's elements).
func recode(dst []byte, to pager.DType, src []byte, from pager.DType, f []float32) error {
	if from == to {
		copy(dst, src)
		return nil
	}
	if err := quant.DequantizeRow(quant.Type(from), f, src); err != nil {
		return err
	}
	return quant.QuantizeRow(quant.Type(to), dst, f)
}

// parallel runs f over [0, n) split into up to threads ranges and returns
// the first error. f reads the mapped source, so each range runs under
// fault.Guard (fault.Go): a fault is returned as an error, not a crash on a
// goroutine no recover reaches.
func parallel(n, threads int, f func(a, b int) error) error {
	if threads <= 1 || n < 2 {
		var err error
		if ferr := fault.Guard(func() { err = f(0, n) }); ferr != nil {
			return ferr
		}
		return err
	}
	threads = min(threads, n)
	errs := make([]error, threads)
	if ferr := fault.Go(threads, func(k int) {
		errs[k] = f(k*n/threads, (k+1)*n/threads)
	}); ferr != nil {
		return ferr
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ParseBundleDown checks a BundleDown policy.
func ParseBundleDown(s string) (string, error) {
	switch k := strings.ToLower(strings.TrimSpace(s)); k {
	case "":
		return DefaultBundleDown, nil
	case BundleDownSame:
		return k, nil
	default:
		if _, err := parseType(k); err != nil {
			return "", fmt.Errorf("--bundle-down %q: want %s, %s or a type name (%v)", s, BundleDownSame, BundleDownQ8, err)
		}
		return k, nil
	}
}

// parseType reads a tensor type name ("q8_0", "F32").
func parseType(s string) (quant.Type, error) {
	k := strings.ToUpper(strings.TrimSpace(s))
	for _, t := range quant.Types() {
		if t.String() == k {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown tensor type %q", s)
}
