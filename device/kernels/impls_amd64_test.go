//go:build amd64 && !purego

package kernels

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
