package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"unsafe"
)

// kernelSource is the CUDA C of every kernel. It is compiled at start by
// NVRTC for the card's architecture and the result cached on disk (see
// kernelImage), so only the first start on a machine pays for compilation.
//
//go:embed kernels.cu
var kernelSource string

// kernelFile is the name NVRTC reports in its messages.
const kernelFile = "offload_kernels.cu"

// nvrtcOptions are passed to every compilation. No fast-math: the kernels
// are held to float64 references and to the host backend. -std=c++14 is the
// newest dialect every NVRTC since 11.0 accepts.
var nvrtcOptions = []string{"--std=c++14", "--fmad=true"}

// pkind is the C type of one kernel parameter.
type pkind uint8

const (
	pPtr pkind = iota // a device pointer (CUdeviceptr, 8 bytes)
	pI32              // int
	pI64              // long long
	pF32              // float
)

func (k pkind) String() string {
	return [...]string{"ptr", "i32", "i64", "f32"}[k]
}

// kernelSigs mirrors the parameter lists in kernels.cu. launch checks every
// call against it, and TestKernelSignaturesMatchPTX checks it against the
// .entry declarations NVRTC emits, so a kernel and its Go caller cannot
// silently disagree on an argument's size.
var kernelSigs = map[string][]pkind{
	"matmul_f32":        {pPtr, pPtr, pPtr, pI32, pI32, pI32},
	"matmul_f16":        {pPtr, pPtr, pPtr, pI32, pI32, pI32},
	"matmul_bf16":       {pPtr, pPtr, pPtr, pI32, pI32, pI32},
	"matmul_t_f32":      {pPtr, pPtr, pPtr, pI32, pI32, pI32},
	"matmul_t_f16":      {pPtr, pPtr, pPtr, pI32, pI32, pI32},
	"matmul_t_bf16":     {pPtr, pPtr, pPtr, pI32, pI32, pI32},
	"rmsnorm_f32":       {pPtr, pPtr, pPtr, pI32, pF32},
	"rmsnorm_f16":       {pPtr, pPtr, pPtr, pI32, pF32},
	"rmsnorm_bf16":      {pPtr, pPtr, pPtr, pI32, pF32},
	"rope":              {pPtr, pI32, pI32, pI32, pI32, pF32, pI32},
	"rope_freqs":        {pPtr, pI32, pI32, pI32, pI32, pPtr, pI32},
	"attention":         {pPtr, pPtr, pPtr, pPtr, pI32, pI32, pI32, pI32, pI32, pI32, pF32},
	"silu_mul":          {pPtr, pPtr, pPtr, pI64},
	"add_f32":           {pPtr, pPtr, pI64},
	"gather_rows_u16":   {pPtr, pPtr, pPtr, pI32, pI32, pI32, pPtr},
	"gather_rows_u32":   {pPtr, pPtr, pPtr, pI32, pI32, pI32, pPtr},
	"gather_cols_t_u16": {pPtr, pPtr, pPtr, pI32, pI32, pI32, pPtr},
	"gather_cols_t_u32": {pPtr, pPtr, pPtr, pI32, pI32, pI32, pPtr},
	"f32_to_bf16_k":     {pPtr, pPtr, pI64},
	"f32_to_f16_k":      {pPtr, pPtr, pI64},
	"bf16_to_f32_k":     {pPtr, pPtr, pI64},
	"f16_to_f32_k":      {pPtr, pPtr, pI64},
	"argmax_rows":       {pPtr, pPtr, pI32},
	"softmax_rows":      {pPtr, pPtr, pI32, pF32},
	"loglik_rows":       {pPtr, pPtr, pPtr, pI32, pF32, pPtr},
}

// The quantized products (plain and transposed) and dequantizations, one of
// each per block type (matmul_q4_0, matmul_t_q4_0, dequant_q4_0, ...).
func init() {
	for _, dt := range quantTypes {
		kernelSigs["matmul_"+dt.String()] = []pkind{pPtr, pPtr, pPtr, pI32, pI32, pI32}
		kernelSigs["matmul_t_"+dt.String()] = []pkind{pPtr, pPtr, pPtr, pI32, pI32, pI32}
		kernelSigs["dequant_"+dt.String()] = []pkind{pPtr, pPtr, pI64}
	}
}

// kernelNames is kernelSigs' keys, sorted (module loading order).
func kernelNames() []string {
	names := make([]string, 0, len(kernelSigs))
	for n := range kernelSigs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// devPtr is a device address passed to a kernel.
type devPtr uint64

// kernelArgs packs values for cuLaunchKernel: one 8-byte slot per parameter
// and an array of pointers to the slots. Both live in one pinned Go
// allocation for the duration of the launch.
type kernelArgs struct {
	slots []uint64
	ptrs  []unsafe.Pointer
	pin   runtime.Pinner
}

// packArgs checks args against the kernel's signature and packs them.
func packArgs(name string, args []any) (*kernelArgs, error) {
	sig, ok := kernelSigs[name]
	if !ok {
		return nil, fmt.Errorf("cuda: unknown kernel %q", name)
	}
	if len(args) != len(sig) {
		return nil, fmt.Errorf("cuda: kernel %s takes %d arguments, got %d", name, len(sig), len(args))
	}
	ka := &kernelArgs{slots: make([]uint64, len(args)), ptrs: make([]unsafe.Pointer, len(args))}
	for i, a := range args {
		var want pkind
		switch v := a.(type) {
		case devPtr:
			want, ka.slots[i] = pPtr, uint64(v)
		case int32:
			want = pI32
			*(*int32)(unsafe.Pointer(&ka.slots[i])) = v
		case int64:
			want = pI64
			*(*int64)(unsafe.Pointer(&ka.slots[i])) = v
		case float32:
			want = pF32
			*(*float32)(unsafe.Pointer(&ka.slots[i])) = v
		default:
			return nil, fmt.Errorf("cuda: kernel %s argument %d: unsupported Go type %T", name, i, a)
		}
		if want != sig[i] {
			return nil, fmt.Errorf("cuda: kernel %s argument %d is %s, got %s (%T)", name, i, sig[i], want, a)
		}
	}
	if len(args) > 0 {
		ka.pin.Pin(&ka.slots[0])
		ka.pin.Pin(&ka.ptrs[0])
		for i := range ka.slots {
			ka.ptrs[i] = unsafe.Pointer(&ka.slots[i])
		}
	}
	return ka, nil
}

// params is the void** cuLaunchKernel takes.
func (ka *kernelArgs) params() unsafe.Pointer {
	if len(ka.ptrs) == 0 {
		return nil
	}
	return unsafe.Pointer(&ka.ptrs[0])
}

func (ka *kernelArgs) release() { ka.pin.Unpin() }

// cacheDir is where compiled kernels are kept: dir if set, else
// $OFFLOAD_KERNEL_CACHE, else the user cache directory. "" disables caching.
func cacheDir(dir string) string {
	if dir != "" {
		return dir
	}
	if d := os.Getenv(EnvKernelCache); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "offload", "kernels")
	}
	return ""
}

// sourceHash identifies the kernel source and compile options.
func sourceHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", strings.Join(nvrtcOptions, " "))
	h.Write([]byte(kernelSource))
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// cacheKey names a compiled image by everything that decides its bytes:
// target, source and options (sourceHash), and the NVRTC version. The
// target comes first and the version last so that findCached can pick an
// image without knowing which NVRTC made it.
func cacheKey(target string, nvrtcVer string) string {
	ext := ".ptx"
	if strings.HasPrefix(target, "sm_") {
		ext = ".cubin"
	}
	return target + "-" + sourceHash() + "-nvrtc" + nvrtcVer + ext
}

// findCached looks for an image usable on a card of compute capability sm
// when NVRTC itself is not available (a GPU machine without the toolkit,
// given a cache filled elsewhere): a CUBIN for exactly sm_XX, else the PTX of
// the newest compute_YY <= sm. It returns the image and its target.
func findCached(dir string, sm int) ([]byte, string) {
	if dir == "" {
		return nil, ""
	}
	h := sourceHash()
	if m, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("sm_%d-%s-nvrtc*.cubin", sm, h))); len(m) > 0 {
		sort.Strings(m)
		if b, err := os.ReadFile(m[len(m)-1]); err == nil && len(b) > 0 {
			return b, fmt.Sprintf("sm_%d", sm)
		}
	}
	m, _ := filepath.Glob(filepath.Join(dir, "compute_*-"+h+"-nvrtc*.ptx"))
	best, bestPath := 0, ""
	for _, p := range m {
		var v int
		if _, err := fmt.Sscanf(filepath.Base(p), "compute_%d-", &v); err == nil && v <= sm && v > best {
			best, bestPath = v, p
		}
	}
	if bestPath != "" {
		if b, err := os.ReadFile(bestPath); err == nil && len(b) > 0 {
			return b, fmt.Sprintf("compute_%d", best)
		}
	}
	return nil, ""
}

// readCache returns a cached image, or nil.
func readCache(dir, key string) []byte {
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, key))
	if err != nil || len(b) == 0 {
		return nil
	}
	return b
}

// writeCache stores an image atomically (temp file, then rename), so that a
// concurrent start never loads half a file. Failing to cache is not an
// error: the next start compiles again.
func writeCache(dir, key string, img []byte) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("kernel cache %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, key+".tmp*")
	if err != nil {
		return fmt.Errorf("kernel cache %s: %w", dir, err)
	}
	_, werr := f.Write(img)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(f.Name(), 0o644) // CreateTemp makes 0600; the cache may be shared
	}
	if werr == nil {
		werr = os.Rename(f.Name(), filepath.Join(dir, key))
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("kernel cache %s: %w", dir, werr)
	}
	return nil
}

// Compiler compiles the embedded kernels with NVRTC. It needs no GPU.
type Compiler struct {
	nv       *nvrtc
	major    int
	minor    int
	archs    []int
	archsErr error
}

// NewCompiler loads NVRTC (path "" searches the usual names and
// $OFFLOAD_LIBNVRTC).
func NewCompiler(path string) (*Compiler, error) {
	lib, err := openLibrary(path, EnvLibNVRTC, nvrtcCandidates)
	if err != nil {
		return nil, fmt.Errorf("cuda: no NVRTC found (%w)", err)
	}
	c := &Compiler{nv: &nvrtc{lib: lib}}
	if c.major, c.minor, err = c.nv.version(); err != nil {
		return nil, fmt.Errorf("cuda: NVRTC %s: %w", lib.path, err)
	}
	c.archs, c.archsErr = c.nv.supportedArchs()
	return c, nil
}

// Version is NVRTC's version, e.g. "11.8".
func (c *Compiler) Version() string { return fmt.Sprintf("%d.%d", c.major, c.minor) }

// Path is the library file that was loaded.
func (c *Compiler) Path() string { return c.nv.lib.path }

// SupportedArchs lists the SM numbers NVRTC can target (nil if it cannot
// say: NVRTC before 11.2).
func (c *Compiler) SupportedArchs() []int { return c.archs }

// Target is what Compile would produce for a card of compute capability sm
// (e.g. 89): "sm_89" (a CUBIN) or "compute_86" (PTX, JIT-compiled by the
// driver) when this NVRTC does not know the card.
func (c *Compiler) Target(sm int) (string, error) { return chooseTarget(sm, c.archs) }

// Compile compiles the kernels for target ("sm_XX" or "compute_XX") and
// returns the image and NVRTC's log (empty when there were no warnings).
func (c *Compiler) Compile(target string) (img []byte, log string, err error) {
	res, err := c.nv.compile(kernelSource, kernelFile, target, nvrtcOptions)
	return res.Image, res.Log, err
}

// CompileCached is Compile through the on-disk cache in dir (see cacheDir).
// hit says the image came from the cache.
func (c *Compiler) CompileCached(dir, target string) (img []byte, hit bool, err error) {
	dir = cacheDir(dir)
	key := cacheKey(target, c.Version())
	if img := readCache(dir, key); img != nil {
		return img, true, nil
	}
	img, _, err = c.Compile(target)
	if err != nil {
		return nil, false, err
	}
	_ = writeCache(dir, key, img) // best effort, see writeCache
	return img, false, nil
}
