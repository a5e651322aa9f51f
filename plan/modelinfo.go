package plan

// Reading a model's architecture for `offload plan --model`. This file (and
// FileWeights) is the only place plan touches weight files, and it never
// reads weights: pager.Open memory-maps the file and parses headers only, and
// the sizes are taken from tensor sizes (slice lengths), which faults no page
// in. The architecture comes
// from model.ConfigFrom, the mapping the engine uses too.

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"offload/model"
	"offload/pager"
)

// ModelInfo is what plan needs from a model file.
type ModelInfo struct {
	Name   string
	Format string // "gguf", "safetensors", "llama2c"
	Config model.Config
	// DType names the weights' storage type: the one holding most of the
	// matrix bytes, e.g. "bf16" or "q4_k" (suffixed "+mixed" when others
	// hold some). DTypeBytes is the exact average, bytes per weight over all
	// matrices, so mixed quantisations are sized as they are on disk.
	DType      string
	DTypeBytes float64
	// Weights sizes every block from the file's tensors, as the engine
	// moves them; nil when the runtime cannot open the file (a type it does
	// not compute with), and then plan sizes it at DTypeBytes.
	Weights *Weights
}

// LoadModelInfo reads the architecture and weight type of a model directory
// (config.json + safetensors), GGUF file or llama2.c checkpoint.
func LoadModelInfo(path string) (ModelInfo, error) {
	m, err := pager.Open(path)
	if err != nil {
		return ModelInfo{}, err
	}
	defer m.Close()
	lp, err := m.LlamaParams()
	if err != nil {
		return ModelInfo{}, err
	}
	info := ModelInfo{Name: modelName(m), Format: m.Format, Config: model.ConfigFrom(m.Format, lp)}
	if err := info.Config.Validate(); err != nil {
		return ModelInfo{}, fmt.Errorf("%s %s: %w", m.Format, path, err)
	}
	info.DType, info.DTypeBytes, err = weightDType(m)
	if err != nil {
		return ModelInfo{}, fmt.Errorf("%s %s: %w", m.Format, path, err)
	}
	if mm, err := model.Open(path); err == nil {
		w := FileWeights(mm)
		info.DType = bundledDType(mm, info.DType)
		w.Name = info.DType
		info.Weights = &w
		mm.Close()
	}
	return info, nil
}

func modelName(m *pager.Model) string {
	if s, ok := m.Meta["general.name"].(string); ok && s != "" {
		return s
	}
	base := filepath.Base(filepath.Clean(m.Path))
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// weightDType sizes the matrices (tensors of two or more dims): norms are
// vectors and often kept in f32 even in quantised files.
func weightDType(m *pager.Model) (string, float64, error) {
	byType := map[pager.DType]int64{}
	var bytes, elems int64
	for _, t := range m.Tensors {
		if len(t.Shape) < 2 {
			continue
		}
		n := int64(len(t.Data))
		byType[t.DType] += n
		bytes += n
		elems += t.Elements()
	}
	if elems == 0 {
		return "", 0, fmt.Errorf("no weight matrices")
	}
	types := make([]pager.DType, 0, len(byType))
	for d := range byType {
		types = append(types, d)
	}
	sort.Slice(types, func(i, j int) bool {
		if byType[types[i]] != byType[types[j]] {
			return byType[types[i]] > byType[types[j]]
		}
		return types[i] < types[j]
	})
	name := strings.ToLower(types[0].String())
	if len(types) > 1 {
		name += "+mixed"
	}
	return name, float64(bytes) / float64(elems), nil
}

// bundledDType names a bundled model's weight type by the types of its
// bundles' parts (the bundle tensors themselves are raw bytes), e.g.
// "q4_k+mixed, bundled"; an unbundled model keeps name.
func bundledDType(m *model.Model, name string) string {
	if !m.Bundled {
		return name
	}
	byType := map[pager.DType]int64{}
	for _, t := range m.File.Tensors {
		if len(t.Shape) >= 2 && t.DType != pager.I8 {
			byType[t.DType] += int64(len(t.Data))
		}
	}
	for _, L := range m.Layers {
		rows := int64(L.Bundle.Rows())
		for i, d := range L.BundleParts.Types {
			byType[d] += rows * int64(L.BundleParts.Bytes[i])
		}
		if L.BundleParts.Uniform() && L.Bundle.DType != pager.I8 {
			byType[L.Bundle.DType] -= int64(len(L.Bundle.Data)) // a typed bundle was counted as a tensor too
		}
	}
	var best pager.DType
	for d, n := range byType {
		if n > byType[best] || (n == byType[best] && d < best) {
			best = d
		}
	}
	out := strings.ToLower(best.String())
	for d, n := range byType {
		if d != best && n > 0 {
			out += "+mixed"
			break
		}
	}
	return out + ", bundled"
}
