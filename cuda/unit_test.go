package cuda

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"offload/internal/emu"
)

func TestChooseTarget(t *testing.T) {
	debian := []int{35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90} // NVRTC 11.8
	cases := []struct {
		sm        int
		supported []int
		want      string
		wantErr   bool
	}{
		{90, debian, "sm_90", false},
		{89, debian, "sm_89", false},
		{80, debian, "sm_80", false},
		{100, debian, "compute_90", false},           // Blackwell on NVRTC 11.8: PTX, JIT by the driver
		{120, debian, "compute_90", false},           // consumer Blackwell
		{89, []int{75, 80, 86}, "compute_86", false}, // NVRTC 11.2-11.7 on an RTX 40xx
		{90, nil, "sm_90", false},                    // unknown list: ask for the card's arch
		{30, debian, "", true},                       // older than anything supported
	}
	for _, c := range cases {
		got, err := chooseTarget(c.sm, c.supported)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("chooseTarget(%d, %v) = %q, %v; want %q (error %v)", c.sm, c.supported, got, err, c.want, c.wantErr)
		}
	}
}

func TestKernelCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kernels")
	if img := readCache(dir, cacheKey("sm_90", "11.8")); img != nil {
		t.Fatal("empty cache returned an image")
	}
	cubin := []byte("\x7fELF cubin for sm_90")
	ptx := []byte(".version 7.8\n.target sm_86\x00")
	if err := writeCache(dir, cacheKey("sm_90", "11.8"), cubin); err != nil {
		t.Fatal(err)
	}
	if err := writeCache(dir, cacheKey("compute_86", "11.8"), ptx); err != nil {
		t.Fatal(err)
	}
	if err := writeCache(dir, cacheKey("compute_80", "11.8"), []byte("old ptx\x00")); err != nil {
		t.Fatal(err)
	}
	if got := readCache(dir, cacheKey("sm_90", "11.8")); !bytes.Equal(got, cubin) {
		t.Errorf("readCache = %q", got)
	}
	if got := readCache(dir, cacheKey("sm_90", "12.4")); got != nil {
		t.Error("an image made by another NVRTC version was returned")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	for _, c := range []struct {
		sm     int
		target string
		img    []byte
	}{
		{90, "sm_90", cubin},    // exact CUBIN
		{89, "compute_86", ptx}, // newest PTX at or below
		{86, "compute_86", ptx},
		{80, "compute_80", []byte("old ptx\x00")},
		{75, "", nil}, // nothing usable
	} {
		img, target := findCached(dir, c.sm)
		if target != c.target || !bytes.Equal(img, c.img) {
			t.Errorf("findCached(sm_%d) = %q (%d bytes), want %q", c.sm, target, len(img), c.target)
		}
	}
	// A different kernel source must not hit: the hash is in the name.
	if !strings.Contains(cacheKey("sm_90", "11.8"), sourceHash()) {
		t.Error("cache key lacks the source hash")
	}
}

func TestPackArgs(t *testing.T) {
	ka, err := packArgs("rmsnorm_f32", []any{devPtr(0x1000), devPtr(0x2000), devPtr(1<<40 + 8), int32(-3), float32(0.5)})
	if err != nil {
		t.Fatal(err)
	}
	defer ka.release()
	ptrs := unsafe.Slice((*unsafe.Pointer)(ka.params()), 5)
	if *(*uint64)(ptrs[2]) != 1<<40+8 || *(*int32)(ptrs[3]) != -3 || *(*float32)(ptrs[4]) != 0.5 {
		t.Errorf("packed values wrong: %#x %d %g", *(*uint64)(ptrs[2]), *(*int32)(ptrs[3]), *(*float32)(ptrs[4]))
	}
	bad := []struct {
		name string
		args []any
	}{
		{"nope", nil},
		{"add_f32", []any{devPtr(1), devPtr(2)}},           // too few
		{"add_f32", []any{devPtr(1), devPtr(2), int32(3)}}, // count must be 64-bit
		{"add_f32", []any{devPtr(1), uint64(2), int64(3)}}, // raw integer for a pointer
		{"rmsnorm_f32", []any{devPtr(1), devPtr(2), devPtr(3), int32(4), float64(1e-5)}},
	}
	for _, b := range bad {
		if ka, err := packArgs(b.name, b.args); err == nil {
			ka.release()
			t.Errorf("packArgs(%s, %v) accepted", b.name, b.args)
		}
	}
}

// TestEnvNamesMatchEmu: internal/emu sets the variables this package reads.
func TestEnvNamesMatchEmu(t *testing.T) {
	for _, p := range [][2]string{
		{emu.EnvLibCUDA, EnvLibCUDA}, {emu.EnvLibNVRTC, EnvLibNVRTC}, {emu.EnvLibCUBLAS, EnvLibCUBLAS},
		{emu.EnvKernelCache, EnvKernelCache},
	} {
		if p[0] != p[1] {
			t.Errorf("internal/emu sets %s, the backend reads %s", p[0], p[1])
		}
	}
}
