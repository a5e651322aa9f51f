package devicetest

import (
	"encoding/binary"
	"math"
	"time"

	"offload/device"
)

// bigRows x bigCols float32 is the buffer the ordering tests move: 64 MiB,
// so that a copy takes milliseconds even on a fast link while a kernel on
// the other stream could start within microseconds if it did not wait.
const bigRows, bigCols = 16384, 1024

func f32Bytes(vals []float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// rowValue is the value every element of row r holds in the new data.
func rowValue(r int) float32 { return float32(r + 1) }

// testCopyThenCompute: the copy stream writes a large buffer, records an
// event; the compute stream waits on it and reads the buffer. The reader must
// see the new data, never the old.
func testCopyThenCompute(f *fixture) {
	big, err := device.View(f.alloc(bigRows*bigCols*4, "big"), 0, device.F32, bigRows, bigCols)
	if err != nil {
		f.t.Fatal(err)
	}
	old := make([]float32, bigRows*bigCols)
	for i := range old {
		old[i] = -7
	}
	f.upload(big.Buf, 0, f32Bytes(old))
	rows := []int32{bigRows - 1, 0, bigRows / 2, bigRows - 2}
	idx := f.index(rows)
	dst := f.tensor(device.F32, len(rows), bigCols)

	fresh := make([]float32, bigRows*bigCols)
	for r := range bigRows {
		for c := range bigCols {
			fresh[r*bigCols+c] = rowValue(r)
		}
	}
	src := f.hostBytes(f32Bytes(fresh))

	cp, comp := f.stream("copy"), f.stream("compute")
	for round := range 2 {
		if err := f.dev.CopyToDevice(cp, big.Buf, 0, src); err != nil {
			f.t.Fatal(err)
		}
		e := f.dev.Record(cp)
		f.dev.Wait(comp, e)
		if err := f.dev.GatherRows(comp, dst, big, idx); err != nil {
			f.t.Fatal(err)
		}
		out := make([]byte, dst.Bytes())
		if err := f.dev.CopyToHost(comp, out, dst.Buf, dst.Off); err != nil {
			f.t.Fatal(err)
		}
		f.sync(comp)
		f.sync(cp)
		got := decode(device.F32, out)
		for i, r := range rows {
			for c := range bigCols {
				if v := got[i*bigCols+c]; v != float64(rowValue(int(r))) {
					f.t.Fatalf("round %d: compute stream read row %d col %d = %g after waiting on the copy's event, want %g (old data is -7)",
						round, r, c, v, rowValue(int(r)))
				}
			}
		}
		// Second round: restore the old data first, so a reader that skipped
		// the wait would again see it.
		f.upload(big.Buf, 0, f32Bytes(old))
	}
}

// testComputeThenCopy: the compute stream updates a large buffer; the copy
// stream waits on its event and reads the buffer back.
func testComputeThenCopy(f *fixture) {
	y, err := device.View(f.alloc(bigRows*bigCols*4, "y"), 0, device.F32, bigRows, bigCols)
	if err != nil {
		f.t.Fatal(err)
	}
	x, err := device.View(f.alloc(bigRows*bigCols*4, "x"), 0, device.F32, bigRows, bigCols)
	if err != nil {
		f.t.Fatal(err)
	}
	ones := make([]float32, bigRows*bigCols)
	for i := range ones {
		ones[i] = 1
	}
	f.upload(y.Buf, 0, f32Bytes(ones))
	f.upload(x.Buf, 0, f32Bytes(ones))
	comp, cp := f.stream("compute"), f.stream("copy")
	for range 3 {
		if err := f.dev.Add(comp, y, x); err != nil {
			f.t.Fatal(err)
		}
	}
	e := f.dev.Record(comp)
	f.dev.Wait(cp, e)
	tail := make([]byte, 4*bigCols)
	if err := f.dev.CopyToHost(cp, tail, y.Buf, y.Off+(bigRows-1)*bigCols*4); err != nil {
		f.t.Fatal(err)
	}
	f.sync(cp)
	f.sync(comp)
	for c, v := range decode(device.F32, tail) {
		if v != 4 {
			f.t.Fatalf("copy stream read y[last][%d] = %g after waiting on the compute event, want 4", c, v)
		}
	}
}

// testChain orders three streams: A copies x in, B adds it into y, C reads y.
func testChain(f *fixture) {
	const n = 1 << 18
	x, y := f.tensor(device.F32, 1, n), f.tensor(device.F32, 1, n)
	xv := f.randVals(n, -1, 1)
	yv := f.set(y, f.randVals(n, -1, 1))
	a, b, c := f.stream("a"), f.stream("b"), f.stream("c")
	xb, xheld := encode(device.F32, xv)
	if err := f.dev.CopyToDevice(a, x.Buf, x.Off, f.hostBytes(xb)); err != nil {
		f.t.Fatal(err)
	}
	f.dev.Wait(b, f.dev.Record(a))
	if err := f.dev.Add(b, y, x); err != nil {
		f.t.Fatal(err)
	}
	eb := f.dev.Record(b)
	f.dev.Wait(c, eb)
	out := make([]byte, y.Bytes())
	if err := f.dev.CopyToHost(c, out, y.Buf, y.Off); err != nil {
		f.t.Fatal(err)
	}
	if err := f.dev.EventSynchronize(f.dev.Record(c)); err != nil {
		f.t.Fatalf("EventSynchronize: %v", err)
	}
	want := make([]float64, n)
	for i := range want {
		want[i] = float64(float32(xheld[i]) + float32(yv[i]))
	}
	f.near("y after a->b->c chain", decode(device.F32, out), want, nil, 0)
	for _, s := range []device.Stream{a, b, c} {
		f.sync(s)
	}
}

// testEventTime: times of events along one stream never decrease, and an
// event recorded after a Wait is not earlier than the event waited on.
func testEventTime(f *fixture) {
	const n = 4 << 20
	b := f.alloc(n, "b")
	x, y := f.tensor(device.F32, 64, 1024), f.tensor(device.F32, 64, 1024)
	f.set(x, f.randVals(64*1024, -1, 1))
	f.set(y, f.randVals(64*1024, -1, 1))
	src := f.hostBytes(f.randBytes(n))
	other := f.stream("other")
	var evs []device.Event
	evs = append(evs, f.dev.Record(f.s))
	if err := f.dev.CopyToDevice(f.s, b, 0, src); err != nil {
		f.t.Fatal(err)
	}
	evs = append(evs, f.dev.Record(f.s))
	mid := evs[1]
	f.dev.Wait(other, mid)
	after := f.dev.Record(other)
	if err := f.dev.Add(f.s, y, x); err != nil {
		f.t.Fatal(err)
	}
	evs = append(evs, f.dev.Record(f.s), f.dev.Record(f.s))
	if err := f.dev.CopyDevice(f.s, b, 0, b, n/2, n/2); err != nil {
		f.t.Fatal(err)
	}
	evs = append(evs, f.dev.Record(f.s))
	f.sync(f.s)
	f.sync(other)
	var prev time.Duration
	for i, e := range evs {
		if err := f.dev.EventSynchronize(e); err != nil {
			f.t.Fatalf("EventSynchronize(event %d): %v", i, err)
		}
		tm, err := f.dev.EventTime(e)
		if err != nil {
			f.t.Fatalf("EventTime(event %d): %v", i, err)
		}
		if tm < 0 || tm < prev {
			f.t.Errorf("EventTime(event %d) = %v, before the previous event on the stream (%v)", i, tm, prev)
		}
		prev = tm
	}
	tm, err := f.dev.EventTime(mid)
	if err != nil {
		f.t.Fatal(err)
	}
	ta, err := f.dev.EventTime(after)
	if err != nil {
		f.t.Fatal(err)
	}
	if ta < tm {
		f.t.Errorf("event recorded after Wait fired at %v, before the awaited event (%v)", ta, tm)
	}
}

// testSyncErrors: an error raised by queued work (an index out of range,
// which only the running kernel can see) is returned by Synchronize, and
// once returned does not poison later work.
func testSyncErrors(f *fixture) {
	src, _ := f.input(device.F32, 10, 7)
	dst := f.tensor(device.F32, 2, 7)
	for _, bad := range [][]int32{{0, 10}, {-1, 3}, {1 << 30, 0}} {
		idx := f.index(bad)
		err := f.dev.GatherRows(f.s, dst, src, idx)
		if err == nil {
			err = f.dev.Synchronize(f.s)
		}
		if err == nil {
			f.t.Errorf("GatherRows with indices %v into %d rows: no error from the call or from Synchronize", bad, src.Rows)
		}
		// Later work runs and reports no stale error.
		good := f.index([]int32{9, 2})
		if err := f.dev.GatherRows(f.s, dst, src, good); err != nil {
			f.t.Fatal(err)
		}
		if err := f.dev.Synchronize(f.s); err != nil {
			f.t.Fatalf("Synchronize after the error was reported: %v", err)
		}
	}
	colsDst := f.tensor(device.F32, 2, 10)
	idx := f.index([]int32{3, 7})
	if err := f.dev.GatherColsT(f.s, colsDst, src, idx); err == nil {
		if err := f.dev.Synchronize(f.s); err == nil {
			f.t.Errorf("GatherColsT with index 7 into %d columns: no error from the call or from Synchronize", src.Cols)
		}
	}
	f.sync(f.s)
}
