package cuda

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The CUDA libraries are opened at run time with purego, so that the module
// builds with CGO_ENABLED=0 and without the CUDA toolkit. Every entry point is
// called through purego.SyscallN with its arguments converted to uintptr by
// hand: none of the functions we use take a float or a struct by value, and
// SyscallN avoids the reflection that purego.RegisterFunc costs on every call
// (a decode step launches thousands of kernels). purego v0.11.3 raised the
// argument limit to 32, which cublasGemmEx (19 arguments) needs.

// Environment variables that name a library file explicitly. They take
// precedence over Options' default search (but not over a path set in
// Options). The fake-driver test uses the same path through OFFLOAD_LIBCUDA.
const (
	EnvLibCUDA   = "OFFLOAD_LIBCUDA"
	EnvLibNVRTC  = "OFFLOAD_LIBNVRTC"
	EnvLibCUBLAS = "OFFLOAD_LIBCUBLAS"
	// EnvKernelCache is the directory of compiled kernel images (see
	// cacheDir).
	EnvKernelCache = "OFFLOAD_KERNEL_CACHE"
)

var (
	cudaCandidates   = []string{"libcuda.so.1", "libcuda.so"}
	nvrtcCandidates  = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}
	cublasCandidates = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}
)

// library is one dlopen'ed shared object. Symbols are resolved once, on first
// use, and a missing one is reported as an error when it is called rather
// than when the library is opened: the fake driver used by the tests holds
// only the entry points the tests call.
type library struct {
	path string
	h    uintptr

	mu   sync.Mutex
	syms map[string]uintptr
}

// openLibrary opens the first loadable file among explicit (if set) or the
// candidates. The error carries the dlopen message of the first candidate,
// which is the one a user can act on.
func openLibrary(explicit, env string, candidates []string) (*library, error) {
	if explicit == "" {
		explicit = os.Getenv(env)
	}
	if explicit != "" {
		candidates = []string{explicit}
	}
	var first error
	for _, c := range candidates {
		h, err := purego.Dlopen(c, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return &library{path: c, h: h, syms: map[string]uintptr{}}, nil
		}
		if first == nil {
			msg := oneLine(err.Error())
			if !strings.HasPrefix(msg, c) {
				msg = c + ": " + msg // dlerror usually names the file itself
			}
			first = errors.New(msg)
		}
	}
	return nil, first
}

// oneLine keeps the first line of a message: dlerror strings are one line, but
// a CLI error must never spill over several.
func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// sym returns the address of name, or 0 when the library lacks it.
func (l *library) sym(name string) uintptr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p, ok := l.syms[name]; ok {
		return p
	}
	p, err := purego.Dlsym(l.h, name)
	if err != nil {
		p = 0
	}
	l.syms[name] = p
	return p
}

// errMissingSymbol is wrapped when a library lacks an entry point.
var errMissingSymbol = errors.New("missing entry point")

// call invokes name with args and returns the low 32 bits of the result,
// which is how every CUDA, NVRTC and cuBLAS status code comes back.
//
// Like purego.SyscallN it is marked uintptrescapes: an argument written as
// uintptr(unsafe.Pointer(&x)) directly in the call moves x to the heap, so a
// stack copy during the call cannot leave C holding a stale address. Callers
// must therefore convert pointers inline, never through a helper.
//
//go:uintptrescapes
func (l *library) call(name string, args ...uintptr) (uint32, error) {
	p := l.sym(name)
	if p == 0 {
		return 0, fmt.Errorf("%s: %s: %w", l.path, name, errMissingSymbol)
	}
	r, _, _ := purego.SyscallN(p, args...)
	return uint32(r), nil
}

// callPtr is call for functions that return a pointer (NVRTC/CUDA error
// strings).
//
//go:uintptrescapes
func (l *library) callPtr(name string, args ...uintptr) uintptr {
	p := l.sym(name)
	if p == 0 {
		return 0
	}
	r, _, _ := purego.SyscallN(p, args...)
	return r
}

// goString copies a NUL-terminated C string.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	var n int
	for *(*byte)(unsafe.Add(unsafe.Pointer(nil), p+uintptr(n))) != 0 {
		n++
		if n > 1<<16 {
			break
		}
	}
	return string(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), p)), n))
}

// cString returns a NUL-terminated copy of s; keep the slice alive (KeepAlive)
// across the call that uses &b[0].
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}
