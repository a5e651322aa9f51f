// Package emu gives tests the CPU emulator of the CUDA driver API, NVRTC
// and cuBLAS (../shared/emucuda), so that every CUDA kernel of this project
// executes in CI although no GPU is there: the CUDA backend loads the
// emulator through its usual OFFLOAD_LIBCUDA / OFFLOAD_LIBNVRTC /
// OFFLOAD_LIBCUBLAS variables, compiles its CUDA C at run time as on a GPU,
// and runs each kernel on the CPU with poisoned fresh memory, guard pages
// and three warp/lane schedules (the emulator's README).
//
// It is the one way tests find the emulator. Lib builds it once per
// checkout into .emucuda/ (git-ignored) beside go.mod, keyed by a hash of
// its sources, so a changed emulator is rebuilt and its compiled kernels
// are kept apart; OFFLOAD_EMUCUDA names a prebuilt library instead. Without
// g++ (needed to build the emulator and, at run time, to compile kernels)
// the tests skip with a message saying so, except under CI=true, where
// they fail: CI must execute the kernels.
//
// The schedule (EMU_SCHEDULE), poison byte (EMU_POISON) and profile
// (EMU_PROFILE) are read when the library is loaded, so they come from the
// environment of the test process (scripts/emu-test.sh sets them).
package emu

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"offload/internal/fixtures"
)

// Environment variables. The OFFLOAD_LIB* names and OFFLOAD_KERNEL_CACHE
// are the CUDA backend's (package cuda checks they agree).
const (
	// EnvPrebuilt names a libemucuda.so to use instead of building one.
	EnvPrebuilt = "OFFLOAD_EMUCUDA"
	// EnvForce=1 makes tests that could use a real GPU use the emulator.
	EnvForce = "OFFLOAD_EMU"

	EnvLibCUDA     = "OFFLOAD_LIBCUDA"
	EnvLibNVRTC    = "OFFLOAD_LIBNVRTC"
	EnvLibCUBLAS   = "OFFLOAD_LIBCUBLAS"
	EnvKernelCache = "OFFLOAD_KERNEL_CACHE"
	// envModuleCache is where the emulator keeps the shared objects its
	// NVRTC builds (default ~/.cache/emucuda); kept under .emucuda/ too.
	envModuleCache = "EMUCUDA_CACHE"
)

// dirName is the git-ignored folder beside go.mod that holds the builds.
const dirName = ".emucuda"

var (
	once    sync.Once
	lib     string // path of libemucuda.so
	libID   string // hash of its contents
	libErr  error
	rootDir string
)

// Forced reports whether OFFLOAD_EMU=1 asks for the emulator even where a
// real GPU is present (scripts/emu-test.sh sets it, so that its schedules
// are the emulator's on any machine).
func Forced() bool { return os.Getenv(EnvForce) == "1" }

// Lib returns the path of libemucuda.so, building it on first use. It
// skips the test when the emulator cannot run here (no g++, not x86-64
// Linux) and fails it when CI=true and g++ is missing.
func Lib(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("emucuda: the CUDA emulator runs on x86-64 Linux only (this is %s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	if err := haveCXX(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("emucuda: CI=true but %v: CI must execute the CUDA kernels (apt-get install g++)", err)
		}
		t.Skipf("emucuda: %v: the emulated CUDA tests need it to build the emulator and compile kernels (apt-get install g++)", err)
	}
	var shared string
	if os.Getenv(EnvPrebuilt) == "" {
		shared = fixtures.Shared(t) // skips, or fails in CI, without ../shared
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("emucuda: %v", err)
	}
	once.Do(func() {
		rootDir = root
		lib, libErr = locate(root, shared)
		if libErr == nil {
			libID, libErr = fileHash(lib)
		}
	})
	if libErr != nil {
		t.Fatalf("emucuda: %v", libErr)
	}
	return lib
}

// Vars returns the variables that make the CUDA backend of a process use
// the emulator: the three libraries, a kernel cache of its own (emulated
// images must never meet a GPU's) and the emulator's module cache.
func Vars(t testing.TB) map[string]string {
	t.Helper()
	l := Lib(t)
	base := filepath.Join(rootDir, dirName, "cache-"+libID)
	return map[string]string{
		EnvLibCUDA:     l,
		EnvLibNVRTC:    l,
		EnvLibCUBLAS:   l,
		EnvKernelCache: filepath.Join(base, "kernels"),
		envModuleCache: filepath.Join(base, "modules"),
	}
}

// Use points this process's CUDA backend at the emulator for the rest of
// the test (t.Setenv: the test must not be parallel).
func Use(t testing.TB) {
	t.Helper()
	for k, v := range Vars(t) {
		t.Setenv(k, v)
	}
}

// Env returns os.Environ() with Vars added, for a child process.
func Env(t testing.TB) []string {
	t.Helper()
	vars := Vars(t)
	env := make([]string, 0, len(os.Environ())+len(vars))
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); vars[k] == "" {
			env = append(env, kv)
		}
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// haveCXX checks for the compiler the emulator builds with ($CXX or g++).
func haveCXX() error {
	cxx := strings.Fields(os.Getenv("CXX"))
	name := "g++"
	if len(cxx) > 0 {
		name = cxx[0]
	}
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%s not found", name)
	}
	return nil
}

// moduleRoot is the directory holding go.mod, above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// locate returns the prebuilt library, or the one built from
// shared/emucuda into .emucuda/build-<source hash>/, building it if absent.
func locate(root, shared string) (string, error) {
	if p := os.Getenv(EnvPrebuilt); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvPrebuilt, p, err)
		}
		return filepath.Abs(p)
	}
	src := filepath.Join(shared, "emucuda")
	id, err := sourceHash(src)
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, dirName, "build-"+id)
	so := filepath.Join(out, "libemucuda.so")
	if _, err := os.Stat(so); err == nil {
		return so, nil
	}
	// Build into a temporary folder beside the final one and rename: test
	// binaries of several packages may build at once, and none may load a
	// half-written library.
	if err := os.MkdirAll(filepath.Join(root, dirName), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Join(root, dirName), "tmp-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("bash", filepath.Join(src, "build.sh"), tmp)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the emulator (%s/build.sh): %v\n%s", src, err, b)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, "libemucuda.so"), so); err != nil {
		return "", err
	}
	return so, nil
}

// sourceHash names the emulator's sources: the files build.sh compiles.
func sourceHash(dir string) (string, error) {
	var files []string
	for _, pat := range []string{"build.sh", "exports.map", "*.h", "*.cpp"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return "", err
		}
		files = append(files, m...)
	}
	if len(files) < 3 {
		return "", fmt.Errorf("no emulator sources in %s", dir)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Profile is what EMU_PROFILE=1 reported: launches per kernel.
type Profile map[string]uint64

// Launches is the total number of launches.
func (p Profile) Launches() uint64 {
	var n uint64
	for _, v := range p {
		n += v
	}
	return n
}

// ParseProfile reads the lines EMU_PROFILE=1 writes on stderr
// ("emucuda: <kernel> <n> launches <b> blocks <t> ms") from one process's
// output. The emulator prints its running totals at every module unload,
// so the largest count seen for a kernel is its total.
func ParseProfile(r io.Reader) (Profile, error) {
	p := Profile{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 8 || f[0] != "emucuda:" || f[3] != "launches" || f[5] != "blocks" || f[7] != "ms" {
			continue
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		if n > p[f[1]] {
			p[f[1]] = n
		}
	}
	return p, sc.Err()
}
