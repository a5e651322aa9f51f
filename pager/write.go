package pager

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strings"

	"offload/internal/atomicfile"
	"offload/internal/fault"
)

// TensorSpec describes one tensor to write.
type TensorSpec struct {
	Name  string
	DType DType
	Shape []int // outermost first
}

// writeBufSize is the buffered writer size: large enough that the fill
// callbacks' small writes become few large syscalls.
const writeBufSize = 4 << 20

// syncWrites makes writeAtomic fsync the file and directory. Only the fuzz
// tests turn it off, to keep each iteration fast.
var syncWrites = true

// writeAtomic creates a temporary file in path's directory
// (internal/atomicfile: registered, so an interrupt removes it), lets body
// write it through a buffered writer, then flushes, fsyncs, and renames it
// over path (and fsyncs the directory). On any error, or a panic (a fault
// reading a mapped input), the temporary file is removed, so a partial
// output never appears under path nor lingers beside it.
func writeAtomic(path string, body func(w io.Writer) error) error {
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, writeBufSize)
	if err := body(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit(syncWrites)
}

// countingWriter counts bytes and refuses to write past limit, so a fill
// callback that writes too much is caught before it corrupts the next tensor.
type countingWriter struct {
	w     io.Writer
	n     int64
	limit int64
}

var errTooMuch = errors.New("wrote more bytes than the tensor holds")

func (c *countingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.limit-c.n {
		return 0, errTooMuch
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// fillTensor runs fill for spec i and checks it wrote exactly want bytes.
func fillTensor(w io.Writer, i int, spec TensorSpec, want int64, fill func(int, io.Writer) error) error {
	cw := &countingWriter{w: w, limit: want}
	if err := fill(i, cw); err != nil {
		return fmt.Errorf("tensor %s: %w", spec.Name, err)
	}
	if cw.n != want {
		return fmt.Errorf("tensor %s: fill wrote %d bytes, want %d (%s %v)", spec.Name, cw.n, want, spec.DType, spec.Shape)
	}
	return nil
}

// specSizes validates specs and returns each tensor's byte size.
func specSizes(specs []TensorSpec, onlySupported bool) ([]int64, error) {
	sizes := make([]int64, len(specs))
	seen := make(map[string]bool, len(specs))
	for i, s := range specs {
		if s.Name == "" || seen[s.Name] {
			return nil, fmt.Errorf("tensor %d: empty or duplicate name %q", i, s.Name)
		}
		seen[s.Name] = true
		if onlySupported && !s.DType.Float() {
			return nil, fmt.Errorf("tensor %s: dtype %s is not supported in safetensors (supported: F32, F16, BF16)", s.Name, s.DType)
		}
		n, err := tensorBytes(s.DType, s.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", s.Name, err)
		}
		sizes[i] = n
	}
	return sizes, nil
}

// WriteSafetensors writes a safetensors file, streaming each tensor's bytes
// from fill(i, w), which must write exactly spec i's size. Tensors are laid
// out in spec order; meta becomes the header's __metadata__. Only F32, F16
// and BF16 can be written. The write is atomic.
func WriteSafetensors(path string, specs []TensorSpec, meta map[string]string, fill func(i int, w io.Writer) error) error {
	sizes, err := specSizes(specs, true)
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	// Build the header by hand to keep spec order (a Go map would sort it).
	var hb strings.Builder
	hb.WriteByte('{')
	if len(meta) > 0 {
		mb, err := json.Marshal(meta)
		if err != nil {
			return fmt.Errorf("safetensors %s: metadata: %w", path, err)
		}
		hb.WriteString(`"__metadata__":`)
		hb.Write(mb)
	}
	var off int64
	for i, s := range specs {
		if s.Name == "__metadata__" {
			return fmt.Errorf("safetensors %s: tensor name __metadata__ is reserved", path)
		}
		if hb.Len() > 1 {
			hb.WriteByte(',')
		}
		name, _ := json.Marshal(s.Name)
		shape := s.Shape
		if shape == nil {
			shape = []int{}
		}
		sh, _ := json.Marshal(shape)
		fmt.Fprintf(&hb, `%s:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, name, s.DType.String(), sh, off, off+sizes[i])
		off += sizes[i]
	}
	hb.WriteByte('}')
	hdr := hb.String()
	if pad := (8 - len(hdr)%8) % 8; pad > 0 { // align the data section to 8 bytes, as the reference writer does
		hdr += strings.Repeat(" ", pad)
	}
	if len(hdr) > stMaxHeader {
		return fmt.Errorf("safetensors %s: header of %d bytes exceeds %d", path, len(hdr), stMaxHeader)
	}
	return writeAtomic(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := io.WriteString(w, hdr); err != nil {
			return err
		}
		for i, s := range specs {
			if err := fillTensor(w, i, s, sizes[i], fill); err != nil {
				return err
			}
		}
		return nil
	})
}

// ggufAlign is the alignment WriteGGUF uses (the GGUF default).
const ggufAlign = 32

// WriteGGUF writes a GGUF v3 file (alignment 32). meta values use the Go
// types Open produces (uint8..uint64, int8..int64, float32/64, bool, string,
// typed slices, []any for arrays of arrays); int becomes INT32 when it fits,
// else INT64. Keys are written sorted. "gguf.version" and "gguf.alignment"
// (added by Open) are skipped, so a Model's Meta can be passed back as is;
// "general.alignment", if present, must be 32. Any dtype Open can size may
// be written (quantised tensors are copied as blocks). Atomic.
func WriteGGUF(path string, meta map[string]any, specs []TensorSpec, fill func(i int, w io.Writer) error) error {
	sizes, err := specSizes(specs, false)
	if err != nil {
		return fmt.Errorf("gguf %s: %w", path, err)
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		if k == "gguf.version" || k == "gguf.alignment" {
			continue
		}
		if k == "general.alignment" {
			if a, ok := meta[k].(uint32); !ok || a != ggufAlign {
				return fmt.Errorf("gguf %s: general.alignment must be uint32(%d), got %v (%T)", path, ggufAlign, meta[k], meta[k])
			}
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Encode the whole header in memory: it is small (metadata + tensor infos).
	var h ggufEnc
	h.raw([]byte("GGUF"))
	h.u32(3)
	h.u64(uint64(len(specs)))
	h.u64(uint64(len(keys)))
	for _, k := range keys {
		h.str(k)
		if err := h.value(meta[k], 0); err != nil {
			return fmt.Errorf("gguf %s: metadata %q: %w", path, k, err)
		}
	}
	var off int64
	for i, s := range specs {
		if len(s.Shape) == 0 || len(s.Shape) > ggufMaxDims {
			return fmt.Errorf("gguf %s: tensor %s: GGUF needs 1 to %d dims, shape is %v", path, s.Name, ggufMaxDims, s.Shape)
		}
		h.str(s.Name)
		h.u32(uint32(len(s.Shape)))
		for d := len(s.Shape) - 1; d >= 0; d-- { // GGUF lists the innermost dim first
			h.u64(uint64(s.Shape[d]))
		}
		h.u32(uint32(s.DType))
		h.u64(uint64(off))
		off = alignUp(off+sizes[i], ggufAlign)
	}
	h.raw(make([]byte, alignUp(int64(len(h.b)), ggufAlign)-int64(len(h.b))))
	var zeros [ggufAlign]byte
	return writeAtomic(path, func(w io.Writer) error {
		if _, err := w.Write(h.b); err != nil {
			return err
		}
		for i, s := range specs {
			if err := fillTensor(w, i, s, sizes[i], fill); err != nil {
				return err
			}
			// Pad every tensor, the last one included, as gguf-py does:
			// ggml's non-mmap loader reads the padded data section size.
			if _, err := w.Write(zeros[:alignUp(sizes[i], ggufAlign)-sizes[i]]); err != nil {
				return err
			}
		}
		return nil
	})
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// ggufEnc builds a GGUF header in memory.
type ggufEnc struct{ b []byte }

func (e *ggufEnc) raw(p []byte) { e.b = append(e.b, p...) }
func (e *ggufEnc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *ggufEnc) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *ggufEnc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *ggufEnc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *ggufEnc) str(s string) { e.u64(uint64(len(s))); e.b = append(e.b, s...) }

// scalarType maps a Go scalar to its GGUF type and writes it (typ only when
// write is false).
func (e *ggufEnc) scalar(v any, write bool) (uint32, bool) {
	var t uint32
	switch x := v.(type) {
	case uint8:
		t = ggufUint8
		if write {
			e.u8(x)
		}
	case int8:
		t = ggufInt8
		if write {
			e.u8(uint8(x))
		}
	case uint16:
		t = ggufUint16
		if write {
			e.u16(x)
		}
	case int16:
		t = ggufInt16
		if write {
			e.u16(uint16(x))
		}
	case uint32:
		t = ggufUint32
		if write {
			e.u32(x)
		}
	case int32:
		t = ggufInt32
		if write {
			e.u32(uint32(x))
		}
	case float32:
		t = ggufFloat32
		if write {
			e.u32(math.Float32bits(x))
		}
	case bool:
		t = ggufBool
		if write {
			if x {
				e.u8(1)
			} else {
				e.u8(0)
			}
		}
	case string:
		t = ggufString
		if write {
			e.str(x)
		}
	case uint64:
		t = ggufUint64
		if write {
			e.u64(x)
		}
	case int64:
		t = ggufInt64
		if write {
			e.u64(uint64(x))
		}
	case float64:
		t = ggufFloat64
		if write {
			e.u64(math.Float64bits(x))
		}
	case int:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			t = ggufInt32
			if write {
				e.u32(uint32(int32(x)))
			}
		} else {
			t = ggufInt64
			if write {
				e.u64(uint64(int64(x)))
			}
		}
	default:
		return 0, false
	}
	return t, true
}

// value writes type + value for a metadata entry.
func (e *ggufEnc) value(v any, depth int) error {
	if t, ok := e.scalar(v, false); ok {
		e.u32(t)
		e.scalar(v, true)
		return nil
	}
	e.u32(ggufArray)
	return e.arrayBody(v, depth)
}

// arrayBody writes element type, count and elements of a slice.
func (e *ggufEnc) arrayBody(v any, depth int) error {
	if depth >= ggufMaxNesting {
		return fmt.Errorf("arrays nested deeper than %d", ggufMaxNesting)
	}
	rv := reflect.ValueOf(v)
	if v == nil || rv.Kind() != reflect.Slice {
		return fmt.Errorf("unsupported metadata type %T", v)
	}
	n := rv.Len()
	if _, isAny := v.([]any); isAny {
		e.u32(ggufArray)
		e.u64(uint64(n))
		for i := 0; i < n; i++ {
			if err := e.arrayBody(rv.Index(i).Interface(), depth+1); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		return nil
	}
	// Element type from the slice's element type (also right for empty slices).
	zero := reflect.Zero(rv.Type().Elem()).Interface()
	et, ok := e.scalar(zero, false)
	if !ok {
		return fmt.Errorf("unsupported metadata array type %T", v)
	}
	if _, isInt := zero.(int); isInt { // []int: widen to INT64 so every value fits
		e.u32(ggufInt64)
		e.u64(uint64(n))
		for i := 0; i < n; i++ {
			e.u64(uint64(rv.Index(i).Int()))
		}
		return nil
	}
	e.u32(et)
	e.u64(uint64(n))
	for i := 0; i < n; i++ {
		e.scalar(rv.Index(i).Interface(), true)
	}
	return nil
}

// WriteGGUFProgress is WriteGGUF for fills that read mapped files (convert,
// bundle): progress, if set, is told the bytes written of total about every
// 4 MiB and after each tensor, and a fault reading a mapping (a source
// truncated meanwhile) is an error, the partial output removed.
func WriteGGUFProgress(path string, meta map[string]any, specs []TensorSpec, total int64, progress func(done, total int64), fill func(i int, w io.Writer) error) error {
	pw := &progressWriter{total: total, report: progress}
	var err error
	if ferr := fault.Guard(func() {
		err = WriteGGUF(path, meta, specs, func(i int, w io.Writer) error {
			pw.w = w
			if err := fill(i, pw); err != nil {
				return err
			}
			pw.flush()
			return nil
		})
	}); ferr != nil {
		return ferr
	}
	return err
}

// progressWriter forwards writes and reports progress about every 4 MiB.
type progressWriter struct {
	w            io.Writer
	done, last   int64
	total        int64
	report       func(done, total int64)
	reportedOnce bool
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if p.done-p.last >= 4<<20 {
		p.flush()
	}
	return n, err
}

func (p *progressWriter) flush() {
	if p.report != nil && (p.done != p.last || !p.reportedOnce) {
		p.report(p.done, p.total)
		p.last = p.done
		p.reportedOnce = true
	}
}
