package pager

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"offload/internal/half"
)

func TestNonFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range []DType{F32, F16, BF16} {
		es := d.Size()
		for _, n := range []int{0, 1, 3, 7, 64, 1000, 4099} {
			for _, shift := range []int{0, es, 3 * es} { // aligned and misaligned starts
				buf := make([]byte, shift+n*es)
				data := buf[shift:]
				put := func(i int, v float32) {
					switch d {
					case F32:
						binary.LittleEndian.PutUint32(data[i*4:], math.Float32bits(v))
					case F16:
						binary.LittleEndian.PutUint16(data[i*2:], half.F32ToF16(v))
					case BF16:
						binary.LittleEndian.PutUint16(data[i*2:], half.F32ToBF16(v))
					}
				}
				for i := 0; i < n; i++ {
					put(i, float32(rng.NormFloat64()*1e3))
				}
				if got := NonFinite(d, data); got != -1 {
					t.Fatalf("%s n=%d: finite data flagged at %d", d, n, got)
				}
				if n == 0 {
					continue
				}
				for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
					at := rng.IntN(n)
					put(at, v)
					if got := NonFinite(d, data); got != at {
						t.Fatalf("%s n=%d shift=%d: %v at %d, found at %d", d, n, shift, v, at, got)
					}
					put(at, 1)
				}
			}
		}
	}
	// The largest finite values are finite.
	if NonFinite(F32, binary.LittleEndian.AppendUint32(nil, math.Float32bits(math.MaxFloat32))) != -1 ||
		NonFinite(F16, []byte{0xff, 0x7b}) != -1 || NonFinite(BF16, []byte{0x7f, 0x7f}) != -1 {
		t.Fatal("a maximal finite value was flagged")
	}
}

func BenchmarkNonFinite(b *testing.B) {
	for _, d := range []DType{F32, BF16} {
		data := make([]byte, 64<<20)
		b.Run(d.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if NonFinite(d, data) != -1 {
					b.Fatal("zeros flagged")
				}
			}
		})
	}
}

// TestNonFiniteQuantScales: a quantised block is finite unless one of its
// f16 scales is NaN or Inf; the first element of that block is reported.
func TestNonFiniteQuantScales(t *testing.T) {
	for d, offs := range quantScales {
		info := dtypes[d]
		data := make([]byte, 5*info.size)
		for i := range data {
			data[i] = 0x7f // quants of any value; scales 0x7f7f is a finite f16
		}
		for _, so := range offs {
			for i := 0; i < 5; i++ {
				binary.LittleEndian.PutUint16(data[i*info.size+so:], 0x3c00) // 1.0
			}
		}
		if got := NonFinite(d, data); got != -1 {
			t.Fatalf("%s: finite blocks flagged at %d", d, got)
		}
		for _, so := range offs {
			binary.LittleEndian.PutUint16(data[3*info.size+so:], 0x7e00) // NaN
			if got := NonFinite(d, data); got != 3*info.block {
				t.Fatalf("%s: NaN scale at offset %d of block 3 found at %d", d, so, got)
			}
			tn := &Tensor{Name: "w", DType: d, Shape: []int{1, 5 * info.block}, Data: data}
			if err := tn.CheckFinite(); err == nil || !strings.Contains(err.Error(), "scale") {
				t.Fatalf("%s: CheckFinite: %v", d, err)
			}
			binary.LittleEndian.PutUint16(data[3*info.size+so:], 0x3c00)
		}
	}
}
