package fault

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mapTruncated maps a file of two pages and truncates it to zero, so every
// read of the mapping raises SIGBUS.
func mapTruncated(t *testing.T) ([]byte, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.bin")
	ps := os.Getpagesize()
	if err := os.WriteFile(path, make([]byte, 2*ps), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, 2*ps, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	return b, path
}

func TestGuardTurnsSIGBUSIntoError(t *testing.T) {
	b, path := mapTruncated(t)
	Register(b, path)
	defer Unregister(b)
	var sink byte
	err := Guard(func() { sink = b[len(b)-1] })
	if !errors.Is(err, ErrFileChanged) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v (sink %d), want ErrFileChanged naming %s", err, sink, path)
	}
	// copy (runtime memmove, in assembly) faults the same way.
	dst := make([]byte, len(b))
	if err := Go(3, func(int) { copy(dst, b) }); !errors.Is(err, ErrFileChanged) {
		t.Fatalf("copy: got %v", err)
	}
}

func TestGuardRepanicsOutsideMappings(t *testing.T) {
	b, _ := mapTruncated(t) // not registered
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("a fault outside registered mappings must stay a panic")
		}
	}()
	var sink byte
	_ = Guard(func() { sink = b[0] })
	t.Log(sink)
}

func TestGuardPassesOtherPanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the original panic", r)
		}
	}()
	_ = Guard(func() { panic("boom") })
}
