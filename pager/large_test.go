package pager

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentPages counts the pages of b (rounded out to page boundaries) that
// are in memory, using mincore.
func residentPages(t *testing.T, b []byte) (resident, total int) {
	t.Helper()
	ps := os.Getpagesize()
	start := uintptr(unsafe.Pointer(&b[0]))
	aligned := start &^ uintptr(ps-1)
	n := int(start-aligned) + len(b)
	total = (n + ps - 1) / ps
	vec := make([]byte, total)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, aligned, uintptr(n), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		t.Skipf("mincore: %v", errno)
	}
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident, total
}

// Opening a file holding a 1 GiB tensor must only parse the header: the
// tensor is a view whose pages have not been read, and Open allocates
// kilobytes, not the tensor.
func TestOpenLargeSparseIsAView(t *testing.T) {
	const rows, cols = 16384, 16384 // F32: 1 GiB
	hdr := buildGGUF(3, 1, 1, oneKV("general.architecture", "llama"),
		[]rawTensor{{"big.weight", []uint64{cols, rows}, uint32(F32), 0}}, 0)
	path := filepath.Join(t.TempDir(), "big.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(hdr)) + rows*cols*4); err != nil { // sparse: no data blocks
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := Open(path)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("Open allocated %d bytes for a 1 GiB tensor; want a view (< 1 MiB)", alloc)
	}
	big, ok := m.Tensor("big.weight")
	if !ok || len(big.Data) != rows*cols*4 || big.Rows() != rows || big.Cols() != cols || m.Bytes() != rows*cols*4 {
		t.Fatalf("tensor: ok=%v len=%d shape=%v", ok, len(big.Data), big.Shape)
	}
	if &big.Data[0] != &m.mappings[0][len(hdr)] {
		t.Error("Data is not a view into the mapping")
	}
	res, total := residentPages(t, big.Data)
	if res > total/100 {
		t.Errorf("%d of %d pages resident after Open; the tensor was read", res, total)
	}
	// Touching one row faults its pages in.
	row := big.Row(rows / 2)
	if row[0] != 0 || row[len(row)-1] != 0 {
		t.Error("sparse data should read as zeros")
	}
	// And mincore does see that (so the zero count above was a real measurement).
	if res2, _ := residentPages(t, big.Data); res2 <= res {
		t.Errorf("resident pages %d after touching a row, %d before: mincore check is blind", res2, res)
	}
}

// WriteGGUF streams: writing a 128 MiB tensor must not allocate its size.
func TestWriteGGUFStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 128 MiB")
	}
	const n = 128 << 20
	chunk := make([]byte, 1<<20)
	path := filepath.Join(t.TempDir(), "stream.gguf")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := WriteGGUF(path, nil, []TensorSpec{{"t", F32, []int{n / 4}}}, func(i int, w io.Writer) error {
		for k := 0; k < n/len(chunk); k++ {
			chunk[0] = byte(k)
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("WriteGGUF of %d bytes allocated %d bytes; it should stream through a bounded buffer", n, alloc)
	}
	m := openT(t, path)
	tn, _ := m.Tensor("t")
	if len(tn.Data) != n || tn.Data[len(chunk)*77] != 77 {
		t.Error("streamed data not read back")
	}
}
