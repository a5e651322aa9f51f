package devicetest

import (
	"bytes"
	"slices"

	"offload/device"
)

func testAccounting(f *fixture) {
	c := f.capacity
	if got := f.dev.Capacity(); got != c {
		f.t.Fatalf("Capacity() = %d, want %d", got, c)
	}
	f.wantUsage(0, 0)
	a := f.alloc(c/2, "a")
	b := f.alloc(c/4, "b")
	f.wantUsage(3*c/4, 3*c/4)
	checkOOM(f, c/2, 3*c/4)
	cc := f.alloc(c/4, "c") // exactly full
	f.wantUsage(c, c)
	checkOOM(f, 4096, c)
	f.dev.Free(a)
	f.wantUsage(c/2, c)
	d := f.alloc(c/4, "d")
	f.wantUsage(3*c/4, c)
	f.dev.Free(b)
	f.dev.Free(cc)
	f.dev.Free(d)
	f.wantUsage(0, c)
	checkOOM(f, c+1, 0)
	if buf, err := f.dev.Alloc(-1, "negative"); err == nil {
		f.t.Errorf("Alloc(-1) succeeded")
		f.dev.Free(buf)
	}
	f.wantUsage(0, c)
}

func testManySmall(f *fixture) {
	c := f.capacity
	var bufs []device.Buffer
	for range 16 {
		bufs = append(bufs, f.alloc(c/16, "piece"))
	}
	f.wantUsage(c, c)
	checkOOM(f, c/16, c)
	// Buffers are distinct memory: write each with its own byte, read all back.
	for i, b := range bufs {
		f.upload(b, 0, bytes.Repeat([]byte{byte(i + 1)}, int(c/16)))
	}
	for i, b := range bufs {
		got := f.download(b, 0, c/16)
		if bytes.Count(got, []byte{byte(i + 1)}) != len(got) {
			f.t.Fatalf("buffer %d does not hold its own bytes: another buffer overlaps it", i)
		}
	}
	for _, b := range bufs {
		f.dev.Free(b)
	}
	f.wantUsage(0, c)
}

func testCopyRoundTrip(f *fixture) {
	const size = 3<<20 + 5
	b := f.alloc(size, "roundtrip")
	model := f.randBytes(size)
	f.upload(b, 0, model)
	if got := f.download(b, 0, size); !bytes.Equal(got, model) {
		f.t.Fatal("whole-buffer round trip differs")
	}
	// Several copies queued at once, some overlapping: they must apply in order.
	regions := []struct{ off, n int64 }{
		{0, 1}, {1, 13}, {5, 100}, {50, 100}, {7, 4096}, {4099, 65536}, {size - 3, 3}, {1<<20 + 1, 2 << 20}, {1<<20 + 9, 17}, {size, 0},
	}
	for _, r := range regions {
		src := f.hostBytes(f.randBytes(int(r.n)))
		if err := f.dev.CopyToDevice(f.s, b, r.off, src); err != nil {
			f.t.Fatalf("CopyToDevice(off %d, %d bytes): %v", r.off, r.n, err)
		}
		copy(model[r.off:], src)
	}
	f.sync(f.s)
	if got := f.download(b, 0, size); !bytes.Equal(got, model) {
		f.t.Fatal("buffer after queued partial copies differs from the expected bytes")
	}
	// Reads at offsets into the middle of a host slice, queued together.
	dst, err := f.dev.HostAlloc(size + 64)
	if err != nil {
		f.t.Fatalf("HostAlloc: %v", err)
	}
	defer f.dev.HostFree(dst)
	clear(dst)
	want := make([]byte, len(dst))
	for i, r := range regions {
		at := int64(i * 3)
		if err := f.dev.CopyToHost(f.s, dst[at:at+r.n], b, r.off); err != nil {
			f.t.Fatalf("CopyToHost(off %d, %d bytes): %v", r.off, r.n, err)
		}
		copy(want[at:], model[r.off:r.off+r.n])
	}
	f.sync(f.s)
	if !bytes.Equal(dst, want) {
		f.t.Fatal("partial CopyToHost results differ")
	}
}

func testCopyDevice(f *fixture) {
	const na, nb = 1 << 20, 1<<20 + 7
	a, b := f.alloc(na, "a"), f.alloc(nb, "b")
	ma, mb := f.randBytes(na), f.randBytes(nb)
	f.upload(a, 0, ma)
	f.upload(b, 0, mb)
	copies := []struct {
		dst       device.Buffer
		md        []byte
		dstOff    int64
		src       device.Buffer
		ms        []byte
		srcOff, n int64
	}{
		{b, mb, 3, a, ma, 1000, 5000},
		{a, ma, 0, a, ma, 500000, 1000},
		{b, mb, 600000, b, mb, 10, 4000},
		{a, ma, na - 1, b, mb, nb - 1, 1},
		{b, mb, 77, a, ma, 0, 0},
		{a, ma, 123457, b, mb, 200001, 300001},
	}
	for _, c := range copies {
		if err := f.dev.CopyDevice(f.s, c.dst, c.dstOff, c.src, c.srcOff, c.n); err != nil {
			f.t.Fatalf("CopyDevice(dstOff %d, srcOff %d, n %d): %v", c.dstOff, c.srcOff, c.n, err)
		}
		copy(c.md[c.dstOff:c.dstOff+c.n], slices.Clone(c.ms[c.srcOff:c.srcOff+c.n]))
	}
	f.sync(f.s)
	if !bytes.Equal(f.download(a, 0, na), ma) {
		f.t.Error("buffer a differs after device copies")
	}
	if !bytes.Equal(f.download(b, 0, nb), mb) {
		f.t.Error("buffer b differs after device copies")
	}
}

// testCopySnapshot holds invariant 1: device memory is a copy, never an alias
// of host memory, and a buffer that was never written does not hold what was
// copied into another one.
func testCopySnapshot(f *fixture) {
	const n = 4096
	pattern := bytes.Repeat([]byte{0x3C, 0x5A, 0x11, 0xEE}, n/4)
	src := f.hostBytes(pattern)
	a := f.alloc(n, "written")
	if err := f.dev.CopyToDevice(f.s, a, 0, src); err != nil {
		f.t.Fatal(err)
	}
	f.sync(f.s)
	for i := range src {
		src[i] = 0xFF
	}
	if got := f.download(a, 0, n); !bytes.Equal(got, pattern) {
		f.t.Fatal("changing the copy source after the copy completed changed the device buffer")
	}
	dst := make([]byte, n)
	if err := f.dev.CopyToHost(f.s, dst, a, 0); err != nil {
		f.t.Fatal(err)
	}
	f.sync(f.s)
	clear(dst)
	if got := f.download(a, 0, n); !bytes.Equal(got, pattern) {
		f.t.Fatal("changing the CopyToHost destination changed the device buffer")
	}
	fresh := f.alloc(n, "never written")
	if got := f.download(fresh, 0, n); bytes.Equal(got, pattern) {
		f.t.Fatal("a buffer that was never written holds the bytes copied into another buffer")
	}
}

func testCopyLarge(f *fixture) {
	const n = 48 << 20
	b := f.alloc(n, "large")
	model := f.randBytes(n)
	f.upload(b, 0, model)
	if !bytes.Equal(f.download(b, 0, n), model) {
		f.t.Fatal("48 MiB round trip differs")
	}
}
