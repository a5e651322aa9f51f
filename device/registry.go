package device

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Config is what opening a backend may be told. Each backend reads the
// fields that apply to it and ignores the rest.
type Config struct {
	// Capacity bounds the device memory Alloc hands out, in bytes (0: the
	// backend's default: all free memory of a GPU; for the host backend the
	// caller must choose, see its doc).
	Capacity int64
	// Link paces host->device copies to this many bytes per second (the host
	// backend, to study overlap without a GPU); 0 leaves them unpaced.
	Link float64
	// Pageable makes a GPU backend stage copies through ordinary (pageable)
	// host memory instead of page-locked buffers, to measure that path.
	Pageable bool
	// Threads is the number of CPU threads the host backend computes with
	// (0: GOMAXPROCS).
	Threads int
	// PlainKernels makes the host backend compute with its plain Go kernels
	// instead of the SIMD ones, to measure what the SIMD paths gain.
	PlainKernels bool
}

// Opener makes a device of one backend.
type Opener func(Config) (Device, error)

var (
	regMu    sync.Mutex
	backends = map[string]Opener{}
)

// Register makes a backend available to Open under name. Backends call it
// from an init function, so a program selects the backends it links in by
// importing them (for their side effect) and never names their types.
func Register(name string, open Opener) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := backends[name]; dup {
		panic("device: backend " + name + " registered twice")
	}
	backends[name] = open
}

// Backends lists the registered backend names, sorted.
func Backends() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open opens a device of the named backend.
func Open(name string, cfg Config) (Device, error) {
	regMu.Lock()
	open, ok := backends[name]
	regMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("device: no backend %q (available: %s)", name, strings.Join(Backends(), ", "))
	}
	return open(cfg)
}
