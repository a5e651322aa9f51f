package host

import (
	"fmt"
	"time"
	"unsafe"

	"offload/device"
	"offload/internal/fault"
)

const (
	toDevice = 0
	toHost   = 1
)

// CopyToDevice enqueues a copy of src into dst at byte offset off.
func (d *Device) CopyToDevice(s device.Stream, dst device.Buffer, off int64, src []byte) error {
	st, err := d.streamOf(s, "CopyToDevice")
	if err != nil {
		return err
	}
	b, data, err := d.bytesOf(dst, "host: CopyToDevice dst")
	if err != nil {
		return err
	}
	if b.readonly {
		return fmt.Errorf("host: CopyToDevice: buffer %q is read-only mapped host memory", b.label)
	}
	n := int64(len(src))
	if off < 0 || off > b.size-n {
		return fmt.Errorf("host: CopyToDevice: %d bytes at offset %d do not fit buffer %q of %d bytes", n, off, b.label, b.size)
	}
	if n == 0 {
		return nil
	}
	to := data[off : off+n]
	return st.work("copy to device", func(it *item) error { return d.transfer(it, toDevice, to, src) })
}

// CopyToHost enqueues a copy of len(dst) bytes of src at byte offset off.
func (d *Device) CopyToHost(s device.Stream, dst []byte, src device.Buffer, off int64) error {
	st, err := d.streamOf(s, "CopyToHost")
	if err != nil {
		return err
	}
	b, data, err := d.bytesOf(src, "host: CopyToHost src")
	if err != nil {
		return err
	}
	n := int64(len(dst))
	if off < 0 || off > b.size-n {
		return fmt.Errorf("host: CopyToHost: %d bytes at offset %d do not fit buffer %q of %d bytes", n, off, b.label, b.size)
	}
	if n == 0 {
		return nil
	}
	from := data[off : off+n]
	return st.work("copy to host", func(it *item) error { return d.transfer(it, toHost, dst, from) })
}

// CopyDevice enqueues a device-to-device copy of n bytes. It is not paced:
// it models the device's own memory bandwidth, not the link. Overlapping
// ranges are copied as if through a temporary (memmove).
func (d *Device) CopyDevice(s device.Stream, dst device.Buffer, dstOff int64, src device.Buffer, srcOff int64, n int64) error {
	st, err := d.streamOf(s, "CopyDevice")
	if err != nil {
		return err
	}
	db, ddata, err := d.bytesOf(dst, "host: CopyDevice dst")
	if err != nil {
		return err
	}
	if db.readonly {
		return fmt.Errorf("host: CopyDevice: buffer %q is read-only mapped host memory", db.label)
	}
	sb, sdata, err := d.bytesOf(src, "host: CopyDevice src")
	if err != nil {
		return err
	}
	switch {
	case n < 0:
		return fmt.Errorf("host: CopyDevice: negative length %d", n)
	case dstOff < 0 || dstOff > db.size-n:
		return fmt.Errorf("host: CopyDevice: %d bytes at offset %d do not fit dst buffer %q of %d bytes", n, dstOff, db.label, db.size)
	case srcOff < 0 || srcOff > sb.size-n:
		return fmt.Errorf("host: CopyDevice: %d bytes at offset %d do not fit src buffer %q of %d bytes", n, srcOff, sb.label, sb.size)
	case n == 0:
		return nil
	}
	to, from := ddata[dstOff:dstOff+n], sdata[srcOff:srcOff+n]
	return st.work("copy device", func(*item) error {
		if overlap(to, from) {
			copy(to, from) // memmove; not worth splitting
			return nil
		}
		return d.memcpy(to, from)
	})
}

func overlap(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}

// transfer runs one host<->device copy. Unpaced it is a memcpy. Paced, the
// copy books the link in direction dir from max(when this stream was ready
// for it, when the link is free) for n/Link seconds, does the memcpy, and
// holds the stream until the booked end (an absolute deadline, so sleep
// overshoot never accumulates over a run of copies).
func (d *Device) transfer(it *item, dir int, dst, src []byte) error {
	if d.opts.Link <= 0 {
		return d.memcpy(dst, src)
	}
	dur := time.Duration(float64(len(src)) / d.opts.Link * float64(time.Second))
	d.linkMu.Lock()
	begin := max(it.enqueued, it.prevEnd, d.linkFree[dir])
	end := begin + dur
	d.linkFree[dir] = end
	d.linkMu.Unlock()
	if err := d.memcpy(dst, src); err != nil {
		return err
	}
	if t := d.now(); t >= end {
		it.end = t // the memcpy itself was slower than the link
		return nil
	}
	it.end = end
	t := time.NewTimer(end - d.now())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-d.done:
		return errClosed
	}
}

// memcpySplit is the size from which a copy is split over goroutines: on a
// machine whose single core cannot saturate memory bandwidth two streams of
// copying get closer to it; below it the handoff costs more than it saves.
const memcpySplit = 4 << 20

// memcpy copies src into dst (same length, not overlapping). A source may
// be a memory-mapped model file, so every part runs under fault.Guard: a
// file truncated while mapped is returned as an error (the stream reports
// it at the next Synchronize) instead of killing the process with SIGBUS.
func (d *Device) memcpy(dst, src []byte) error {
	n := len(src)
	parts := min(d.threads, 4, n/memcpySplit)
	if parts <= 1 {
		return fault.Guard(func() { copy(dst, src) })
	}
	chunk := (n/parts + 4095) &^ 4095
	return fault.Go((n+chunk-1)/chunk, func(i int) {
		lo, hi := i*chunk, min((i+1)*chunk, n)
		copy(dst[lo:hi], src[lo:hi])
	})
}
