package pager

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// GGUF metadata value types (gguf.h enum gguf_type).
const (
	ggufUint8   = 0
	ggufInt8    = 1
	ggufUint16  = 2
	ggufInt16   = 3
	ggufUint32  = 4
	ggufInt32   = 5
	ggufFloat32 = 6
	ggufBool    = 7
	ggufString  = 8
	ggufArray   = 9
	ggufUint64  = 10
	ggufInt64   = 11
	ggufFloat64 = 12
)

// Limits on untrusted GGUF headers. Counts are also bounded by the bytes left
// in the file (each item needs at least a few bytes), so a header claiming
// 2^60 items fails before anything is allocated. The file size alone is not
// enough: a sparse file costs no disk, and a 16 GB one can hold the length
// fields of 2^31 empty strings, which decode to 32 GB of Go strings. So the
// decoded metadata as a whole is bounded too (ggufMaxMeta), and each array
// is charged against that budget before it is allocated.
const (
	ggufMaxTensors = 1 << 17 // the largest real models (MoE with per-expert tensors) have ~15k
	ggufMaxKV      = 1 << 20
	ggufMaxString  = 1 << 30 // a single string (chat templates run to tens of KB)
	ggufMaxName    = 64 << 10
	// ggufMaxTensorName bounds a tensor's name (ggml's own limit is 64 bytes).
	ggufMaxTensorName = 1 << 10
	// ggufMaxMeta bounds the metadata's cost in memory: the header bytes
	// read (mapped pages count in the resident set) plus what they decode
	// to. The largest real tokenizers (Llama 3, Qwen 2, Command R: 128-256k
	// tokens and as many merges) cost 15-25 MB.
	ggufMaxMeta      = 40 << 20
	ggufMaxDims      = 4
	ggufMaxNesting   = 4
	ggufDefaultAlign = 32
	ggufMaxAlign     = 1 << 20
)

var errShort = errors.New("unexpected end of file")

// reader is a bounds-checked cursor over the mapped file.
type reader struct {
	b   []byte
	off int
	// meta is what is left of the decoded-metadata budget (ggufMaxMeta).
	meta int64
	// mapped says b is a file mapping whose pages release may drop;
	// released is the offset up to which it has.
	mapped   bool
	released int
}

// releaseStep is how many consumed header bytes release lets accumulate.
const releaseStep = 1 << 20

// release drops the mapped pages of the header already decoded (every value
// is copied out of the mapping), so that reading a large header does not
// also hold all of it in the resident set: only the current chunk's pages
// and the decoded values are. The pages are file-backed, so dropping them
// loses nothing.
func (r *reader) release() {
	if !r.mapped {
		return
	}
	end := r.off &^ (os.Getpagesize() - 1)
	if end-r.released < releaseStep {
		return
	}
	_ = unix.Madvise(r.b[r.released:end], unix.MADV_DONTNEED)
	r.released = end
}

// decodeFixed decodes an array of n elements of es bytes each, a chunk at a
// time, releasing the pages behind each chunk.
func decodeFixed[T any](r *reader, n, es int, conv func(b []byte, i int) (T, error)) ([]T, error) {
	out := make([]T, n)
	chunk := max(1, releaseStep/es)
	for i0 := 0; i0 < n; i0 += chunk {
		k := min(chunk, n-i0)
		b, err := r.take(k * es) // n*es <= left, checked by count
		if err != nil {
			return nil, err
		}
		for i := range k {
			if out[i0+i], err = conv(b[i*es:], i0+i); err != nil {
				return nil, err
			}
		}
		r.release()
	}
	return out, nil
}

// Go's in-memory sizes of decoded metadata, for the budget.
const (
	goStringHeader = 16 // a string header
	goIface        = 16 // an interface value (a []any element, a map value)
	goSlice        = 24 // a slice header
)

// charge takes n bytes from the metadata budget before they are read or
// allocated.
func (r *reader) charge(what string, n int64) error {
	if n < 0 || n > r.meta {
		return fmt.Errorf("at offset %d: %s would take the metadata past the limit of %d MiB (header bytes read plus their decoded size; used %d MiB)",
			r.off, what, ggufMaxMeta>>20, (ggufMaxMeta-r.meta)>>20)
	}
	r.meta -= n
	return nil
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, fmt.Errorf("at offset %d: need %d bytes, %d left: %w", r.off, n, r.left(), errShort)
	}
	if err := r.charge("reading the header", int64(n)); err != nil {
		return nil, err
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) u8() (uint8, error) {
	b, err := r.take(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) u16() (uint16, error) {
	b, err := r.take(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (r *reader) u32() (uint32, error) {
	b, err := r.take(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) u64() (uint64, error) {
	b, err := r.take(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// count reads a uint64 count of items that each need at least minSize bytes,
// and rejects counts above max or above what the rest of the file can hold.
func (r *reader) count(what string, max uint64, minSize int) (int, error) {
	at := r.off
	n, err := r.u64()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if n > max {
		return 0, fmt.Errorf("at offset %d: %s %d exceeds the limit %d", at, what, n, max)
	}
	if minSize > 0 && n > uint64(r.left()/minSize) {
		return 0, fmt.Errorf("at offset %d: %s %d cannot fit in the %d bytes left in the file", at, what, n, r.left())
	}
	return int(n), nil
}

func (r *reader) str(max uint64) (string, error) {
	n, err := r.count("string length", max, 1)
	if err != nil {
		return "", err
	}
	if err := r.charge("a string", int64(n)); err != nil {
		return "", err
	}
	b, err := r.take(n)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// parseGGUF reads a GGUF v2/v3 header from the mapped file and builds tensor
// views into it.
func parseGGUF(path string, mm []byte) (*Model, error) {
	m, err := parseGGUFHeader(mm, true)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	m.Path = path
	m.configPath = path
	return m, nil
}

// parseGGUFHeader parses the header at the start of mm; mapped says mm is a
// file mapping (whose decoded pages may be dropped as it goes).
func parseGGUFHeader(mm []byte, mapped bool) (*Model, error) {
	r := &reader{b: mm, meta: ggufMaxMeta, mapped: mapped}
	if _, err := r.take(4); err != nil { // magic, checked by the caller
		return nil, err
	}
	version, err := r.u32()
	if err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	switch {
	case version == 1:
		return nil, fmt.Errorf("GGUF version 1 is not supported (only 2 and 3)")
	case version != 2 && version != 3:
		if version&0xFFFF == 0 && version>>16 != 0 {
			return nil, fmt.Errorf("GGUF version %d looks byte-swapped: big-endian GGUF is not supported", version)
		}
		return nil, fmt.Errorf("unknown GGUF version %d (only 2 and 3)", version)
	}
	// A tensor info is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
	// a KV at least 8 (key len) + 4 (type) + 1 (value).
	nTensors, err := r.count("tensor count", ggufMaxTensors, 24)
	if err != nil {
		return nil, err
	}
	nKV, err := r.count("metadata count", ggufMaxKV, 13)
	if err != nil {
		return nil, err
	}
	// The map itself: about a key header, a value interface and bucket
	// overhead per entry.
	if err := r.charge(fmt.Sprintf("a table of %d metadata keys", nKV), int64(nKV)*64); err != nil {
		return nil, err
	}
	m := &Model{Format: "gguf", Meta: make(map[string]any, nKV+2)}
	for i := 0; i < nKV; i++ {
		at := r.off
		key, err := r.str(ggufMaxName)
		if err != nil {
			return nil, fmt.Errorf("metadata key %d: %w", i, err)
		}
		typ, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("metadata %q: type: %w", key, err)
		}
		v, err := r.value(typ, 0)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, err)
		}
		if _, dup := m.Meta[key]; dup {
			return nil, fmt.Errorf("at offset %d: duplicate metadata key %q", at, key)
		}
		m.Meta[key] = v
	}
	align := uint32(ggufDefaultAlign)
	if v, ok := m.Meta["general.alignment"]; ok {
		a, isU32 := v.(uint32)
		if !isU32 || a == 0 || a&(a-1) != 0 || a > ggufMaxAlign {
			return nil, fmt.Errorf("general.alignment %v (%T) must be a power of two uint32 <= %d", v, v, ggufMaxAlign)
		}
		align = a
	}
	// Synthetic keys, set after the file's own (which they override).
	m.Meta["gguf.version"] = version
	m.Meta["gguf.alignment"] = align

	type info struct {
		t   *Tensor
		rel uint64
		n   int64
	}
	infos := make([]info, 0, nTensors)
	// The tensor table is not metadata: it is bounded by its own limits
	// (count, name length, dims) instead of the metadata budget.
	r.meta = math.MaxInt64
	for i := 0; i < nTensors; i++ {
		name, err := r.str(ggufMaxTensorName)
		if err != nil {
			return nil, fmt.Errorf("tensor %d name: %w", i, err)
		}
		nd, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("tensor %s: n_dims: %w", name, err)
		}
		if nd == 0 || nd > ggufMaxDims {
			return nil, fmt.Errorf("tensor %s: n_dims %d outside [1,%d]", name, nd, ggufMaxDims)
		}
		shape := make([]int, nd)
		for d := 0; d < int(nd); d++ {
			ne, err := r.u64()
			if err != nil {
				return nil, fmt.Errorf("tensor %s: dims: %w", name, err)
			}
			if ne > uint64(maxTensorBytes) {
				return nil, fmt.Errorf("tensor %s: dim %d is %d, too large", name, d, ne)
			}
			shape[int(nd)-1-d] = int(ne) // ne[0] is innermost: reverse to outermost-first
		}
		typ, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("tensor %s: type: %w", name, err)
		}
		if typ > 255 || !DType(typ).Known() {
			return nil, fmt.Errorf("tensor %s: unknown or unsupported ggml type %d (%s)", name, typ, DType(min(typ, 255)))
		}
		dt := DType(typ)
		rel, err := r.u64()
		if err != nil {
			return nil, fmt.Errorf("tensor %s: offset: %w", name, err)
		}
		if rel%uint64(align) != 0 {
			return nil, fmt.Errorf("tensor %s: data offset %d is not a multiple of the alignment %d", name, rel, align)
		}
		n, err := tensorBytes(dt, shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		infos = append(infos, info{&Tensor{Name: name, DType: dt, Shape: shape}, rel, n})
	}
	dataStart := (uint64(r.off) + uint64(align) - 1) / uint64(align) * uint64(align)
	size := uint64(len(mm))
	for _, in := range infos {
		start := dataStart + in.rel // both < 2^51, cannot overflow
		if in.rel > size || start > size || uint64(in.n) > size-start {
			return nil, fmt.Errorf("tensor %s: data [%d, %d) (%s %v) lies outside the file of %d bytes (truncated?)",
				in.t.Name, start, start+uint64(in.n), in.t.DType, in.t.Shape, size)
		}
		in.t.mapping = mm
		in.t.off = int64(start)
		in.t.Data = mm[start : start+uint64(in.n) : start+uint64(in.n)]
		if err := m.add(in.t); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// value decodes one metadata value of the given type.
func (r *reader) value(typ uint32, depth int) (any, error) {
	switch typ {
	case ggufUint8:
		return r.u8()
	case ggufInt8:
		v, err := r.u8()
		return int8(v), err
	case ggufUint16:
		return r.u16()
	case ggufInt16:
		v, err := r.u16()
		return int16(v), err
	case ggufUint32:
		return r.u32()
	case ggufInt32:
		v, err := r.u32()
		return int32(v), err
	case ggufFloat32:
		v, err := r.u32()
		return math.Float32frombits(v), err
	case ggufBool:
		v, err := r.u8()
		if err == nil && v > 1 {
			return nil, fmt.Errorf("bool value %d is neither 0 nor 1", v)
		}
		return v == 1, err
	case ggufString:
		return r.str(ggufMaxString)
	case ggufUint64:
		return r.u64()
	case ggufInt64:
		v, err := r.u64()
		return int64(v), err
	case ggufFloat64:
		v, err := r.u64()
		return math.Float64frombits(v), err
	case ggufArray:
		return r.array(depth)
	}
	return nil, fmt.Errorf("at offset %d: unknown metadata type %d", r.off-4, typ)
}

var ggufElemSize = map[uint32]int{
	ggufUint8: 1, ggufInt8: 1, ggufUint16: 2, ggufInt16: 2, ggufUint32: 4, ggufInt32: 4, ggufFloat32: 4,
	ggufBool: 1, ggufString: 8, ggufArray: 12, ggufUint64: 8, ggufInt64: 8, ggufFloat64: 8,
}

// array decodes an array into a typed slice ([]string, []float32, ...);
// arrays of arrays become []any.
func (r *reader) array(depth int) (any, error) {
	if depth >= ggufMaxNesting {
		return nil, fmt.Errorf("arrays nested deeper than %d", ggufMaxNesting)
	}
	et, err := r.u32()
	if err != nil {
		return nil, fmt.Errorf("array type: %w", err)
	}
	es, ok := ggufElemSize[et]
	if !ok {
		return nil, fmt.Errorf("at offset %d: unknown array element type %d", r.off-4, et)
	}
	n, err := r.count("array length", math.MaxInt32, es)
	if err != nil {
		return nil, err
	}
	// In memory an element takes its own size, a string header, or an
	// interface (arrays of arrays); charge the whole array before making it.
	mem := int64(es)
	switch et {
	case ggufString:
		mem = goStringHeader
	case ggufArray:
		mem = goIface + goSlice
	}
	if err := r.charge(fmt.Sprintf("an array of %d elements", n), goSlice+int64(n)*mem); err != nil {
		return nil, err
	}
	switch et {
	case ggufString:
		out := make([]string, n)
		for i := range out {
			if out[i], err = r.str(ggufMaxString); err != nil {
				return nil, fmt.Errorf("array element %d: %w", i, err)
			}
			r.release()
		}
		return out, nil
	case ggufArray:
		out := make([]any, n)
		for i := range out {
			if out[i], err = r.array(depth + 1); err != nil {
				return nil, fmt.Errorf("array element %d: %w", i, err)
			}
		}
		return out, nil
	}
	le := binary.LittleEndian
	switch et {
	case ggufUint8:
		return decodeFixed(r, n, es, func(b []byte, _ int) (uint8, error) { return b[0], nil })
	case ggufInt8:
		return decodeFixed(r, n, es, func(b []byte, _ int) (int8, error) { return int8(b[0]), nil })
	case ggufBool:
		return decodeFixed(r, n, es, func(b []byte, i int) (bool, error) {
			if b[0] > 1 {
				return false, fmt.Errorf("array element %d: bool value %d is neither 0 nor 1", i, b[0])
			}
			return b[0] == 1, nil
		})
	case ggufUint16:
		return decodeFixed(r, n, es, func(b []byte, _ int) (uint16, error) { return le.Uint16(b), nil })
	case ggufInt16:
		return decodeFixed(r, n, es, func(b []byte, _ int) (int16, error) { return int16(le.Uint16(b)), nil })
	case ggufUint32:
		return decodeFixed(r, n, es, func(b []byte, _ int) (uint32, error) { return le.Uint32(b), nil })
	case ggufInt32:
		return decodeFixed(r, n, es, func(b []byte, _ int) (int32, error) { return int32(le.Uint32(b)), nil })
	case ggufFloat32:
		return decodeFixed(r, n, es, func(b []byte, _ int) (float32, error) { return math.Float32frombits(le.Uint32(b)), nil })
	case ggufUint64:
		return decodeFixed(r, n, es, func(b []byte, _ int) (uint64, error) { return le.Uint64(b), nil })
	case ggufInt64:
		return decodeFixed(r, n, es, func(b []byte, _ int) (int64, error) { return int64(le.Uint64(b)), nil })
	case ggufFloat64:
		return decodeFixed(r, n, es, func(b []byte, _ int) (float64, error) { return math.Float64frombits(le.Uint64(b)), nil })
	}
	return nil, fmt.Errorf("unhandled array element type %d", et)
}
