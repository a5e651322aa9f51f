package emu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"offload/internal/fixtures"
)

// TestSelftest runs the emulator's own self-test (every parameter type,
// warp intrinsics, shared memory, each error it reports) against the
// library the other tests load.
func TestSelftest(t *testing.T) {
	l := Lib(t)
	src := filepath.Join(fixtures.Shared(t), "emucuda", "test", "selftest.c")
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("cc not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "selftest")
	if out, err := exec.Command(cc, "-o", bin, src, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("cc %s: %v\n%s", src, err, out)
	}
	cmd := exec.Command(bin, l)
	cmd.Env = Env(t)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all passed") {
		t.Fatalf("selftest: %v\n%s", err, out)
	}
}

func TestVars(t *testing.T) {
	v := Vars(t)
	for _, k := range []string{EnvLibCUDA, EnvLibNVRTC, EnvLibCUBLAS} {
		if v[k] != Lib(t) {
			t.Errorf("%s = %q, want the library %q", k, v[k], Lib(t))
		}
	}
	kc := v[EnvKernelCache]
	if kc == "" || !strings.Contains(kc, dirName) {
		t.Errorf("kernel cache %q is not a folder of its own under %s", kc, dirName)
	}
	env := Env(t)
	n := 0
	for _, kv := range env {
		if strings.HasPrefix(kv, EnvLibCUDA+"=") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("Env has %d %s entries, want 1", n, EnvLibCUDA)
	}
	Use(t)
	if os.Getenv(EnvLibNVRTC) != Lib(t) {
		t.Errorf("Use did not set %s", EnvLibNVRTC)
	}
}

func TestParseProfile(t *testing.T) {
	const out = `=== RUN   TestX
emucuda: matmul_f32                      3 launches         12 blocks        1.5 ms
emucuda: rope                            1 launches          1 blocks        0.1 ms
emucuda: oob block (0,0,0): thread (31,0,0): SIGSEGV
emucuda: matmul_f32                      7 launches         20 blocks        2.5 ms
emucuda: rope                            1 launches          1 blocks        0.1 ms
--- PASS: TestX (0.00s)
`
	p, err := ParseProfile(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || p["matmul_f32"] != 7 || p["rope"] != 1 || p.Launches() != 8 {
		t.Fatalf("ParseProfile = %v (%d launches), want matmul_f32 7, rope 1", p, p.Launches())
	}
}
