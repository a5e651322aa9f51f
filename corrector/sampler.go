package corrector

import (
	"math"
	"slices"
)

// This file is the token sampler used by every decoding path (the engine's
// plain run too). It reproduces llama2.c run.c (karpathy/llama2.c, MIT) bit
// for bit: the xorshift RNG, the float32 softmax, multinomial sampling and
// top-p sampling with run.c's cut-off prefilter and descending sort. Matching
// it exactly is what lets `offload run` reproduce run.c's sampled outputs
// (testdata holds a golden file produced by a C transcription of run.c).

// RNG is run.c's xorshift64* generator (random_u32 / random_f32).
type RNG struct{ state uint64 }

// zeroSeed replaces seed 0: zero is a fixed point of xorshift (it would return
// 0 forever). run.c substitutes the wall clock there; we want runs with the
// same flags to repeat, so a constant is used and callers that want fresh
// randomness pass their own seed.
const zeroSeed = 0x9E3779B97F4A7C15

// NewRNG seeds the generator exactly as run.c does (the seed is the state).
func NewRNG(seed uint64) *RNG {
	if seed == 0 {
		seed = zeroSeed
	}
	return &RNG{state: seed}
}

// U32 is run.c's random_u32.
func (r *RNG) U32() uint32 {
	r.state ^= r.state >> 12
	r.state ^= r.state << 25
	r.state ^= r.state >> 27
	return uint32((r.state * 0x2545F4914F6CDD1D) >> 32)
}

// F32 is run.c's random_f32: a float32 in [0, 1) with 24 random bits.
func (r *RNG) F32() float32 {
	return float32(r.U32()>>8) / 16777216.0
}

// Argmax returns the index of the largest value, the lowest index on ties
// (run.c's sample_argmax; NaN never wins unless it is first).
func Argmax(x []float32) int {
	best := 0
	for i := 1; i < len(x); i++ {
		if x[i] > x[best] {
			best = i
		}
	}
	return best
}

// Softmax normalises x in place in float32 exactly as run.c's softmax: max
// subtraction, expf, a sequential float32 sum, then division.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	maxv := x[0]
	for _, v := range x[1:] {
		if v > maxv {
			maxv = v
		}
	}
	var sum float32
	for i, v := range x {
		e := expf(v - maxv)
		x[i] = e
		sum += e
	}
	for i := range x {
		x[i] /= sum
	}
}

// expf is float32 exp. Rounding the float64 result gives the correctly
// rounded value in all but astronomically rare double-rounding cases, which is
// what glibc's expf returns too.
func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

// SampleMult is run.c's sample_mult: the first index whose running float32
// CDF exceeds coin, the last index if rounding leaves the CDF short.
func SampleMult(probs []float32, coin float32) int {
	var cdf float32
	for i, p := range probs {
		cdf += p
		if coin < cdf {
			return i
		}
	}
	return len(probs) - 1
}

type probIndex struct {
	prob  float32
	index int
}

// Sampler turns logits into a token id: greedy when Temperature is 0,
// otherwise temperature + softmax + (top-p or plain multinomial) with one RNG
// draw per sampled token, as run.c's sample(). It keeps its own scratch, so it
// never modifies the caller's logits (run.c divides them in place). Not safe
// for concurrent use.
type Sampler struct {
	// Temperature and TopP are float32 because run.c computes with floats;
	// float64 would round differently.
	Temperature float32
	TopP        float32
	RNG         *RNG

	probs []float32
	pi    []probIndex
}

// NewSampler returns a sampler with run.c's semantics for the given settings.
func NewSampler(temperature, topP float64, seed uint64) *Sampler {
	return &Sampler{Temperature: float32(temperature), TopP: float32(topP), RNG: NewRNG(seed)}
}

// Greedy reports whether the sampler takes the argmax (temperature 0).
func (s *Sampler) Greedy() bool { return s.Temperature == 0 }

// Sample picks the next token from logits.
func (s *Sampler) Sample(logits []float32) int {
	if s.Temperature == 0 {
		return Argmax(logits)
	}
	probs := s.softmaxT(logits)
	coin := s.RNG.F32()
	if s.TopP <= 0 || s.TopP >= 1 {
		return SampleMult(probs, coin)
	}
	return s.sampleTopP(probs, coin)
}

// softmaxT is softmax(logits / Temperature) into the scratch buffer.
func (s *Sampler) softmaxT(logits []float32) []float32 {
	s.probs = slices.Grow(s.probs[:0], len(logits))[:len(logits)]
	for i, v := range logits {
		s.probs[i] = v / s.Temperature
	}
	Softmax(s.probs)
	return s.probs
}

// candidates fills s.pi with run.c's top-p candidate list: the probabilities
// at or above (1-topp)/(n-1) (smaller ones cannot be in the nucleus), sorted
// by probability descending. run.c uses glibc qsort, which for these sizes is
// a stable merge sort, so equal probabilities stay in index order: a stable
// sort here reproduces it.
func (s *Sampler) candidates(probs []float32) {
	n := len(probs)
	cutoff := (1 - s.TopP) / float32(n-1)
	s.pi = s.pi[:0]
	for i, p := range probs {
		if p >= cutoff {
			s.pi = append(s.pi, probIndex{p, i})
		}
	}
	slices.SortStableFunc(s.pi, func(a, b probIndex) int {
		switch {
		case a.prob > b.prob:
			return -1
		case a.prob < b.prob:
			return 1
		}
		return 0
	})
}

// nucleus returns the index of the last candidate kept by top-p and the
// float32 cumulative probability up to it, as run.c computes them.
func (s *Sampler) nucleus() (last int, cum float32) {
	last = len(s.pi) - 1 // rounding errors: consider everything
	for i, c := range s.pi {
		cum += c.prob
		if cum > s.TopP {
			return i, cum
		}
	}
	return last, cum
}

// sampleTopP is run.c's sample_topp.
func (s *Sampler) sampleTopP(probs []float32, coin float32) int {
	s.candidates(probs)
	last, cum := s.nucleus()
	r := coin * cum
	var cdf float32
	for i := 0; i <= last; i++ {
		cdf += s.pi[i].prob
		if r < cdf {
			return s.pi[i].index
		}
	}
	return s.pi[last].index
}

// Distribution writes into dst (grown to len(logits)) the probabilities with
// which Sample would pick each token, excluding the ids in mask: softmax at
// the temperature, restricted to the top-p nucleus and renormalised. Masked
// ids get probability 0 and the rest are renormalised before the nucleus is
// taken, as if their logits were -inf. Speculative sampling needs these
// explicit vectors (accept with p_full/p_sparse, resample from the residual).
// With Temperature 0 it is the one-hot vector of the (unmasked) argmax.
// Values are float64 because acceptance ratios and residuals are differences
// of probabilities.
func (s *Sampler) Distribution(dst []float64, logits []float32, mask []int) []float64 {
	n := len(logits)
	dst = slices.Grow(dst[:0], n)[:n]
	clear(dst)
	masked := func(i int) bool { return slices.Contains(mask, i) }
	if s.Temperature == 0 {
		best := -1
		for i, v := range logits {
			if !masked(i) && (best < 0 || v > logits[best]) {
				best = i
			}
		}
		if best >= 0 {
			dst[best] = 1
		}
		return dst
	}
	s.probs = slices.Grow(s.probs[:0], n)[:n]
	for i, v := range logits {
		s.probs[i] = v / s.Temperature
	}
	for _, m := range mask {
		if m >= 0 && m < n {
			s.probs[m] = float32(math.Inf(-1))
		}
	}
	Softmax(s.probs)
	if s.TopP <= 0 || s.TopP >= 1 {
		for i, p := range s.probs {
			dst[i] = float64(p)
		}
		return normalize(dst)
	}
	s.candidates(s.probs)
	last, _ := s.nucleus()
	for _, c := range s.pi[:last+1] {
		dst[c.index] = float64(c.prob)
	}
	return normalize(dst)
}

// normalize scales p to sum to 1 (left alone when the sum is not positive).
func normalize(p []float64) []float64 {
	var sum float64
	for _, v := range p {
		sum += v
	}
	if sum > 0 {
		for i := range p {
			p[i] /= sum
		}
	}
	return p
}

// sampleDist draws an index from a probability vector with one RNG draw.
func sampleDist(p []float64, coin float32) int {
	c := float64(coin)
	var cdf float64
	last := -1
	for i, v := range p {
		if v <= 0 {
			continue
		}
		cdf += v
		last = i
		if c < cdf {
			return i
		}
	}
	if last < 0 {
		return 0
	}
	return last
}
