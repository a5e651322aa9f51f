//go:build !amd64 || purego

package pager

// streamAsm is false: there is no non-temporal copy on this platform.
var streamAsm = false

// StreamCopy copies src into dst (len(dst) >= len(src)); see the amd64
// version for why it exists.
func StreamCopy(dst, src []byte) { copy(dst, src) }
