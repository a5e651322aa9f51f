//go:build amd64 && !purego

package kernels

import "os"

// eachImpl runs f once per kernel set this machine can run: the plain Go
// path, AVX2, and AVX-512 where the CPU has it, restoring the set in use.
func eachImpl(f func(name string)) {
	asm, wide := useAsm, hasAVX512
	defer func() {
		useAsm = asm
		setAVX512(wide)
	}()
	useAsm = false
	f("plain")
	if !asm {
		return
	}
	useAsm = true
	setAVX512(false)
	f("avx2")
	if wide {
		setAVX512(true)
		f("avx512")
	}
}

// benchKernels applies the KERNELS environment variable to benchmarks:
// "avx2" runs the AVX2 set on an AVX-512 machine, "plain" the Go path.
func benchKernels() {
	switch os.Getenv("KERNELS") {
	case "avx2":
		setAVX512(false)
	case "plain":
		SetPlain(true)
	}
}
