package cuda

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// testCompiler loads NVRTC or skips; in CI (CI=true) a missing NVRTC is a
// failure, since .ci/install-nvrtc.sh installs Debian's libnvrtc there.
func testCompiler(t *testing.T) *Compiler {
	t.Helper()
	c, err := NewCompiler("")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but NVRTC is not loadable (run .ci/install-nvrtc.sh): %v", err)
		}
		t.Skipf("NVRTC not installed (run .ci/install-nvrtc.sh): %v", err)
	}
	return c
}

// ciArchs are the cards the backend must serve: A100 (sm_80), RTX 30xx/A10
// (sm_86), RTX 40xx/L4/L40 (sm_89) and H100/H200 (sm_90).
var ciArchs = []int{80, 86, 89, 90}

// TestCompileAllKernels compiles every embedded kernel for each target arch
// and fails on any error or warning. When this NVRTC does not know an arch,
// the test asserts the documented fallback (PTX for the newest virtual arch
// below it) and compiles that instead.
func TestCompileAllKernels(t *testing.T) {
	c := testCompiler(t)
	t.Logf("NVRTC %s (%s), supported archs %v (query error: %v)", c.Version(), c.Path(), c.SupportedArchs(), c.archsErr)
	for _, sm := range ciArchs {
		t.Run(fmt.Sprintf("sm_%d", sm), func(t *testing.T) {
			t.Parallel() // NVRTC takes seconds per arch; two cores halve it
			target, err := c.Target(sm)
			if err != nil {
				t.Fatal(err)
			}
			known := false
			for _, a := range c.SupportedArchs() {
				known = known || a == sm
			}
			want := fmt.Sprintf("sm_%d", sm)
			if !known && c.SupportedArchs() != nil {
				if !strings.HasPrefix(target, "compute_") {
					t.Fatalf("NVRTC does not know sm_%d but Target chose %s, want a compute_XX PTX fallback", sm, target)
				}
				t.Logf("NVRTC %s lacks sm_%d: falling back to %s PTX (driver JIT)", c.Version(), sm, target)
			} else if target != want {
				t.Fatalf("Target(%d) = %s, want %s", sm, target, want)
			}
			img, log, err := c.Compile(target)
			if err != nil {
				t.Fatal(err)
			}
			if log != "" {
				t.Fatalf("NVRTC warnings for %s:\n%s", target, log)
			}
			if strings.HasPrefix(target, "sm_") && !bytes.HasPrefix(img, []byte("\x7fELF")) {
				t.Fatalf("CUBIN for %s is not an ELF image (%d bytes)", target, len(img))
			}
			t.Logf("%s: %d bytes", target, len(img))
			cacheForGPU(t, c, target, img)
		})
	}
	// Cards newer than this NVRTC (e.g. Blackwell on 11.8) get PTX for the
	// newest virtual arch it has, JIT-compiled by their driver.
	t.Run("newer-card", func(t *testing.T) {
		t.Parallel()
		target, err := c.Target(1000)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(target, "compute_") {
			t.Fatalf("Target(1000) = %s, want compute_XX PTX", target)
		}
		img, log, err := c.Compile(target)
		if err != nil {
			t.Fatal(err)
		}
		if log != "" {
			t.Fatalf("NVRTC warnings for %s:\n%s", target, log)
		}
		if !bytes.Contains(img, []byte(".entry attention")) {
			t.Fatalf("%s PTX lacks the attention kernel", target)
		}
		cacheForGPU(t, c, target, img)
	})
}

// cacheForGPU stores img in $OFFLOAD_KERNEL_CACHE when that is set:
// scripts/gpu-check.sh fills bin/kernels this way, so that a GPU machine
// without NVRTC loads kernels compiled here.
func cacheForGPU(t *testing.T, c *Compiler, target string, img []byte) {
	dir := os.Getenv("OFFLOAD_KERNEL_CACHE")
	if dir == "" {
		return
	}
	if err := writeCache(dir, cacheKey(target, c.Version()), img); err != nil {
		t.Fatal(err)
	}
}

var (
	ptxEntry = regexp.MustCompile(`(?s)\.entry\s+(\w+)\s*\((.*?)\)`)
	ptxParam = regexp.MustCompile(`\.param\s+\.(\w+)\s+\w+`)
)

// TestKernelSignaturesMatchPTX parses the .entry declarations of the PTX
// NVRTC emits and checks each against kernelSigs, the table launch packs
// arguments by: a mismatch would pass garbage to a kernel on a real GPU.
func TestKernelSignaturesMatchPTX(t *testing.T) {
	c := testCompiler(t)
	img, log, err := c.Compile("compute_80")
	if err != nil {
		t.Fatal(err)
	}
	if log != "" {
		t.Fatalf("NVRTC warnings:\n%s", log)
	}
	found := map[string]bool{}
	for _, m := range ptxEntry.FindAllStringSubmatch(string(img), -1) {
		name := m[1]
		sig, ok := kernelSigs[name]
		if !ok {
			t.Errorf("PTX has kernel %s that kernelSigs lacks", name)
			continue
		}
		found[name] = true
		var got []string
		for _, p := range ptxParam.FindAllStringSubmatch(m[2], -1) {
			got = append(got, p[1])
		}
		if len(got) != len(sig) {
			t.Errorf("%s: PTX has %d params %v, kernelSigs %d %v", name, len(got), got, len(sig), sig)
			continue
		}
		for i, ty := range got {
			var ok bool
			switch sig[i] {
			case pPtr, pI64:
				ok = ty == "u64" || ty == "s64" || ty == "b64"
			case pI32:
				ok = ty == "u32" || ty == "s32" || ty == "b32"
			case pF32:
				ok = ty == "f32"
			}
			if !ok {
				t.Errorf("%s param %d: PTX .%s, kernelSigs %s", name, i, ty, sig[i])
			}
		}
	}
	for name := range kernelSigs {
		if !found[name] {
			t.Errorf("kernelSigs has %s, which the PTX does not define", name)
		}
	}
}
