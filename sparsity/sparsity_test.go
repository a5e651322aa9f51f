package sparsity

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestKeepCount(t *testing.T) {
	for _, tc := range []struct {
		keep   float64
		hidden int
		want   int
	}{
		{0.5, 10, 5},
		{0.5, 11, 6}, // 5.5 rounds half away from zero
		{0.25, 28672, 7168},
		{1, 7, 7},
		{1.5, 7, 7},
		{0.01, 7, 1}, // round(0.07) = 0, clamped up to 1
		{0, 7, 1},
		{-1, 7, 1},
		{math.NaN(), 7, 1},
		{0.5, 0, 0},
		{0.5, -3, 0},
	} {
		if got := KeepCount(tc.keep, tc.hidden); got != tc.want {
			t.Errorf("KeepCount(%v, %d) = %d, want %d", tc.keep, tc.hidden, got, tc.want)
		}
	}
}

func TestCheckKeep(t *testing.T) {
	for _, tc := range []struct {
		keep float64
		ok   bool
	}{{0.5, true}, {1, true}, {1e-9, true}, {0, false}, {-0.1, false}, {1.01, false}, {math.NaN(), false}, {math.Inf(1), false}} {
		err := CheckKeep(tc.keep)
		if (err == nil) != tc.ok {
			t.Errorf("CheckKeep(%v) = %v, want ok=%v", tc.keep, err, tc.ok)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Policy
		err  bool
	}{
		{"griffin", PolicyGriffin, false},
		{" TopK ", PolicyTopK, false},
		{"dense", PolicyDense, false},
		{"cats", "", true},
		{"", "", true},
	} {
		got, err := ParsePolicy(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParsePolicy(%q) = %q, want error", tc.in, got)
				continue
			}
			for _, name := range []string{"griffin", "topk", "dense"} {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("ParsePolicy(%q) error %q does not list %q", tc.in, err, name)
				}
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// refTopKAbs is the obvious O(n log n) definition TopKAbs must agree with.
func refTopKAbs(a []float32, k int) []int32 {
	idx := make([]int32, len(a))
	for i := range idx {
		idx[i] = int32(i)
	}
	key := func(i int32) float64 {
		v := a[i]
		if v != v {
			return -1
		}
		return math.Abs(float64(v))
	}
	slices.SortStableFunc(idx, func(x, y int32) int {
		kx, ky := key(x), key(y)
		switch {
		case kx > ky:
			return -1
		case kx < ky:
			return 1
		}
		return 0
	})
	k = min(max(k, 0), len(a))
	out := slices.Clone(idx[:k])
	slices.Sort(out)
	return out
}

func TestTopKAbs(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		name string
		a    []float32
		k    int
		want []int32
	}{
		{"basic", []float32{0.1, -3, 2, 0.5, -0.2}, 2, []int32{1, 2}},
		{"ties to lower index", []float32{1, -1, 1, 1}, 2, []int32{0, 1}},
		{"all", []float32{3, 1, 2}, 3, []int32{0, 1, 2}},
		{"more than all", []float32{3, 1, 2}, 9, []int32{0, 1, 2}},
		{"zero", []float32{3, 1, 2}, 0, nil},
		{"negative k", []float32{3, 1, 2}, -1, nil},
		{"empty", nil, 3, nil},
		{"nan last", []float32{nan, 0, -1, nan}, 2, []int32{1, 2}},
		{"inf first", []float32{1, -inf, 2}, 1, []int32{1}},
		{"signed zeros tie", []float32{0, float32(math.Copysign(0, -1)), 0}, 2, []int32{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := TopKAbs(tc.a, tc.k)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("TopKAbs(%v, %d) = %v, want %v", tc.a, tc.k, got, tc.want)
			}
			if ref := refTopKAbs(tc.a, tc.k); !slices.Equal(ref, tc.want) {
				t.Fatalf("reference disagrees with the table: %v", ref)
			}
		})
	}
}

func TestTopKAbsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var s Selector
	var dst []int32
	for trial := range 500 {
		n := r.IntN(300)
		a := make([]float32, n)
		for i := range a {
			switch r.IntN(4) {
			case 0:
				a[i] = float32(r.IntN(5) - 2) // many ties
			default:
				a[i] = float32(r.NormFloat64())
			}
		}
		k := r.IntN(n + 2)
		dst = s.TopKAbs(dst, a, k)
		if want := refTopKAbs(a, k); !slices.Equal(dst, want) {
			t.Fatalf("trial %d n=%d k=%d: got %v want %v", trial, n, k, dst, want)
		}
	}
}

// Sorted and reverse-sorted inputs are the classic quickselect worst cases;
// the result must still be right (the depth limit bounds the time).
func TestTopKAbsAdversarial(t *testing.T) {
	const n = 4096
	for _, name := range []string{"ascending", "descending", "constant", "organ"} {
		a := make([]float32, n)
		for i := range a {
			switch name {
			case "ascending":
				a[i] = float32(i)
			case "descending":
				a[i] = float32(n - i)
			case "constant":
				a[i] = 1
			case "organ":
				a[i] = float32(min(i, n-i))
			}
		}
		for _, k := range []int{1, n / 3, n / 2, n - 1} {
			if got, want := TopKAbs(a, k), refTopKAbs(a, k); !slices.Equal(got, want) {
				t.Fatalf("%s k=%d: mismatch", name, k)
			}
		}
	}
}

func FuzzTopKAbs(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(2))
	f.Add([]byte{0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0x3f, 0, 0, 0x80, 0xbf}, uint8(1)) // NaN, 1, -1
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, k uint8) {
		a := make([]float32, len(raw)/4)
		for i := range a {
			b := raw[4*i:]
			a[i] = math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
		}
		if got, want := TopKAbs(a, int(k)), refTopKAbs(a, int(k)); !slices.Equal(got, want) {
			t.Fatalf("TopKAbs(%v, %d) = %v, want %v", a, k, got, want)
		}
	})
}

func TestTopKAbsSum(t *testing.T) {
	a := []float32{
		1, -5, 0, 2,
		-4, 0, 1, 2,
	} // column sums of |a|: 5, 5, 1, 4
	if got, want := TopKAbsSum(a, 2, 2), []int32{0, 1}; !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if got, want := TopKAbsSum(a, 2, 3), []int32{0, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if got := TopKAbsSum(a, 3, 2); got != nil {
		t.Fatalf("ragged rows: got %v, want nil", got)
	}
	if got, want := TopKAbsSum(a[:4], 1, 2), TopKAbs(a[:4], 2); !slices.Equal(got, want) {
		t.Fatalf("one row: got %v, TopKAbs says %v", got, want)
	}
}

// directGriffin is the formula from REFERENCE.md §1 computed the plain way.
func directGriffin(h []float32, rows, hidden int) []float64 {
	stat := make([]float64, hidden)
	for j := range hidden {
		var s float64
		for r := range rows {
			var norm float64
			for _, v := range h[r*hidden : (r+1)*hidden] {
				norm += float64(v) * float64(v)
			}
			norm = math.Sqrt(norm)
			if norm == 0 {
				continue
			}
			x := float64(h[r*hidden+j]) / norm
			s += x * x
		}
		stat[j] = math.Sqrt(s)
	}
	return stat
}

func TestGriffinMatchesDirect(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const hidden = 64
	g := NewGriffin(hidden)
	var all []float32
	rows := 0
	for batch := range 4 { // several Add calls, as prefill chunks would make
		n := batch + 1
		h := make([]float32, n*hidden)
		for i := range h {
			h[i] = float32(r.NormFloat64() * float64(1+i%7)) // uneven neurons
		}
		if err := g.Add(h, n); err != nil {
			t.Fatal(err)
		}
		all = append(all, h...)
		rows += n
	}
	want := directGriffin(all, rows, hidden)
	got := g.Stats()
	for j := range want {
		if math.Abs(got[j]-want[j]) > 1e-12 {
			t.Fatalf("stat[%d] = %v, want %v", j, got[j], want[j])
		}
	}
	if g.Tokens() != rows {
		t.Fatalf("Tokens = %d, want %d", g.Tokens(), rows)
	}
	for _, keep := range []float64{0.1, 0.5, 0.9, 1} {
		k := KeepCount(keep, hidden)
		idx := make([]int32, hidden)
		for i := range idx {
			idx[i] = int32(i)
		}
		slices.SortStableFunc(idx, func(a, b int32) int {
			switch {
			case want[a] > want[b]:
				return -1
			case want[a] < want[b]:
				return 1
			}
			return 0
		})
		ref := slices.Clone(idx[:k])
		slices.Sort(ref)
		if sel := g.Select(keep); !slices.Equal(sel, ref) {
			t.Fatalf("Select(%v) = %v, want %v", keep, sel, ref)
		}
	}
}

func TestGriffinTable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hidden   int
		rows     [][]float32
		keep     float64
		want     []int32
		skipped  int
		addError bool
	}{
		// Normalisation: the huge second token must not dominate. Token 1 is
		// all on neuron 0, token 2 all on neuron 1, token 3 splits 2 and 3.
		{"normalised", 4, [][]float32{{1, 0, 0, 0}, {0, 1000, 0, 0}, {0, 0, 3, 3}}, 0.5, []int32{0, 1}, 0, false},
		{"ties to lower index", 4, [][]float32{{1, 1, 1, 1}}, 0.5, []int32{0, 1}, 0, false},
		{"no data", 3, nil, 0.5, []int32{0, 1}, 0, false},
		{"zero and nan rows skipped", 3, [][]float32{{0, 0, 0}, {float32(math.NaN()), 1, 1}, {0, 0, 2}}, 0.34, []int32{2}, 2, false},
		{"sorted ascending", 5, [][]float32{{0, 0, 0, 5, 4}, {3, 0, 0, 5, 4}}, 0.6, []int32{0, 3, 4}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGriffin(tc.hidden)
			for _, row := range tc.rows {
				if err := g.Add(row, 1); err != nil {
					t.Fatal(err)
				}
			}
			if got := g.Select(tc.keep); !slices.Equal(got, tc.want) {
				t.Fatalf("Select = %v, want %v (stats %v)", got, tc.want, g.Stats())
			}
			if g.Skipped() != tc.skipped {
				t.Fatalf("Skipped = %d, want %d", g.Skipped(), tc.skipped)
			}
			g.Reset()
			if g.Tokens() != 0 || g.Skipped() != 0 || slices.Max(append(g.Stats(), 0)) != 0 {
				t.Fatal("Reset left statistics behind")
			}
		})
	}
	g := NewGriffin(4)
	if err := g.Add(make([]float32, 7), 2); err == nil {
		t.Fatal("Add with a ragged buffer: want error")
	}
	if err := g.Add(nil, -1); err == nil {
		t.Fatal("Add with negative rows: want error")
	}
}

func TestCalibrateThreshold(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples [][]float32
		keep    float64
		want    float32
		above   int // how many values pass
	}{
		{"half", [][]float32{{1, -2, 3}, {-4, 5, 6, 7, 8}}, 0.5, 4, 4},
		{"quarter", [][]float32{{1, 2, 3, 4, 5, 6, 7, 8}}, 0.25, 6, 2},
		{"ties pass fewer", [][]float32{{1, 2, 2, 2}}, 0.5, 2, 0},
		{"all", [][]float32{{3, 1, 2}}, 1, math.Nextafter32(1, -1), 3},
		{"nan ignored", [][]float32{{float32(math.NaN()), 1, 2}}, 0.5, 1, 1},
		{"empty", nil, 0.5, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CalibrateThreshold(tc.samples, tc.keep)
			if got != tc.want {
				t.Fatalf("threshold = %v, want %v", got, tc.want)
			}
			n := 0
			for _, s := range tc.samples {
				n += len(AboveThreshold(s, got))
			}
			if n != tc.above {
				t.Fatalf("%d values above, want %d", n, tc.above)
			}
		})
	}
}

func TestCalibrateThresholdRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	samples := make([][]float32, 50)
	for i := range samples {
		samples[i] = make([]float32, 1000)
		for j := range samples[i] {
			samples[i][j] = float32(r.NormFloat64())
		}
	}
	for _, keep := range []float64{0.1, 0.5, 0.75} {
		th := CalibrateThreshold(samples, keep)
		n := 0
		for _, s := range samples {
			idx := AboveThreshold(s, th)
			if !slices.IsSorted(idx) {
				t.Fatal("AboveThreshold not ascending")
			}
			n += len(idx)
		}
		if want := KeepCount(keep, 50000); n != want { // continuous values: no ties
			t.Fatalf("keep %v: %d above, want %d", keep, n, want)
		}
	}
}

func BenchmarkTopKAbs(b *testing.B) {
	const hidden = 28672 // Llama-3-70B FFN width
	r := rand.New(rand.NewPCG(7, 8))
	a := make([]float32, hidden)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	var s Selector
	var dst []int32
	b.SetBytes(hidden * 4)
	for b.Loop() {
		dst = s.TopKAbs(dst, a, hidden/2)
	}
}
