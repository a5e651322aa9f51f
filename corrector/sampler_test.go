package corrector

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"offload/internal/fixtures"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "regenerate golden files (needs a C compiler for testdata/sampler_ref.c)")

// samplerConfigs are the (temperature, top-p, seed) settings held to run.c.
// The first is the one from the stories260K oracle run.
var samplerConfigs = []struct {
	temp, topp float64
	seed       uint64
}{
	{1.0, 0.9, 133742},
	{1.0, 0, 42},
	{1.0, 1.0, 5},
	{0.8, 0.95, 7},
	{1.5, 0.5, 99},
	{0.6, 0.99, 1},
	{2.0, 0.3, 123456789},
	{0, 0.9, 3},
}

// syntheticRows makes logit rows from our own RNG (so they never change):
// flat and peaked rows, rows with exact ties (quantised) and single spikes.
func syntheticRows(rows, vocab int) [][]float32 {
	rng := NewRNG(2024)
	scales := []float32{0.5, 2, 8, 20}
	out := make([][]float32, rows)
	for r := range out {
		row := make([]float32, vocab)
		for i := range row {
			row[i] = scales[r%len(scales)] * (2*rng.F32() - 1)
			if r%5 == 0 {
				row[i] = float32(math.Round(float64(row[i])))
			}
		}
		if r%7 == 0 {
			row[int(rng.U32())%vocab] += 15
		}
		out[r] = row
	}
	return out
}

func sampleRows(rows [][]float32) []string {
	var lines []string
	for _, c := range samplerConfigs {
		s := NewSampler(c.temp, c.topp, c.seed)
		var b strings.Builder
		fmt.Fprintf(&b, "%g %g %d:", c.temp, c.topp, c.seed)
		for _, row := range rows {
			before := append([]float32(nil), row...)
			fmt.Fprintf(&b, " %d", s.Sample(row))
			for i := range row {
				if math.Float32bits(row[i]) != math.Float32bits(before[i]) {
					panic("Sample modified its input")
				}
			}
		}
		lines = append(lines, b.String())
	}
	return lines
}

// checkAgainstRunC compares our sampler with the golden output of run.c's
// functions (testdata/sampler_ref.c) on rows; -update regenerates it.
func checkAgainstRunC(t *testing.T, rows [][]float32, golden string) {
	t.Helper()
	vocab := len(rows[0])
	path := filepath.Join("testdata", golden)
	if *update {
		dir := t.TempDir()
		in := filepath.Join(dir, "rows.f32")
		buf := make([]byte, 0, 4*vocab*len(rows))
		for _, row := range rows {
			for _, v := range row {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
		}
		if err := os.WriteFile(in, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "sampler_ref")
		if out, err := exec.Command("cc", "-O2", "-o", bin, filepath.Join("testdata", "sampler_ref.c"), "-lm").CombinedOutput(); err != nil {
			t.Fatalf("compiling sampler_ref.c: %v\n%s", err, out)
		}
		args := []string{in, strconv.Itoa(vocab)}
		for _, c := range samplerConfigs {
			args = append(args, fmt.Sprintf("%g", c.temp), fmt.Sprintf("%g", c.topp), strconv.FormatUint(c.seed, 10))
		}
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("running sampler_ref: %v", err)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update with a C compiler to create it)", err)
	}
	wantLines := strings.Split(strings.TrimSpace(string(want)), "\n")
	got := sampleRows(rows)
	if len(wantLines) != len(got) {
		t.Fatalf("%s: %d configurations, want %d", golden, len(got), len(wantLines))
	}
	for i := range got {
		if got[i] != wantLines[i] {
			t.Errorf("%s config %d differs from run.c:\n got %s\nwant %s", golden, i, got[i], wantLines[i])
		}
	}
}

func TestSamplerMatchesRunCSynthetic(t *testing.T) {
	checkAgainstRunC(t, syntheticRows(120, 512), "sampler_synthetic.golden")
}

// The 64 real logit rows of the stories260K greedy oracle run: peaked
// distributions where the top-p prefilter and sort do real work.
func TestSamplerMatchesRunCStories260K(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixtures.Shared(t), "models", "stories260K", "oracle_logits_once_upon_a_time_64x512.f32"))
	if err != nil {
		t.Fatal(err)
	}
	const vocab = 512
	if len(raw) != 64*vocab*4 {
		t.Fatalf("oracle logits: %d bytes, want %d", len(raw), 64*vocab*4)
	}
	rows := make([][]float32, 64)
	for r := range rows {
		rows[r] = make([]float32, vocab)
		for i := range rows[r] {
			rows[r][i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(r*vocab+i):]))
		}
	}
	checkAgainstRunC(t, rows, "sampler_stories260K.golden")
}

func TestRNGSeedZero(t *testing.T) {
	r := NewRNG(0)
	a, b := r.U32(), r.U32()
	if a == 0 && b == 0 {
		t.Fatal("seed 0 left the xorshift state at its fixed point")
	}
	if r2 := NewRNG(0); r2.U32() != a {
		t.Fatal("seed 0 is not deterministic")
	}
}

func TestRNGF32Range(t *testing.T) {
	r := NewRNG(133742)
	for range 100000 {
		if f := r.F32(); !(f >= 0 && f < 1) {
			t.Fatalf("F32 = %v outside [0,1)", f)
		}
	}
}

func TestArgmax(t *testing.T) {
	for _, tc := range []struct {
		x    []float32
		want int
	}{
		{[]float32{1, 3, 2}, 1},
		{[]float32{3, 3, 2}, 0},
		{[]float32{-1, -1, -0.5, -0.5}, 2},
		{[]float32{5}, 0},
	} {
		if got := Argmax(tc.x); got != tc.want {
			t.Errorf("Argmax(%v) = %d, want %d", tc.x, got, tc.want)
		}
	}
}

// Distribution must describe exactly what Sample draws from: the empirical
// frequencies of Sample converge to it, for plain and top-p sampling.
func TestDistributionMatchesSample(t *testing.T) {
	logits := []float32{2, 1.5, 1.5, 0, -1, 3, 0.2, -3}
	for _, topp := range []float64{0, 0.9, 0.6} {
		s := NewSampler(0.9, topp, 77)
		p := s.Distribution(nil, logits, nil)
		const trials = 200000
		counts := make([]int, len(logits))
		for range trials {
			counts[s.Sample(logits)]++
		}
		for i := range p {
			f := float64(counts[i]) / trials
			if math.Abs(f-p[i]) > 0.005 {
				t.Errorf("topp %v token %d: sampled %.4f, Distribution %.4f", topp, i, f, p[i])
			}
			if p[i] == 0 && counts[i] != 0 {
				t.Errorf("topp %v token %d: outside the nucleus but sampled %d times", topp, i, counts[i])
			}
		}
	}
}

func TestDistributionMask(t *testing.T) {
	logits := []float32{5, 1, 0, 0}
	g := NewSampler(0, 0, 1)
	if p := g.Distribution(nil, logits, []int{0}); p[1] != 1 || p[0] != 0 {
		t.Fatalf("greedy masked distribution %v, want one-hot on 1", p)
	}
	s := NewSampler(1, 0, 1)
	p := s.Distribution(nil, logits, []int{0})
	if p[0] != 0 {
		t.Fatalf("masked id has probability %v", p[0])
	}
	// Without token 0 the rest is softmax([1,0,0]).
	e := math.E
	want := []float64{0, e / (e + 2), 1 / (e + 2), 1 / (e + 2)}
	for i := range want {
		if math.Abs(p[i]-want[i]) > 1e-6 {
			t.Fatalf("p = %v, want %v", p, want)
		}
	}
}
