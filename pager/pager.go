// Package pager opens model weight files (GGUF, Hugging Face safetensors with
// config.json, llama2.c checkpoints) by memory-mapping them: a Tensor's Data
// is a view into the mapping, so opening even a 140 GB model only parses the
// headers and costs no memory beyond the page cache the kernel fills on
// demand. It also writes safetensors and GGUF files (atomically) and converts
// models into the "neuron bundle" GGUF layout used for sparse FFN decoding.
//
// Every size in a file is untrusted: counts, lengths, dims and offsets are
// bounded and overflow-checked, and all failures are errors naming the file
// and the problem. Nothing in this package panics on bad input.
package pager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"

	"offload/internal/fault"
)

// Tensor is one named weight. Data aliases the file mapping: it is valid only
// until the owning Model is closed, and it must not be written (the mapping
// is read-only, so a write faults).
type Tensor struct {
	Name  string
	DType DType
	// Shape is row-major, outermost first: [out, in] for a Linear weight.
	// GGUF lists dims innermost first (ne[0] = in); Open reverses them.
	Shape []int
	// Data is exactly the tensor's bytes (Elements()*DType.Size() for plain
	// types; whole quantisation blocks for quantised ones).
	Data []byte

	mapping mmap.MMap // the mapping Data lives in, for madvise
	off     int64     // offset of Data within mapping
}

// Elements is the product of the dims (1 for a scalar).
func (t *Tensor) Elements() int64 {
	n := int64(1)
	for _, s := range t.Shape {
		n *= int64(s)
	}
	return n
}

// Rows is Shape[0], or 1 for a tensor with fewer than two dims.
func (t *Tensor) Rows() int {
	if len(t.Shape) < 2 {
		return 1
	}
	return t.Shape[0]
}

// Cols is the innermost dim (1 for a scalar).
func (t *Tensor) Cols() int {
	if len(t.Shape) == 0 {
		return 1
	}
	return t.Shape[len(t.Shape)-1]
}

// RowBytes is the size of one Row.
func (t *Tensor) RowBytes() int {
	r := t.Rows()
	if r == 0 {
		return 0
	}
	return len(t.Data) / r
}

// Row returns the i-th outermost slice of Data (for a 2-D tensor, row i;
// for 1-D, i must be 0 and the row is the whole tensor). Like slice indexing,
// an i outside [0, Rows()) panics: it is a caller bug, not bad input.
func (t *Tensor) Row(i int) []byte {
	n := t.RowBytes()
	return t.Data[i*n : (i+1)*n : (i+1)*n]
}

// GatherRows copies the rows listed in idx, in that order, into dst, which
// must hold len(idx)*RowBytes() bytes. It is how selected FFN neuron bundles
// are packed into a staging buffer.
func (t *Tensor) GatherRows(dst []byte, idx []int) error {
	n := t.RowBytes()
	if len(dst) != len(idx)*n {
		return fmt.Errorf("tensor %s: gather of %d rows needs %d bytes, dst has %d", t.Name, len(idx), len(idx)*n, len(dst))
	}
	rows := t.Rows()
	for _, i := range idx { // check all first: dst is untouched on error
		if i < 0 || i >= rows {
			return fmt.Errorf("tensor %s: row %d out of range [0,%d)", t.Name, i, rows)
		}
	}
	for k, i := range idx {
		copy(dst[k*n:(k+1)*n], t.Data[i*n:(i+1)*n])
	}
	return nil
}

// Advice values for Tensor.Advise.
const (
	AdviseNormal     = unix.MADV_NORMAL
	AdviseSequential = unix.MADV_SEQUENTIAL
	AdviseRandom     = unix.MADV_RANDOM
	AdviseWillNeed   = unix.MADV_WILLNEED // start reading the pages in now (prefetch the next layer)
	AdviseDontNeed   = unix.MADV_DONTNEED // drop the pages (they are re-read from the file on use)
)

// Advise passes an madvise hint for the pages holding the tensor. The range
// is widened to page boundaries, so neighbouring tensors sharing a page are
// affected too. A tensor that is not file-backed (none today) is a no-op.
func (t *Tensor) Advise(advice int) error {
	if t.mapping == nil || len(t.Data) == 0 {
		return nil
	}
	ps := int64(os.Getpagesize())
	start := t.off &^ (ps - 1)
	if err := unix.Madvise(t.mapping[start:t.off+int64(len(t.Data))], advice); err != nil {
		return fmt.Errorf("madvise tensor %s: %w", t.Name, err)
	}
	return nil
}

// Model is an opened set of weight files.
type Model struct {
	Path   string
	Format string // "gguf", "safetensors", "llama2c"
	// Meta is the file metadata: for GGUF every key/value pair (plus
	// "gguf.version" and "gguf.alignment"), for safetensors config.json's
	// top-level keys (numbers as float64) plus "safetensors.metadata.<key>",
	// for llama2c the header fields (see parseLlama2C).
	Meta    map[string]any
	Tensors []*Tensor // in file order (shard order, then offset, for sharded safetensors)

	mappings []mmap.MMap
	files    []string // the files mapped, in mappings' order
	byName   map[string]*Tensor
	// configPath is the file Meta's architecture keys come from, for errors.
	configPath string
}

// Files lists every file the model was read from: the weight files mapped
// and the config.json their architecture came from. A writer refuses an
// output that is one of them (atomicfile.SameFile).
func (m *Model) Files() []string {
	out := append([]string(nil), m.files...)
	if m.configPath != "" && (len(out) == 0 || m.configPath != out[0]) {
		out = append(out, m.configPath)
	}
	return out
}

// Tensor looks a tensor up by name.
func (m *Model) Tensor(name string) (*Tensor, bool) {
	t, ok := m.byName[name]
	return t, ok
}

// Bytes is the total size of all tensors.
func (m *Model) Bytes() int64 {
	var n int64
	for _, t := range m.Tensors {
		n += int64(len(t.Data))
	}
	return n
}

// Close unmaps the files. Tensor data must not be used afterwards.
func (m *Model) Close() error {
	var errs []error
	for i := range m.mappings {
		if err := unmap(m.mappings[i]); err != nil {
			errs = append(errs, err)
		}
	}
	m.mappings = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close %s: %w", m.Path, err)
	}
	return nil
}

// CheckDTypes returns an error for the first tensor whose dtype the runtime
// cannot compute with, naming the dtype and the tensor (raw-byte neuron
// bundles pass: FFNBundle checks their part types). Open accepts any known
// dtype, so that `inspect` can list any file; the model loader calls this
// before using the weights.
func (m *Model) CheckDTypes() error {
	for _, t := range m.Tensors {
		if !t.DType.Supported() && !m.isRawBundle(t) {
			return fmt.Errorf("%s %s: tensor %s: dtype not supported yet: %s (supported: %s)",
				m.Format, m.Path, t.Name, t.DType, supportedNames)
		}
	}
	return nil
}

func (m *Model) add(t *Tensor) error {
	if m.byName == nil {
		m.byName = make(map[string]*Tensor)
	}
	if _, dup := m.byName[t.Name]; dup {
		return fmt.Errorf("duplicate tensor name %q", t.Name)
	}
	m.byName[t.Name] = t
	m.Tensors = append(m.Tensors, t)
	return nil
}

// Open detects the format and opens a model:
//   - a directory: Hugging Face layout, config.json plus model.safetensors or
//     model.safetensors.index.json (sharded);
//   - a file starting with the GGUF magic;
//   - a *.safetensors file, with config.json in the same directory;
//   - otherwise a llama2.c checkpoint (legacy version-0 export, .bin).
func Open(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open model: %w", err)
	}
	if st.IsDir() {
		return openHFDir(path)
	}
	mm, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	var m *Model
	// The header is parsed from the mapping: guard it like any other read.
	ferr := fault.Guard(func() {
		switch {
		case len(mm) >= 4 && string(mm[:4]) == "GGUF":
			m, err = parseGGUF(path, mm)
		case len(mm) >= 4 && string(mm[:4]) == "FUGG":
			err = fmt.Errorf("gguf %s: big-endian GGUF is not supported", path)
		case strings.HasSuffix(strings.ToLower(path), ".safetensors"):
			m = &Model{Path: path, Format: "safetensors", Meta: map[string]any{}}
			cfg := filepath.Join(filepath.Dir(path), "config.json")
			if err = m.readConfig(cfg); err == nil {
				err = m.addSafetensors(path, mm)
			}
		default:
			m, err = parseLlama2C(path, mm)
		}
	})
	if ferr != nil {
		err = ferr
	}
	if err != nil {
		_ = unmap(mm)
		return nil, err
	}
	m.mappings = append(m.mappings, mm)
	m.files = append(m.files, path)
	return m, nil
}

// mapFile maps a whole file read-only and registers the mapping with
// package fault, so that a read of it that faults (the file was truncated
// while mapped) becomes an error naming the file. The descriptor is closed at
// once: the mapping keeps the file alive.
func mapFile(path string) (mmap.MMap, error) {
	f, st, err := OpenRegular(path)
	if err != nil {
		return nil, fmt.Errorf("open model: %w", err)
	}
	defer f.Close()
	if st.Size() == 0 {
		return nil, fmt.Errorf("%s: empty file", path)
	}
	if st.Size() != int64(int(st.Size())) {
		return nil, fmt.Errorf("%s: file too large to map (%d bytes)", path, st.Size())
	}
	mm, err := mmap.Map(f, mmap.RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	fault.Register(mm, path)
	return mm, nil
}

// unmap undoes mapFile.
func unmap(mm mmap.MMap) error {
	fault.Unregister(mm)
	return mm.Unmap()
}

// sortByOffset orders tensors of one file by where their data starts, which
// is the file order for formats whose header is an unordered map.
func sortByOffset(ts []*Tensor) {
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].off != ts[j].off {
			return ts[i].off < ts[j].off
		}
		return ts[i].Name < ts[j].Name
	})
}
