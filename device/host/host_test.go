package host

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"

	"offload/device"
	"offload/device/devicetest"
)

func newTestDevice(t *testing.T, opts Options) *Device {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	return d
}

// TestConformance runs the device suite over several configurations: the
// default, one compute thread (no parallel paths), and a paced link (copies
// slow enough that a missing Wait would be seen).
func TestConformance(t *testing.T) {
	configs := []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"threads=1", Options{Threads: 1}},
		{"link=8GB/s", Options{Link: 8e9, Threads: 2}},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.name != "default" {
				t.Skip("-short: default configuration only")
			}
			devicetest.Run(t, func(t *testing.T, capacity int64) device.Device {
				o := c.opts
				o.Capacity = capacity
				return newTestDevice(t, o)
			})
		})
	}
}

func TestNewRejects(t *testing.T) {
	for _, o := range []Options{{}, {Capacity: -1}, {Capacity: 1, Link: -1}, {Capacity: 1, Link: 1}, {Capacity: 1, Link: 999_999}, {Capacity: 1, Threads: -2}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// TestPacing: 64 MiB at 1 GB/s cannot finish in less than 64 ms, whether as
// one copy or as a run of small ones (which must not finish early either).
// Only lower bounds are asserted.
func TestPacing(t *testing.T) {
	const n = 64 << 20
	const link = 1e9
	minDur := time.Duration(float64(n) / link * float64(time.Second))
	for _, chunks := range []int{1, 64} {
		d := newTestDevice(t, Options{Capacity: n, Link: link})
		s, _ := d.NewStream("copy")
		buf, err := d.Alloc(n, "dst")
		if err != nil {
			t.Fatal(err)
		}
		src := make([]byte, n)
		start := time.Now()
		e0 := d.Record(s)
		step := n / chunks
		for off := 0; off < n; off += step {
			if err := d.CopyToDevice(s, buf, int64(off), src[off:off+step]); err != nil {
				t.Fatal(err)
			}
		}
		e1 := d.Record(s)
		if err := d.Synchronize(s); err != nil {
			t.Fatal(err)
		}
		wall := time.Since(start)
		t0, _ := d.EventTime(e0)
		t1, _ := d.EventTime(e1)
		if wall < minDur || t1-t0 < minDur {
			t.Errorf("%d chunks: 64 MiB at 1 GB/s took %v wall, %v by events; want >= %v", chunks, wall, t1-t0, minDur)
		}
		t.Logf("%d chunks: %v wall (link time %v)", chunks, wall, minDur)
		// The way back is paced too.
		back := make([]byte, n)
		start = time.Now()
		if err := d.CopyToHost(s, back, buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Synchronize(s); err != nil {
			t.Fatal(err)
		}
		if wall := time.Since(start); wall < minDur {
			t.Errorf("CopyToHost of 64 MiB at 1 GB/s took %v, want >= %v", wall, minDur)
		}
		d.Close()
	}
}

// TestSharedLink: two copy streams share one link direction, so two 32 MiB
// copies at 1 GB/s take at least 64 ms together.
func TestSharedLink(t *testing.T) {
	const n = 32 << 20
	d := newTestDevice(t, Options{Capacity: 2 * n, Link: 1e9})
	defer d.Close()
	a, _ := d.NewStream("a")
	b, _ := d.NewStream("b")
	ba, _ := d.Alloc(n, "a")
	bb, _ := d.Alloc(n, "b")
	src := make([]byte, n)
	start := time.Now()
	if err := d.CopyToDevice(a, ba, 0, src); err != nil {
		t.Fatal(err)
	}
	if err := d.CopyToDevice(b, bb, 0, src); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(d.Synchronize(a), d.Synchronize(b)); err != nil {
		t.Fatal(err)
	}
	if wall, want := time.Since(start), 64*time.Millisecond; wall < want {
		t.Errorf("two 32 MiB copies on one 1 GB/s link took %v, want >= %v", wall, want)
	}
}

// TestOverlap: a kernel on the compute stream runs while a long paced copy
// holds the copy stream, so its completion event comes before the copy's.
func TestOverlap(t *testing.T) {
	const n = 64 << 20
	d := newTestDevice(t, Options{Capacity: n + 1<<20, Link: 1e9})
	defer d.Close()
	cp, _ := d.NewStream("copy")
	comp, _ := d.NewStream("compute")
	buf, _ := d.Alloc(n, "weights")
	act, _ := d.Alloc(4*4096*2, "act")
	x, _ := device.View(act, 0, device.F32, 1, 4096)
	y, _ := device.View(act, 4*4096, device.F32, 1, 4096)
	if err := d.CopyToDevice(cp, buf, 0, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	copyDone := d.Record(cp)
	if err := d.Add(comp, y, x); err != nil {
		t.Fatal(err)
	}
	kernelDone := d.Record(comp)
	if err := errors.Join(d.Synchronize(cp), d.Synchronize(comp)); err != nil {
		t.Fatal(err)
	}
	tc, err1 := d.EventTime(copyDone)
	tk, err2 := d.EventTime(kernelDone)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if tk >= tc {
		t.Errorf("kernel finished at %v, after the concurrent copy (%v): streams did not overlap", tk, tc)
	}
}

// TestInvariantUnwritten: a kernel reading a buffer that was never written
// sees zeros (the host backend's fresh memory), not the host data the
// caller meant to send.
func TestInvariantUnwritten(t *testing.T) {
	d := newTestDevice(t, Options{Capacity: 1 << 20})
	defer d.Close()
	s, _ := d.NewStream("s")
	wb, _ := d.Alloc(4*8*4, "w never copied")
	xb, _ := d.Alloc(4*4, "x")
	yb, _ := d.Alloc(8*4, "y")
	w, _ := device.View(wb, 0, device.F32, 8, 4)
	x, _ := device.View(xb, 0, device.F32, 1, 4)
	y, _ := device.View(yb, 0, device.F32, 1, 8)
	ones := make([]byte, 16)
	for i := 0; i < 16; i += 4 {
		ones[i+2], ones[i+3] = 0x80, 0x3f // 1.0f
	}
	if err := d.CopyToDevice(s, xb, 0, ones); err != nil {
		t.Fatal(err)
	}
	if err := d.MatMul(s, y, x, w); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 32)
	if err := d.CopyToHost(s, out, yb, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Synchronize(s); err != nil {
		t.Fatal(err)
	}
	for i, b := range out {
		if b != 0 {
			t.Fatalf("byte %d of W·x with W never written is %#x, want 0", i, b)
		}
	}
}

func TestClose(t *testing.T) {
	d := newTestDevice(t, Options{Capacity: 1 << 20, Link: 1e6})
	s, _ := d.NewStream("s")
	b, _ := d.Alloc(1<<20, "b")
	// A 1 MiB copy at 1 MB/s would take a second; Close must not wait for it.
	if err := d.CopyToDevice(s, b, 0, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	e := d.Record(s)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.EventSynchronize(e); err == nil {
		t.Error("event queued behind a copy cut short by Close reported no error")
	}
	if d.Used() != 0 {
		t.Errorf("Used() after Close = %d", d.Used())
	}
	if _, err := d.Alloc(1, "late"); err == nil {
		t.Error("Alloc after Close succeeded")
	}
	if _, err := d.NewStream("late"); err == nil {
		t.Error("NewStream after Close succeeded")
	}
	if err := d.CopyToDevice(s, b, 0, []byte{1}); err == nil {
		t.Error("CopyToDevice after Close succeeded")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRoPEPastTable: rows past the cached rotation table compute their own
// angles and agree with the formula (the table boundary falls inside x).
func TestRoPEPastTable(t *testing.T) {
	const hd, theta = 8, 10000.0
	d := newTestDevice(t, Options{Capacity: 1 << 10})
	defer d.Close()
	s, _ := d.NewStream("s")
	b, _ := d.Alloc(4*hd*2, "x")
	x, _ := device.View(b, 0, device.F32, 2, hd)
	in := make([]float32, 2*hd)
	for i := range in {
		in[i] = float32(i%5) - 2
	}
	if err := d.CopyToDevice(s, b, 0, f32le(in)); err != nil {
		t.Fatal(err)
	}
	pos0 := ropeTableMax - 1
	if err := d.RoPE(s, x, pos0, hd, theta, device.RopeHalf); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 4*len(in))
	if err := d.CopyToHost(s, out, b, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Synchronize(s); err != nil {
		t.Fatal(err)
	}
	got := fromF32le(out)
	for r := range 2 {
		for i := range hd / 2 {
			ang := float64(pos0+r) * math.Pow(theta, -float64(2*i)/hd)
			a, c := float64(in[r*hd+i]), float64(in[r*hd+i+hd/2])
			wa, wc := a*math.Cos(ang)-c*math.Sin(ang), a*math.Sin(ang)+c*math.Cos(ang)
			if math.Abs(float64(got[r*hd+i])-wa) > 1e-5 || math.Abs(float64(got[r*hd+i+hd/2])-wc) > 1e-5 {
				t.Errorf("row %d (position %d) pair %d = (%g, %g), want (%g, %g)", r, pos0+r, i, got[r*hd+i], got[r*hd+i+hd/2], wa, wc)
			}
		}
	}
}

func f32le(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func fromF32le(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}
