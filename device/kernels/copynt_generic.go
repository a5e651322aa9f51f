//go:build !amd64 || purego

package kernels

// CopyStream copies src into dst (len(dst) >= len(src)); see the amd64
// version for why it exists.
func CopyStream(dst, src []byte) { copy(dst, src) }
