//go:build !amd64 || purego

package kernels

// eachImpl runs f for the only kernel set there is: plain Go.
func eachImpl(f func(name string)) { f("plain") }

// benchKernels applies KERNELS=plain (the only set here) to benchmarks.
func benchKernels() {}
