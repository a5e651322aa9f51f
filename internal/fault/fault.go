// Package fault turns a fault while reading a memory-mapped model file into
// an error. Weights stay mapped for the life of a run and are read on demand;
// if the file is truncated or replaced underneath (another process rewrites
// it, a network filesystem drops it), the next read of a vanished page raises
// SIGBUS, which by default kills the process with a goroutine dump. A
// goroutine that reads mapped bytes runs that read under Guard (or sets
// debug.SetPanicOnFault and recovers with Recovered, as a backend's stream
// goroutine does), so the fault becomes one error, ErrFileChanged, naming
// the file, and the run ends cleanly.
//
// Only faults at addresses inside a registered mapping are converted: any
// other fault is a bug and is re-raised as the panic it was.
package fault

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"unsafe"
)

// ErrFileChanged is wrapped by the error a fault inside a mapping becomes.
var ErrFileChanged = errors.New("model file changed on disk while running")

type region struct {
	lo, hi uintptr
	path   string
}

var (
	mu      sync.RWMutex
	regions = map[uintptr]region{}
)

// Register records that b maps the file at path, until Unregister(b).
func Register(b []byte, path string) {
	if len(b) == 0 {
		return
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	mu.Lock()
	regions[lo] = region{lo: lo, hi: lo + uintptr(len(b)), path: path}
	mu.Unlock()
}

// Unregister forgets a mapping (call it before unmapping).
func Unregister(b []byte) {
	if len(b) == 0 {
		return
	}
	mu.Lock()
	delete(regions, uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	mu.Unlock()
}

// lookup finds the registered file holding addr.
func lookup(addr uintptr) (string, bool) {
	mu.RLock()
	defer mu.RUnlock()
	for _, r := range regions {
		if addr >= r.lo && addr < r.hi {
			return r.path, true
		}
	}
	return "", false
}

// addrError is what the runtime panics with on a fault when
// debug.SetPanicOnFault is set (a runtime.Error with the faulting address).
type addrError interface {
	error
	Addr() uintptr
}

// Recovered classifies a value returned by recover(): for a fault inside a
// registered mapping it returns an error wrapping ErrFileChanged that names
// the file; for anything else it returns nil, and the caller should panic
// again with r.
func Recovered(r any) error {
	ae, ok := r.(addrError)
	if !ok {
		return nil
	}
	path, ok := lookup(ae.Addr())
	if !ok {
		return nil
	}
	return &Error{Path: path}
}

// Error is a fault inside a mapped file.
type Error struct{ Path string }

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %v (it was truncated or rewritten while mapped; do not modify a model file while offload runs)", e.Path, ErrFileChanged)
}

func (e *Error) Unwrap() error { return ErrFileChanged }

// Guard runs fn on the calling goroutine with faults turned into panics, and
// returns a fault inside a registered mapping as an error. Other panics
// propagate unchanged.
func Guard(fn func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			if ferr := Recovered(r); ferr != nil {
				err = ferr
				return
			}
			panic(r)
		}
	}()
	fn()
	return nil
}

// Go runs fn(i) for i in [0, n) on n goroutines (the caller runs fn(0)),
// each under Guard, and returns the first fault.
func Go(n int, fn func(i int)) error {
	if n <= 1 {
		return Guard(func() { fn(0) })
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Guard(func() { fn(i) })
		}()
	}
	errs[0] = Guard(func() { fn(0) })
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
