package pager

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/edsrzf/mmap-go"

	"offload/internal/fault"
)

const (
	// stMaxHeader bounds the safetensors JSON header. Real headers are a
	// few hundred KB even for 1000+ tensor shards (an entry is ~100 bytes).
	stMaxHeader = 16 << 20
	// stMaxMetadata bounds the header's __metadata__ object.
	stMaxMetadata = 1 << 20
	// maxJSONFile bounds config.json and model.safetensors.index.json.
	maxJSONFile = 64 << 20
	stMaxDims   = 8
)

// safetensors dtype names; only the first three are supported.
var stDTypes = map[string]DType{"F32": F32, "F16": F16, "BF16": BF16}

type stEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

// addSafetensors parses one mapped .safetensors file and adds its tensors to m.
func (m *Model) addSafetensors(path string, mm []byte) error {
	ts, meta, err := parseSafetensors(mm)
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	for k, v := range meta {
		m.Meta["safetensors.metadata."+k] = v
	}
	for _, t := range ts {
		if err := m.add(t); err != nil {
			return fmt.Errorf("safetensors %s: %w", path, err)
		}
	}
	return nil
}

// parseSafetensors reads the header and returns the tensors (in data order)
// and the __metadata__ strings.
func parseSafetensors(mm []byte) ([]*Tensor, map[string]string, error) {
	if len(mm) < 8 {
		return nil, nil, fmt.Errorf("file of %d bytes is shorter than the 8-byte header length", len(mm))
	}
	n := binary.LittleEndian.Uint64(mm)
	if n > stMaxHeader {
		return nil, nil, fmt.Errorf("header length %d exceeds the limit %d", n, stMaxHeader)
	}
	if n > uint64(len(mm)-8) {
		return nil, nil, fmt.Errorf("header length %d exceeds the %d bytes after it (truncated?)", n, len(mm)-8)
	}
	hdr := mm[8 : 8+n]
	dataStart := 8 + int64(n)
	dataLen := uint64(int64(len(mm)) - dataStart)

	// Decode the header as a stream, one entry at a time, rather than into
	// a map of raw messages: that would copy the whole header once more
	// before a single entry was checked.
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.DisallowUnknownFields()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("header JSON: not an object")
	}
	meta := map[string]string{}
	seen := map[string]bool{}
	var ts []*Tensor
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header JSON: %w", err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, nil, fmt.Errorf("header JSON: duplicate key %q", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			// Real metadata is a few short strings ({"format": "pt"}); a
			// huge value would be buffered and decoded whole, so its size
			// is measured in place first.
			if n := jsonValueLen(hdr[dec.InputOffset():]); n > stMaxMetadata {
				return nil, nil, fmt.Errorf("__metadata__ is %d bytes, over the limit of %d", n, stMaxMetadata)
			}
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, fmt.Errorf("__metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var e stEntry
		if err := dec.Decode(&e); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) || err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil, nil, fmt.Errorf("header JSON: tensor %s: %w", name, err)
			}
			return nil, nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		dt, ok := stDTypes[e.DType]
		if !ok {
			if e.DType == "" {
				return nil, nil, fmt.Errorf("tensor %s: missing dtype", name)
			}
			return nil, nil, fmt.Errorf("tensor %s has dtype %s, which offload does not support yet (supported: %s)", name, e.DType, supportedNames)
		}
		if len(e.Shape) > stMaxDims {
			return nil, nil, fmt.Errorf("tensor %s: %d dims exceeds the limit %d", name, len(e.Shape), stMaxDims)
		}
		shape := make([]int, len(e.Shape))
		for i, s := range e.Shape {
			if s < 0 || s > maxTensorBytes {
				return nil, nil, fmt.Errorf("tensor %s: dim %d is %d", name, i, s)
			}
			shape[i] = int(s)
		}
		want, err := tensorBytes(dt, shape)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		if len(e.DataOffsets) != 2 {
			return nil, nil, fmt.Errorf("tensor %s: data_offsets must be [begin, end], got %v", name, e.DataOffsets)
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b > end {
			return nil, nil, fmt.Errorf("tensor %s: data_offsets [%d, %d] begin after they end", name, b, end)
		}
		if end > dataLen {
			return nil, nil, fmt.Errorf("tensor %s: data_offsets [%d, %d] outside the %d data bytes (truncated?)", name, b, end, dataLen)
		}
		if end-b != uint64(want) {
			return nil, nil, fmt.Errorf("tensor %s: shape %v of %s needs %d bytes but data_offsets [%d, %d] hold %d", name, shape, dt, want, b, end, end-b)
		}
		off := dataStart + int64(b)
		ts = append(ts, &Tensor{Name: name, DType: dt, Shape: shape, Data: mm[off : off+want : off+want],
			mapping: mmap.MMap(mm), off: off})
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("header JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("header JSON: data after the header object")
	}
	sortByOffset(ts)
	return ts, meta, nil
}

// readJSONFile reads a bounded JSON file into v.
func readJSONFile(path string, v any) error {
	f, _, err := OpenRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSONFile+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxJSONFile {
		return fmt.Errorf("%s is larger than %d bytes", path, maxJSONFile)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// readConfig loads a Hugging Face config.json into Meta.
func (m *Model) readConfig(path string) error {
	var cfg map[string]any
	if err := readJSONFile(path, &cfg); err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("safetensors %s: missing %s (Hugging Face models need config.json beside the weights)", m.Path, path)
		}
		return fmt.Errorf("safetensors %s: config: %w", m.Path, err)
	}
	if cfg == nil {
		return fmt.Errorf("safetensors %s: %s is not a JSON object", m.Path, path)
	}
	for k, v := range cfg {
		m.Meta[k] = v
	}
	m.configPath = path
	return nil
}

// openHFDir opens a Hugging Face model directory: config.json plus either
// model.safetensors or the shards listed in model.safetensors.index.json.
func openHFDir(dir string) (_ *Model, err error) {
	m := &Model{Path: dir, Format: "safetensors", Meta: map[string]any{}}
	defer func() {
		if err != nil {
			_ = m.Close() // unmap the shards opened so far
		}
	}()
	if err := m.readConfig(filepath.Join(dir, "config.json")); err != nil {
		return nil, err
	}
	single := filepath.Join(dir, "model.safetensors")
	index := filepath.Join(dir, "model.safetensors.index.json")
	if _, serr := os.Stat(single); serr == nil {
		return m, m.addShard(single)
	}
	var idx struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := readJSONFile(index, &idx); err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("safetensors %s: no model.safetensors or model.safetensors.index.json in the directory", dir)
		}
		return nil, fmt.Errorf("safetensors %s: index: %w", dir, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors %s: %s has an empty weight_map", dir, index)
	}
	var shards []string
	seen := map[string]bool{}
	for name, file := range idx.WeightMap {
		if file == "" || file != filepath.Base(file) || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			return nil, fmt.Errorf("safetensors %s: weight_map puts %s in %q, which is not a file name in the model directory", dir, name, file)
		}
		if !seen[file] {
			seen[file] = true
			shards = append(shards, file)
		}
	}
	sort.Strings(shards)
	holder := map[string]string{} // tensor name -> shard file it was found in
	for _, s := range shards {
		before := len(m.Tensors)
		if err := m.addShard(filepath.Join(dir, s)); err != nil {
			return nil, err
		}
		for _, t := range m.Tensors[before:] {
			holder[t.Name] = s
		}
	}
	for name, file := range idx.WeightMap {
		if holder[name] != file {
			return nil, fmt.Errorf("safetensors %s: weight_map lists %s in %s, but that shard does not hold it", dir, name, file)
		}
	}
	return m, nil
}

func (m *Model) addShard(path string) error {
	mm, err := mapFile(path)
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", m.Path, err)
	}
	m.mappings = append(m.mappings, mm)
	m.files = append(m.files, path)
	var err2 error
	if ferr := fault.Guard(func() { err2 = m.addSafetensors(path, mm) }); ferr != nil {
		return ferr
	}
	return err2
}

// jsonValueLen is the length of the JSON value at the start of b (after
// white space and a ':' separator), found by scanning its brackets and
// strings without decoding it; malformed input yields some length <= len(b)
// (the decoder then reports the syntax error).
func jsonValueLen(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n' || b[i] == ':') {
		i++
	}
	start, depth := i, 0
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return min(i+1, len(b)) - start
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 { // the end of the enclosing object
				return i - start
			}
			depth--
			if depth == 0 {
				return i + 1 - start
			}
		case ',', ' ', '\t', '\r', '\n':
			if depth == 0 {
				return i - start
			}
		}
	}
	return len(b) - start
}
