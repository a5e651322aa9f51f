package host

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"offload/device"
	"offload/internal/fault"
)

// TestMappedWeightsTruncated: weights mapped in place (MapHost) from a file
// that is then truncated fault inside the kernels, on the stream goroutine
// and on the kernel pool's workers alike; the fault is reported by
// Synchronize as fault.ErrFileChanged, and the device keeps working.
func TestMappedWeightsTruncated(t *testing.T) {
	const rows, cols = 512, 1024 // 512k multiply-adds per row: the pool runs it
	path := filepath.Join(t.TempDir(), "w.bin")
	if err := os.WriteFile(path, make([]byte, rows*cols*4), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mm, err := unix.Mmap(int(f.Fd()), 0, rows*cols*4, unix.PROT_READ, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mm)
	fault.Register(mm, path)
	defer fault.Unregister(mm)

	for _, threads := range []int{1, 4} {
		d := newTestDevice(t, Options{Capacity: 64 << 20, Threads: threads})
		s, _ := d.NewStream("compute")
		wb, err := d.MapHost(mm, "weights")
		if err != nil {
			t.Fatal(err)
		}
		w, _ := device.View(wb, 0, device.F32, rows, cols)
		xb, _ := d.Alloc(4*4*cols, "x")
		yb, _ := d.Alloc(4*4*rows, "y")
		x, _ := device.View(xb, 0, device.F32, 4, cols)
		y, _ := device.View(yb, 0, device.F32, 4, rows)
		if err := d.MatMul(s, y, x, w); err != nil {
			t.Fatal(err)
		}
		if err := d.Synchronize(s); err != nil {
			t.Fatalf("before truncation: %v", err)
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.MatMul(s, y, x, w); err != nil {
			t.Fatal(err)
		}
		if err := d.Synchronize(s); !errors.Is(err, fault.ErrFileChanged) {
			t.Fatalf("threads %d: got %v, want ErrFileChanged", threads, err)
		}
		// The stream and the pool still work.
		if err := d.MatMul(s, y, x, x); err == nil {
			t.Fatal("shape check skipped")
		}
		if err := d.Add(s, y, y); err != nil || d.Synchronize(s) != nil {
			t.Fatalf("device broken after the fault: %v", err)
		}
		d.Close()
		os.WriteFile(path, make([]byte, rows*cols*4), 0o644) // restore the pages for the next round
	}
}
