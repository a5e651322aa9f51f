package synth

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"offload/model"
)

// Planted contextual sparsity.
//
// With random weights every FFN neuron carries a similar share of the
// output, so a sparse model that keeps half of them is a poor draft (the
// bad-draft case). Real models are contextually sparse: for a given input
// only a few neurons have a large gate activation, and within one sequence
// it is mostly the same few (what Griffin exploits). A planted model has
// that structure by construction, still a plain Llama with the published
// shapes, so high-acceptance Sirius can be measured at real sizes:
//
//   - The residual stream reserves a few dimensions: 0 is a constant 1 (a
//     bias, as Llama has none), 1 a "salience" score that a quarter of the
//     vocabulary (the salient tokens) carries, and r "context" dimensions.
//     No layer writes into them except as said below.
//   - Layer 0's attention head 0 attends from every position to the most
//     salient token so far: its query is a large constant (read from the
//     bias dimension) and its key the salience, both on the slowest rotary
//     pair so that position barely matters. Its output, the value vector of
//     that token, is written into the context dimensions. The context is
//     therefore a property of the sequence (of its most salient token), the
//     same for every later position and different between prompts.
//   - Every gate row is a large multiple of (k_j·context - tau) with k_j a
//     random unit vector and tau the (1 - fraction) quantile of a standard
//     normal: for each input about the chosen fraction of neurons has a
//     large positive gate, the rest are far negative (silu ~ 0). A little
//     noise from the token dimensions keeps the rest near zero, not zero.
//   - Salient tokens are never generated (the LM head gives them a large
//     negative logit through the bias dimension; not with tied embeddings),
//     so the context, and hence the set of active neurons, stays fixed
//     after the prompt: per-sequence (Griffin) and per-token (top-k) sparse
//     drafts both find the active neurons.
//
// Norm weights are 1 and the down projection is scaled so that each FFN adds
// about unit variance per dimension to the residual, like attention. The LM
// head is scaled up so that next-token distributions are peaked as in real
// language models (random heads give nearly flat ones, under which even a
// perfect draft fails Sirius's likelihood threshold).

// plantedParams are the derived constants of a planted model.
type plantedParams struct {
	frac    float64
	r       int       // context dimensions: [2, 2+r)
	tau     float64   // gate threshold on k_j·context (standard units)
	gain    []float64 // per-layer gate gain
	down    float64   // down-projection scale
	beta    float64   // salience query
	lmBias  float64   // LM head's penalty on salient tokens
	seed    uint64
	dim     int
	headDim int
	hidden  int
}

const (
	plantedSharpness = 30   // gate gain in standard units of k_j·context
	plantedNoise     = 0.05 // token-dimension noise in the gate, same units
	salientShare     = 0.25 // share of the vocabulary that is salient
	plantedLogits    = 4    // LM head scale: logits with a standard deviation of about 4
)

func newPlanted(cfg model.Config, frac float64, seed uint64) (*plantedParams, error) {
	if !(frac > 0 && frac < 1) {
		return nil, fmt.Errorf("synth: planted fraction %v must be in (0, 1)", frac)
	}
	r := min(max(cfg.Dim/16, 8), 64)
	if cfg.Dim < 2+r+16 || cfg.HeadDim < 2 {
		return nil, fmt.Errorf("synth: planted sparsity needs a dim of at least %d (got %d)", 2+r+16, cfg.Dim)
	}
	p := &plantedParams{frac: frac, r: r, tau: normalQuantile(1 - frac), seed: seed,
		dim: cfg.Dim, headDim: cfg.HeadDim, hidden: cfg.Hidden}
	// The FFN at layer l reads a residual whose RMS is about sqrt(2+2l)
	// (embeddings and each attention and FFN output add about 1 each):
	// scale the gate by it so that the normalised gate stays this sharp.
	for l := range cfg.Layers {
		p.gain = append(p.gain, plantedSharpness*math.Sqrt(2+2*float64(l)))
	}
	// E[(x-tau)^2; x > tau] for a standard normal x: the mean square of an
	// active gate in standard units.
	tail := (1+p.tau*p.tau)*0.5*math.Erfc(p.tau/math.Sqrt2) - p.tau*math.Exp(-p.tau*p.tau/2)/math.Sqrt(2*math.Pi)
	p.down = 1 / (plantedSharpness * math.Sqrt(max(tail, 1e-12)))
	p.beta = 50 * math.Sqrt(float64(cfg.HeadDim))
	p.lmBias = 20 * math.Sqrt(1+2*float64(cfg.Layers))
	return p, nil
}

// normalQuantile is the standard normal quantile of q (bisection on erfc).
func normalQuantile(q float64) float64 {
	lo, hi := -10.0, 10.0
	for range 100 {
		mid := (lo + hi) / 2
		if 1-0.5*math.Erfc(mid/math.Sqrt2) < q {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// salience is token t's salience (0 for the ordinary three quarters of the
// vocabulary; BOS and EOS, ids 1 and 2, are never salient).
func (p *plantedParams) salience(t int) float64 {
	if t == 1 || t == 2 {
		return 0
	}
	x := xorshift(p.seed*0x9E3779B97F4A7C15 ^ uint64(t+1)*0xBF58476D1CE4E5B9 | 1)
	x.next()
	u := float64(x.next()>>11) / (1 << 53)
	if u >= salientShare {
		return 0
	}
	return 1 + u/salientShare // in [1, 2)
}

func (p *plantedParams) reserved(i int) bool { return i < 2+p.r }
func (p *plantedParams) context(i int) bool  { return i >= 2 && i < 2+p.r }

// tensorRole splits "model.layers.L.mlp.gate_proj.weight" into (L, "mlp.gate_proj");
// non-layer tensors get layer -1 and their full name without ".weight".
func tensorRole(name string) (int, string) {
	name = strings.TrimSuffix(name, ".weight")
	if rest, ok := strings.CutPrefix(name, "model.layers."); ok {
		if i := strings.IndexByte(rest, '.'); i > 0 {
			if l, err := strconv.Atoi(rest[:i]); err == nil {
				return l, rest[i+1:]
			}
		}
	}
	return -1, name
}

// row writes row r of tensor name into v, given the row's uniform draws u
// in [-1, 1) (the same draws the random model uses, so the planted model
// differs from the random one only where the structure needs it).
func (p *plantedParams) row(name string, r int, u []float64, v []float32) {
	layer, role := tensorRole(name)
	cols := len(u)
	rnd := func(scale float64) {
		for j, x := range u {
			v[j] = float32(x * scale)
		}
	}
	std := math.Sqrt(3 / float64(cols)) // variance 1/cols, as the random model
	hd := p.headDim
	slow := hd/2 - 1 // the slowest rotary pair is (hd/2-1, hd-1)
	switch role {
	case "model.embed_tokens":
		rnd(math.Sqrt(3)) // token dimensions with RMS 1
		clear(v[:2+p.r])
		v[0], v[1] = 1, float32(p.salience(r))
	case "lm_head":
		rnd(std * plantedLogits)
		v[1] = 0
		if p.salience(r) > 0 {
			v[0] = float32(-p.lmBias)
		}
	case "model.norm", "input_layernorm", "post_attention_layernorm":
		for j := range v {
			v[j] = 1
		}
	case "self_attn.q_proj":
		rnd(std)
		if layer == 0 && r/hd == 0 {
			clear(v)
			if r%hd == slow {
				v[0] = float32(p.beta)
			}
		}
	case "self_attn.k_proj":
		rnd(std)
		if layer == 0 && r/hd == 0 {
			clear(v)
			if r%hd == slow {
				v[1] = 1
			}
		}
	case "self_attn.v_proj":
		rnd(std)
		if layer == 0 && r/hd == 0 {
			clear(v[:2+p.r])
		}
	case "self_attn.o_proj":
		rnd(std)
		switch {
		case layer == 0 && p.context(r):
			// head 0's output, and only it, lands in the context
			clear(v)
			for j := range hd {
				v[j] = float32(u[j] * math.Sqrt(3/float64(hd)))
			}
		case p.reserved(r):
			clear(v)
		case layer == 0:
			clear(v[:hd])
		}
	case "mlp.gate_proj":
		g := p.gain[layer]
		ctx := u[2 : 2+p.r]
		var norm float64
		for _, x := range ctx {
			norm += x * x
		}
		norm = math.Sqrt(norm)
		if norm == 0 {
			norm = 1
		}
		tok := cols - 2 - p.r
		noise := plantedNoise * g * math.Sqrt(3/float64(tok))
		for j, x := range u {
			switch {
			case j == 0:
				v[j] = float32(-g * p.tau)
			case j == 1:
				v[j] = 0
			case p.context(j):
				v[j] = float32(g * x / norm)
			default:
				v[j] = float32(noise * x)
			}
		}
	case "mlp.down_proj":
		rnd(std * p.down)
		if p.reserved(r) {
			clear(v)
		}
	default: // up_proj
		rnd(std)
	}
}
