package cuda

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"unsafe"
)

// nvrtc wraps NVRTC, the CUDA runtime compiler, which turns the embedded
// CUDA C kernels into a CUBIN (or PTX) for the card at hand. It needs no GPU,
// which is what lets CI compile every kernel.
type nvrtc struct{ lib *library }

func (n *nvrtc) check(fn string, r uint32, err error) error {
	if err != nil {
		return err
	}
	if r == 0 {
		return nil
	}
	return &Error{Func: fn, Code: r, Name: goString(n.lib.callPtr("nvrtcGetErrorString", uintptr(r)))}
}

//go:uintptrescapes
func (n *nvrtc) do(fn string, args ...uintptr) error {
	r, err := n.lib.call(fn, args...)
	return n.check(fn, r, err)
}

// version is NVRTC's (major, minor), e.g. (11, 8).
func (n *nvrtc) version() (int, int, error) {
	var maj, min int32
	err := n.do("nvrtcVersion", uintptr(unsafe.Pointer(&maj)), uintptr(unsafe.Pointer(&min)))
	return int(maj), int(min), err
}

// supportedArchs lists the SM numbers (e.g. 80 for sm_80) this NVRTC can
// target, ascending. NVRTC before 11.2 lacks the query; its list is then
// unknown and nil is returned with the error.
func (n *nvrtc) supportedArchs() ([]int, error) {
	var cnt int32
	if err := n.do("nvrtcGetNumSupportedArchs", uintptr(unsafe.Pointer(&cnt))); err != nil {
		return nil, err
	}
	if cnt <= 0 || cnt > 1024 {
		return nil, fmt.Errorf("nvrtcGetNumSupportedArchs: implausible count %d", cnt)
	}
	archs := make([]int32, cnt)
	if err := n.do("nvrtcGetSupportedArchs", uintptr(unsafe.Pointer(&archs[0]))); err != nil {
		return nil, err
	}
	out := make([]int, len(archs))
	for i, a := range archs {
		out[i] = int(a)
	}
	sort.Ints(out)
	return out, nil
}

// compileResult is what one NVRTC compilation produced.
type compileResult struct {
	Image []byte // CUBIN for a real target (sm_XX), NUL-terminated PTX for a virtual one (compute_XX)
	Log   string // compiler messages: warnings make it non-empty
}

// compile compiles src for target ("sm_90" gives a CUBIN, "compute_86"
// PTX). A failed compilation returns the log in the error, one line per
// message.
func (n *nvrtc) compile(src, name, target string, extra []string) (compileResult, error) {
	var prog uintptr
	csrc, cname := cString(src), cString(name)
	err := n.do("nvrtcCreateProgram", uintptr(unsafe.Pointer(&prog)),
		uintptr(unsafe.Pointer(&csrc[0])), uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0)
	runtime.KeepAlive(csrc)
	runtime.KeepAlive(cname)
	if err != nil {
		return compileResult{}, err
	}
	defer n.do("nvrtcDestroyProgram", uintptr(unsafe.Pointer(&prog)))

	opts := append([]string{"--gpu-architecture=" + target}, extra...)
	copts := make([][]byte, len(opts))
	optp := make([]uintptr, len(opts))
	var pin runtime.Pinner
	defer pin.Unpin()
	for i, o := range opts {
		copts[i] = cString(o)
		pin.Pin(&copts[i][0])
		optp[i] = uintptr(unsafe.Pointer(&copts[i][0]))
	}
	cerr := n.do("nvrtcCompileProgram", prog, uintptr(len(optp)), uintptr(unsafe.Pointer(&optp[0])))
	runtime.KeepAlive(copts)
	runtime.KeepAlive(optp)

	var res compileResult
	var logSize uint64
	if err := n.do("nvrtcGetProgramLogSize", prog, uintptr(unsafe.Pointer(&logSize))); err == nil && logSize > 1 && logSize < 1<<24 {
		buf := make([]byte, logSize)
		if n.do("nvrtcGetProgramLog", prog, uintptr(unsafe.Pointer(&buf[0]))) == nil {
			res.Log = strings.TrimRight(string(buf[:logSize-1]), "\x00 \n")
		}
	}
	if cerr != nil {
		return res, fmt.Errorf("nvrtc %s for %s: %w: %s", name, target, cerr, strings.ReplaceAll(res.Log, "\n", "; "))
	}

	sizeFn, getFn := "nvrtcGetPTXSize", "nvrtcGetPTX"
	if strings.HasPrefix(target, "sm_") {
		sizeFn, getFn = "nvrtcGetCUBINSize", "nvrtcGetCUBIN"
	}
	var size uint64
	if err := n.do(sizeFn, prog, uintptr(unsafe.Pointer(&size))); err != nil {
		return res, err
	}
	if size == 0 || size > 1<<30 {
		return res, fmt.Errorf("%s: implausible size %d", sizeFn, size)
	}
	img := make([]byte, size)
	if err := n.do(getFn, prog, uintptr(unsafe.Pointer(&img[0]))); err != nil {
		return res, err
	}
	res.Image = img
	return res, nil
}

// chooseTarget picks what to compile for a card of compute capability sm
// (e.g. 89) given the architectures NVRTC supports: the card's own SM as a
// CUBIN when NVRTC knows it, else PTX for the newest virtual architecture not
// above the card, which the driver JIT-compiles (PTX is forward compatible).
// With an unknown list (old NVRTC) it asks for the card's SM and lets NVRTC
// say no.
func chooseTarget(sm int, supported []int) (string, error) {
	if len(supported) == 0 {
		return fmt.Sprintf("sm_%d", sm), nil
	}
	best := 0
	for _, a := range supported {
		if a == sm {
			return fmt.Sprintf("sm_%d", sm), nil
		}
		if a < sm && a > best {
			best = a
		}
	}
	if best == 0 {
		return "", fmt.Errorf("NVRTC supports %v, none at or below sm_%d", supported, sm)
	}
	return fmt.Sprintf("compute_%d", best), nil
}
