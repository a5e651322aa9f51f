package devicetest

import (
	"errors"
	"unsafe"

	"offload/device"
)

// testMapHost: a backend that says it MapsHost computes on host memory in
// place (a product reads the mapped weights), counts the mapping against its
// capacity, refuses every write into it, and releases it on Free; one that
// does not returns ErrUnsupported and allocates nothing.
func testMapHost(f *fixture) {
	d, s := f.dev, f.s
	const in, out = 24, 5
	words := make([]uint64, in*out/2) // 8-byte aligned host memory, as a mapping is
	host := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), in*out*4)
	wv := f.randVals(in*out, -1, 1)
	b, held := encode(device.F32, wv)
	copy(host, b)
	used := d.Used()
	mb, err := d.MapHost(host, "mapped weights")
	if !d.Caps().MapsHost {
		if !errors.Is(err, device.ErrUnsupported) {
			f.t.Fatalf("MapHost on a backend without MapsHost: %v, want ErrUnsupported", err)
		}
		if d.Used() != used {
			f.t.Fatalf("a refused MapHost changed Used from %d to %d", used, d.Used())
		}
		return
	}
	if err != nil {
		f.t.Fatalf("MapHost: %v", err)
	}
	if d.Used() != used+int64(len(host)) {
		f.t.Fatalf("Used %d after mapping %d bytes, want %d", d.Used(), len(host), used+int64(len(host)))
	}
	w, err := device.View(mb, 0, device.F32, out, in)
	if err != nil {
		f.t.Fatal(err)
	}
	x, xv := f.input(device.F32, 3, in)
	y := f.tensor(device.F32, 3, out)
	if err := d.MatMul(s, y, x, w); err != nil {
		f.t.Fatalf("MatMul from mapped weights: %v", err)
	}
	got := f.get(y)
	want, scale := refMatMul(xv, held, 3, in, out)
	f.near("MatMul (mapped w)", got, want, scale, 1e-5)
	// Writes into the mapping are refused at enqueue time.
	if err := d.CopyToDevice(s, mb, 0, make([]byte, 8)); err == nil {
		f.t.Fatal("CopyToDevice into mapped host memory succeeded")
	}
	if err := d.CopyDevice(s, mb, 0, y.Buf, y.Off, 8); err == nil {
		f.t.Fatal("CopyDevice into mapped host memory succeeded")
	}
	wOut, _ := device.View(mb, 0, device.F32, 3, out)
	if err := d.MatMul(s, wOut, x, f.tensor(device.F32, out, in)); err == nil {
		f.t.Fatal("a kernel wrote its output into mapped host memory")
	}
	f.sync(s)
	if string(host) != string(b) {
		f.t.Fatal("mapped host memory changed")
	}
	before := d.Used()
	d.Free(mb)
	if d.Used() != before-int64(len(host)) {
		f.t.Fatalf("Used %d after freeing a %d-byte mapping, want %d", d.Used(), len(host), before-int64(len(host)))
	}
	// A mapping beyond the capacity fails like Alloc.
	big := make([]uint64, (f.capacity+64)/8+1)
	if _, err := d.MapHost(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(big))), len(big)*8), "too big"); !errors.Is(err, device.ErrOutOfMemory) {
		f.t.Fatalf("MapHost beyond the capacity: %v, want ErrOutOfMemory", err)
	}
}
