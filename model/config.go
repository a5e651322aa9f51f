// Package model is the Llama architecture: its configuration (Config, the
// one mapping from a weight file's metadata, and the published Shapes), the
// model opened for inference (Open: every tensor checked for presence, dtype
// and shape, so a bad file fails once, clearly), and the forward pass of a
// block written over device operations (llama.go). It knows nothing of
// residency or streaming: the engine decides where each weight comes from and
// hands the layer math device tensors.
package model

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"offload/device"
)

// Config is the architecture of a Llama-family model: everything the forward
// pass and the planners need, and nothing about where the weights live.
type Config struct {
	Arch      string // "llama"
	Dim       int    // hidden size (embedding width)
	Hidden    int    // FFN intermediate size (number of FFN neurons per layer)
	Layers    int
	Heads     int // query heads
	KVHeads   int // key/value heads (GQA when < Heads)
	HeadDim   int // usually Dim / Heads
	Vocab     int
	MaxSeq    int // context length the cache is sized for
	RopeTheta float32
	RopeStyle device.RopeStyle
	NormEps   float32
	// TiedEmbeddings: the LM head reuses the token embedding matrix.
	TiedEmbeddings bool
	// RopeFreqs, when set, are the headDim/2 inverse frequencies of a
	// scaled RoPE (Llama 3.1's rope_freqs, linear scaling), used instead of
	// RopeTheta's theta^(-2i/headDim).
	RopeFreqs []float32
}

// KVDim is the width of one position's keys (or values).
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim }

// Validate checks that the numbers describe a model this runtime can run.
func (c Config) Validate() error {
	switch {
	case c.Dim <= 0, c.Hidden <= 0, c.Layers <= 0, c.Heads <= 0, c.KVHeads <= 0, c.Vocab <= 0, c.HeadDim <= 0:
		return fmt.Errorf("config: dims must be positive (dim %d, hidden %d, layers %d, heads %d, kv heads %d, head dim %d, vocab %d)",
			c.Dim, c.Hidden, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.Vocab)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("config: %d query heads is not a multiple of %d kv heads", c.Heads, c.KVHeads)
	case c.HeadDim%2 != 0:
		return fmt.Errorf("config: head dim %d is odd, RoPE needs pairs", c.HeadDim)
	case c.Dim > 1<<20, c.Hidden > 1<<22, c.Layers > 1<<12, c.Vocab > 1<<24, c.Heads > 1<<12:
		return fmt.Errorf("config: implausible size (dim %d, hidden %d, layers %d, vocab %d, heads %d)", c.Dim, c.Hidden, c.Layers, c.Vocab, c.Heads)
	case !(c.NormEps > 0 && c.NormEps <= 1):
		// RMSNorm divides by sqrt(mean(x^2) + eps): NaN poisons every
		// activation, a negative eps can take the root of a negative.
		return fmt.Errorf("config: RMS norm epsilon %g must be in (0, 1]", c.NormEps)
	case c.RopeFreqs == nil && !(c.RopeTheta > 0 && c.RopeTheta <= math.MaxFloat32):
		return fmt.Errorf("config: RoPE theta %g must be positive and finite", c.RopeTheta)
	case c.MaxSeq < 0 || c.MaxSeq > 1<<24:
		return fmt.Errorf("config: context length %d outside [0, %d]", c.MaxSeq, 1<<24)
	}
	for i, f := range c.RopeFreqs {
		if !(f > 0 && f <= math.MaxFloat32) {
			return fmt.Errorf("config: RoPE frequency %d is %g, not positive and finite", i, f)
		}
	}
	return nil
}

// Shape is a named, published architecture used by `offload synth` and
// `offload plan --shape`.
type Shape struct {
	Name string
	Config
}

// LayerParams is the number of weights in one transformer block.
func (c Config) LayerParams() (attn, ffn, norms int64) {
	d, kv := int64(c.Dim), int64(c.KVDim())
	q := int64(c.Heads * c.HeadDim)
	attn = d*q + 2*d*kv + q*d
	ffn = 3 * d * int64(c.Hidden)
	norms = 2 * d
	return
}

// Params is the total number of weights.
func (c Config) Params() int64 {
	a, f, n := c.LayerParams()
	p := int64(c.Layers)*(a+f+n) + int64(c.Vocab)*int64(c.Dim) + int64(c.Dim)
	if !c.TiedEmbeddings {
		p += int64(c.Vocab) * int64(c.Dim)
	}
	return p
}

func shape(name string, dim, hidden, layers, heads, kv, vocab, seq int, theta float32, eps float32, tied bool) Shape {
	return Shape{Name: name, Config: Config{Arch: "llama", Dim: dim, Hidden: hidden, Layers: layers, Heads: heads, KVHeads: kv,
		HeadDim: dim / heads, Vocab: vocab, MaxSeq: seq, RopeTheta: theta, RopeStyle: device.RopeHalf, NormEps: eps, TiedEmbeddings: tied}}
}

// Shapes are the published configurations (from each model's config.json).
var Shapes = []Shape{
	shape("tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000, 1e-5, false),
	shape("llama-2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000, 1e-5, false),
	shape("llama-2-13b", 5120, 13824, 40, 40, 40, 32000, 4096, 10000, 1e-5, false),
	shape("llama-2-70b", 8192, 28672, 80, 64, 8, 32000, 4096, 10000, 1e-5, false),
	shape("llama-3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000, 1e-5, false),
	shape("llama-3-70b", 8192, 28672, 80, 64, 8, 128256, 8192, 500000, 1e-5, false),
	shape("llama-3.1-8b", 4096, 14336, 32, 32, 8, 128256, 131072, 500000, 1e-5, false),
	shape("llama-3.1-70b", 8192, 28672, 80, 64, 8, 128256, 131072, 500000, 1e-5, false),
	shape("llama-3.1-405b", 16384, 53248, 126, 128, 8, 128256, 131072, 500000, 1e-5, false),
}

// LookupShape finds a built-in shape by name (case-insensitive).
func LookupShape(name string) (Shape, error) {
	for _, s := range Shapes {
		if strings.EqualFold(s.Name, name) {
			return s, nil
		}
	}
	names := make([]string, len(Shapes))
	for i, s := range Shapes {
		names[i] = s.Name
	}
	sort.Strings(names)
	return Shape{}, fmt.Errorf("unknown shape %q (known: %s)", name, strings.Join(names, ", "))
}
