package convert

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"offload/quant"
)

// FileType is one of llama.cpp's file types (llama_ftype): a base tensor
// type and, for the k-quant mixes (_S, _M, _L), rules that give some
// tensors more bits. ID is the value llama.cpp writes as general.file_type.
type FileType struct {
	Name string
	ID   uint32
	Base quant.Type
}

// The file types the converter writes, with llama.cpp's ids.
var fileTypes = []FileType{
	{"F32", 0, quant.F32}, {"F16", 1, quant.F16}, {"BF16", 32, quant.BF16},
	{"Q4_0", 2, quant.Q4_0}, {"Q4_1", 3, quant.Q4_1}, {"Q8_0", 7, quant.Q8_0},
	{"Q5_0", 8, quant.Q5_0}, {"Q5_1", 9, quant.Q5_1}, {"Q2_K", 10, quant.Q2_K},
	{"Q3_K_S", 11, quant.Q3_K}, {"Q3_K_M", 12, quant.Q3_K}, {"Q3_K_L", 13, quant.Q3_K},
	{"Q4_K_S", 14, quant.Q4_K}, {"Q4_K_M", 15, quant.Q4_K},
	{"Q5_K_S", 16, quant.Q5_K}, {"Q5_K_M", 17, quant.Q5_K}, {"Q6_K", 18, quant.Q6_K},
}

// fileTypeAliases are llama-quantize's short names for the _M mixes.
var fileTypeAliases = map[string]string{"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

// FileTypes lists the names ParseFileType accepts (aliases included).
func FileTypes() []string {
	var out []string
	for _, f := range fileTypes {
		out = append(out, strings.ToLower(f.Name))
	}
	for a := range fileTypeAliases {
		out = append(out, strings.ToLower(a))
	}
	sort.Strings(out)
	return out
}

// ParseFileType reads a file type name, case-insensitively: "q4_k_m",
// "Q8_0", "bf16", or llama-quantize's aliases ("q4_k" is Q4_K_M, as there).
func ParseFileType(s string) (FileType, error) {
	k := strings.ToUpper(strings.TrimSpace(s))
	if a, ok := fileTypeAliases[k]; ok {
		k = a
	}
	for _, f := range fileTypes {
		if f.Name == k {
			return f, nil
		}
	}
	if k == "Q2_K_S" || strings.HasPrefix(k, "IQ") {
		return FileType{}, fmt.Errorf("file type %s needs an importance matrix, which the converter does not compute (known: %s)", k, strings.Join(FileTypes(), ", "))
	}
	return FileType{}, fmt.Errorf("unknown file type %q (known: %s)", s, strings.Join(FileTypes(), ", "))
}

// Arch is what the type choice needs to know about a model.
type Arch struct {
	Layers, Heads, KVHeads int
	// Tied: no output.weight (the LM head is token_embd), which then gets
	// the head's type.
	Tied bool
}

// is70B is llama.cpp's LLM_TYPE_70B for the llama architecture: 80 layers
// with grouped-query attention. Its attn_v tensors get more bits.
func (a Arch) is70B() bool { return a.Layers == 80 && a.Heads != a.KVHeads }

func (a Arch) gqa() int {
	if a.KVHeads <= 0 {
		return 1
	}
	return a.Heads / a.KVHeads
}

// Quantizable says whether the quantizer converts a tensor at all: matrices
// whose name ends in "weight", except norms (llama.cpp's
// tensor_allows_quantization, for the llama tensors). Vectors keep their
// type.
func Quantizable(name string, shape []int) bool {
	return len(shape) >= 2 && strings.HasSuffix(name, "weight") && !strings.Contains(name, "_norm.weight")
}

// category is llama.cpp's tensor category, for the llama tensor names.
type category int

const (
	catOther category = iota
	catTokenEmbd
	catOutput
	catAttnQ
	catAttnK
	catAttnV
	catAttnOutput
	catFFNGate
	catFFNUp
	catFFNDown
)

func categoryOf(name string) category {
	switch {
	case name == "output.weight":
		return catOutput
	case name == "token_embd.weight":
		return catTokenEmbd
	case strings.Contains(name, "attn_v.weight"):
		return catAttnV
	case strings.Contains(name, "attn_k.weight"):
		return catAttnK
	case strings.Contains(name, "attn_q.weight"):
		return catAttnQ
	case strings.Contains(name, "attn_output.weight"):
		return catAttnOutput
	case strings.Contains(name, "ffn_up"):
		return catFFNUp
	case strings.Contains(name, "ffn_gate"):
		return catFFNGate
	case strings.Contains(name, "ffn_down"):
		return catFFNDown
	}
	return catOther
}

// layerOf reads N from "blk.N.", or -1.
func layerOf(name string) int {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return -1
	}
	num, _, _ := strings.Cut(rest, ".")
	l, err := strconv.Atoi(num)
	if err != nil || l < 0 {
		return -1
	}
	return l
}

// useMoreBits is llama.cpp's choice of the layers that get more bits in the
// _M mixes: the first and last eighth, and every third layer between.
func useMoreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

// TensorType is the type llama.cpp's quantizer (llama-quantize, no
// importance matrix) gives tensor name, of shape shape (outermost first), in
// a file of type ft, for a model described by a. ok is false for a tensor
// that is not converted (vectors, norms: they keep their type).
//
// The rules are llama-quant.cpp's llama_tensor_get_type for the llama
// tensor names and the types listed in fileTypes: the LM head (and a tied
// embedding) gets Q6_K unless the base is Q8_0; attn_v and ffn_down get more
// bits in the _M/_L mixes (in the layers useMoreBits picks, counted in layer
// order as llama.cpp's loader sorts tensors), attn_output in Q2_K and
// Q3_K_M/L; a 70B model's attn_v gets Q5_K over Q3_K/Q4_K. A type whose
// block does not divide the row falls back as llama.cpp's does (Q4_K to
// Q5_0, Q6_K to Q8_0, ..., else F16).
func (ft FileType) TensorType(a Arch, name string, shape []int) (t quant.Type, ok bool, err error) {
	if !Quantizable(name, shape) {
		return 0, false, nil
	}
	t = ft.Base
	if !t.Quantized() {
		return t, true, nil
	}
	cols := shape[len(shape)-1]
	cat := categoryOf(name)
	layer, n := layerOf(name), a.Layers
	is := func(names ...string) bool {
		for _, s := range names {
			if ft.Name == s {
				return true
			}
		}
		return false
	}
	switch {
	case cat == catOutput || (a.Tied && cat == catTokenEmbd):
		if cols%t.BlockElems() != 0 {
			t = quant.Q8_0
		} else if t != quant.Q8_0 {
			t = quant.Q6_K
		}
	case cat == catAttnV:
		switch {
		case is("Q2_K"):
			t = quant.Q3_K
			if a.gqa() >= 4 {
				t = quant.Q4_K
			}
		case is("Q3_K_M"):
			t = quant.Q4_K
			if layer < 2 {
				t = quant.Q5_K
			}
		case is("Q3_K_L"):
			t = quant.Q5_K
		case is("Q4_K_M", "Q5_K_M") && useMoreBits(layer, n):
			t = quant.Q6_K
		case is("Q4_K_S") && layer < 4:
			t = quant.Q5_K
		}
		if a.is70B() && (t == quant.Q3_K || t == quant.Q4_K) {
			t = quant.Q5_K
		}
	case cat == catFFNDown:
		switch {
		case is("Q2_K"):
			t = quant.Q3_K
		case is("Q3_K_M"):
			t = quant.Q4_K
			if layer < n/16 {
				t = quant.Q5_K
			}
		case is("Q3_K_L"):
			t = quant.Q5_K
		case is("Q4_K_M"):
			if useMoreBits(layer, n) {
				t = quant.Q6_K
			}
		case is("Q5_K_M") && useMoreBits(layer, n):
			t = quant.Q6_K
		case is("Q4_K_S") && layer < n/8:
			t = quant.Q5_K
		}
	case cat == catAttnOutput:
		switch {
		case is("Q2_K"):
			t = quant.Q3_K
		case is("Q3_K_M"):
			t = quant.Q4_K
		case is("Q3_K_L"):
			t = quant.Q5_K
		}
	}
	t, err = fallback(t, cols)
	if err != nil {
		return 0, false, fmt.Errorf("tensor %s: %w", name, err)
	}
	return t, true, nil
}

// fallback replaces a type whose blocks do not divide a row of cols
// elements, as llama.cpp's tensor_type_fallback does.
func fallback(t quant.Type, cols int) (quant.Type, error) {
	if cols%t.BlockElems() == 0 {
		return t, nil
	}
	var f quant.Type
	switch t {
	case quant.Q2_K, quant.Q3_K:
		f = quant.Q4_0
	case quant.Q4_K:
		f = quant.Q5_0
	case quant.Q5_K:
		f = quant.Q5_1
	case quant.Q6_K:
		f = quant.Q8_0
	default:
		return 0, fmt.Errorf("a row of %d elements is not a whole number of %d-element %s blocks, and %s has no fallback type", cols, t.BlockElems(), t, t)
	}
	if cols%f.BlockElems() != 0 {
		f = quant.F16
	}
	return f, nil
}
