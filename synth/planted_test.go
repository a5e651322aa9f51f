package synth

import (
	"encoding/binary"
	"math"
	"slices"
	"sort"
	"testing"

	"offload/model"
	"offload/pager"
)

// f32s reads an f32 tensor.
func f32s(t *testing.T, x *pager.Tensor) []float64 {
	t.Helper()
	if x.DType != pager.F32 {
		t.Fatalf("%s: dtype %v, want f32", x.Name, x.DType)
	}
	out := make([]float64, len(x.Data)/4)
	for i := range out {
		out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(x.Data[4*i:])))
	}
	return out
}

func matvec(w []float64, rows, cols int, x []float64) []float64 {
	out := make([]float64, rows)
	for r := range rows {
		var s float64
		for c, v := range w[r*cols : (r+1)*cols] {
			s += v * x[c]
		}
		out[r] = s
	}
	return out
}

func rmsnorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i := range x {
		out[i] = x[i] * inv * w[i]
	}
	return out
}

// ropeHalf rotates pairs (v[i], v[i+hd/2]) of each head by pos*theta^(-2i/hd).
func ropeHalf(v []float64, hd, pos int, theta float64) {
	for h := 0; h < len(v); h += hd {
		for i := range hd / 2 {
			a := float64(pos) * math.Pow(theta, -2*float64(i)/float64(hd))
			x, y := v[h+i], v[h+i+hd/2]
			v[h+i], v[h+i+hd/2] = x*math.Cos(a)-y*math.Sin(a), x*math.Sin(a)+y*math.Cos(a)
		}
	}
}

// layer0Gates runs layer 0 of m over toks in float64 (a reference written
// apart from the engine) and returns, per position, the FFN gate
// pre-activations and the activations silu(gate)*up.
func layer0Gates(t *testing.T, m *model.Model, toks []int) (gates, acts [][]float64) {
	c := m.Config
	L := m.Layers[0]
	d, hd, H, KV, hid := c.Dim, c.HeadDim, c.Heads, c.KVHeads, c.Hidden
	emb, wq, wk, wv, wo := f32s(t, m.Embed), f32s(t, L.Q), f32s(t, L.K), f32s(t, L.V), f32s(t, L.O)
	an, fn, wg, wu := f32s(t, L.AttnNorm), f32s(t, L.FFNNorm), f32s(t, L.Gate), f32s(t, L.Up)
	eps, theta := float64(c.NormEps), float64(c.RopeTheta)
	var ks, vs [][]float64
	for pos, tok := range toks {
		x := emb[tok*d : (tok+1)*d]
		xn := rmsnorm(x, an, eps)
		q, k, v := matvec(wq, H*hd, d, xn), matvec(wk, KV*hd, d, xn), matvec(wv, KV*hd, d, xn)
		ropeHalf(q, hd, pos, theta)
		ropeHalf(k, hd, pos, theta)
		ks, vs = append(ks, k), append(vs, v)
		att := make([]float64, H*hd)
		for h := range H {
			kv := h / (H / KV)
			sc := make([]float64, pos+1)
			mx := math.Inf(-1)
			for j := range sc {
				for i := range hd {
					sc[j] += q[h*hd+i] * ks[j][kv*hd+i]
				}
				sc[j] /= math.Sqrt(float64(hd))
				mx = max(mx, sc[j])
			}
			var sum float64
			for j := range sc {
				sc[j] = math.Exp(sc[j] - mx)
				sum += sc[j]
			}
			for j := range sc {
				for i := range hd {
					att[h*hd+i] += sc[j] / sum * vs[j][kv*hd+i]
				}
			}
		}
		o := matvec(wo, d, H*hd, att)
		res := make([]float64, d)
		for i := range res {
			res[i] = x[i] + o[i]
		}
		fx := rmsnorm(res, fn, eps)
		g, u := matvec(wg, hid, d, fx), matvec(wu, hid, d, fx)
		a := make([]float64, hid)
		for j := range a {
			a[j] = g[j] / (1 + math.Exp(-g[j])) * u[j]
		}
		gates, acts = append(gates, g), append(acts, a)
	}
	return gates, acts
}

// topShare is the share of sum(a^2) held by the largest n entries.
func topShare(a []float64, n int) float64 {
	sq := make([]float64, len(a))
	var tot float64
	for i, v := range a {
		sq[i] = v * v
		tot += sq[i]
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(sq)))
	var top float64
	for _, v := range sq[:n] {
		top += v
	}
	return top / tot
}

func activeSet(g []float64) []int {
	var s []int
	for j, v := range g {
		if v > 0 {
			s = append(s, j)
		}
	}
	return s
}

// coverage is the share of sum(a^2) on the neurons in set.
func coverage(a []float64, set []int) float64 {
	var in, tot float64
	for j, v := range a {
		tot += v * v
		if slices.Contains(set, j) {
			in += v * v
		}
	}
	return in / tot
}

func smallShape(t *testing.T) model.Shape {
	s, err := model.LookupShape("llama-3-8b")
	if err != nil {
		t.Fatal(err)
	}
	s.Dim, s.Hidden, s.Heads, s.KVHeads, s.HeadDim = 256, 688, 4, 2, 64
	return s
}

// A planted model's layer-0 FFN has the chosen fraction of neurons active
// per input, holding nearly all the activation mass, and the neurons active
// at the sequence's most salient token carry the activations of every later
// position; random weights have neither property. Mass is sum(h^2): keeping
// a share s of it leaves an FFN output error of about sqrt(1-s).
func TestPlantedSparsity(t *testing.T) {
	const frac, vocab = 0.1, 100
	planted, random := t.TempDir(), t.TempDir()
	for _, w := range []struct {
		dir string
		p   float64
	}{{planted, frac}, {random, 0}} {
		if err := Write(w.dir, Options{Shape: smallShape(t), Layers: 2, Vocab: vocab, DType: "f32", Seed: 3, Planted: w.p}); err != nil {
			t.Fatal(err)
		}
	}
	pm, err := model.Open(planted)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	rm, err := model.Open(random)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	pp, err := newPlanted(pm.Config, frac, 3)
	if err != nil {
		t.Fatal(err)
	}
	hid := pm.Config.Hidden
	topN := int(frac * float64(hid))
	rng := xorshift(99)
	for prompt := range 4 {
		toks := make([]int, 24)
		last := -1 // position of the most salient token
		for i := range toks {
			toks[i] = 3 + int(rng.next()%(vocab-3))
			if s := pp.salience(toks[i]); s > 0 && (last < 0 || s > pp.salience(toks[last])) {
				last = i
			}
		}
		if last < 0 || last > 18 {
			continue // want a few positions after the salient token
		}
		gates, acts := layer0Gates(t, pm, toks)
		_, racts := layer0Gates(t, rm, toks)
		set := activeSet(gates[last])
		for pos := last; pos < len(toks); pos++ {
			active := float64(len(activeSet(gates[pos]))) / float64(hid)
			share, rshare := topShare(acts[pos], topN), topShare(racts[pos], topN)
			cov := coverage(acts[pos], set)
			if pos == last || pos == len(toks)-1 {
				t.Logf("prompt %d pos %d: %.3f active; top %d hold %.4f of the mass (random weights %.3f); the salient token's set holds %.4f",
					prompt, pos, active, topN, share, rshare, cov)
			}
			if active < frac/2 || active > 2*frac {
				t.Errorf("prompt %d pos %d: %.3f of neurons active, want about %v", prompt, pos, active, frac)
			}
			if share < 0.99 {
				t.Errorf("prompt %d pos %d: the top %d neurons hold only %.4f of the activation mass", prompt, pos, topN, share)
			}
			if rshare > 0.95 {
				t.Errorf("prompt %d pos %d: random weights are sparse too (%.3f): the comparison is void", prompt, pos, rshare)
			}
			if cov < 0.99 {
				t.Errorf("prompt %d pos %d: the salient token's active set holds %.4f of the mass only", prompt, pos, cov)
			}
		}
	}
}

// Planted models are deterministic and differ from the random ones only in
// the planted tensors' structure; bad fractions are errors.
func TestPlantedOptions(t *testing.T) {
	for _, f := range []float64{-0.1, 1, 1.5, math.NaN()} {
		if err := Write(t.TempDir(), Options{Shape: smallShape(t), Layers: 1, Vocab: 50, Planted: f}); err == nil {
			t.Errorf("planted %v: want an error", f)
		}
	}
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := Write(dir, Options{Shape: smallShape(t), Layers: 1, Vocab: 50, Seed: 5, Planted: 0.2}); err != nil {
			t.Fatal(err)
		}
	}
	ma, err := model.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := model.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if !slices.Equal(ma.Layers[0].Gate.Data, mb.Layers[0].Gate.Data) || ma.File.Meta["safetensors.metadata.offload.planted"] != "0.2" {
		t.Fatalf("two planted writes differ, or the metadata lacks offload.planted (%v)", ma.File.Meta)
	}
}
