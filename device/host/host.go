// Package host is the host backend of device.Device: a bounded "device
// memory" kept in separate Go allocations, streams run by goroutines, and
// kernels computed on the CPU (package device/kernels for the products).
//
// It exists so that CPU runs obey the same rules as a GPU (DESIGN.md,
// invariants 1 and 2): every Alloc is its own allocation counted against
// Capacity, copies really copy, and kernels read only those buffers, so a
// computation that uses a weight it never transferred reads whatever the
// buffer held (zeros), never the source. With Options.Link set, transfers
// are paced to a link speed, so the overlap of copies and compute can be
// studied on a machine without an accelerator.
package host

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"github.com/dustin/go-humanize"

	"offload/device"
	"offload/device/kernels"
	"offload/internal/fault"
	"offload/internal/sysmem"
	"offload/internal/units"
)

// Options configures a host device.
type Options struct {
	// Capacity is the device memory in bytes; required (> 0).
	Capacity int64
	// Link is the speed in bytes/s that host<->device copies are paced to
	// (internal/units.ParseLink reads it from a flag); 0 leaves them unpaced
	// (memcpy speed).
	Link float64
	// Threads is the number of compute threads; 0 means GOMAXPROCS. It also
	// sets kernels.SetThreads, which is process-wide: the last device
	// created decides it for the matrix products.
	Threads int
}

// errClosed is returned by every call on a closed device.
var errClosed = errors.New("host: device closed")

// Device is the host backend. It implements device.Device.
type Device struct {
	opts    Options
	threads int
	start   time.Time
	done    chan struct{} // closed by Close: unblocks waits and paced sleeps

	mu      sync.RWMutex
	used    int64
	peak    int64
	freed   int64 // bytes freed since the last forced collection
	closed  bool
	streams []*stream
	workers sync.WaitGroup

	// linkMu guards linkFree: when each direction of the link (0 host to
	// device, 1 device to host) is next free, on the device clock. Paced
	// copies book the link back to back from it, so a run of copies is paced
	// as one continuous transfer whatever the sleep granularity.
	linkMu   sync.Mutex
	linkFree [2]time.Duration

	ropeMu sync.Mutex
	rope   map[ropeKey]*ropeTable
}

var _ device.Device = (*Device)(nil)

// The host backend registers as "host". Without a capacity it may use the
// machine's physical memory: a budget no run can exceed without swapping,
// rather than an unbounded one that lets a bad flag exhaust the machine.
func init() {
	device.Register("host", func(c device.Config) (device.Device, error) {
		capacity := c.Capacity
		if capacity == 0 {
			capacity = sysmem.Physical()
		}
		kernels.SetPlain(c.PlainKernels) // process-wide, like the thread count
		return New(Options{Capacity: capacity, Link: c.Link, Threads: c.Threads})
	})
}

// New makes a host device.
func New(opts Options) (*Device, error) {
	if opts.Capacity <= 0 {
		return nil, fmt.Errorf("host: capacity must be positive, got %d", opts.Capacity)
	}
	if opts.Link < 0 || (opts.Link > 0 && opts.Link < units.MinLink) || math.IsNaN(opts.Link) || math.IsInf(opts.Link, 0) {
		// A crawl (1 B/s) would make a run take years and say nothing.
		return nil, fmt.Errorf("host: link speed %g B/s must be 0 (unpaced) or at least %s", opts.Link, units.Rate(units.MinLink))
	}
	if opts.Threads < 0 {
		return nil, fmt.Errorf("host: threads must not be negative, got %d", opts.Threads)
	}
	th := opts.Threads
	if th == 0 {
		th = runtime.GOMAXPROCS(0)
	}
	kernels.SetThreads(th)
	return &Device{opts: opts, threads: th, start: time.Now(), done: make(chan struct{}), rope: map[ropeKey]*ropeTable{}}, nil
}

// Name says "host", with the link speed when copies are paced.
func (d *Device) Name() string {
	if d.opts.Link > 0 {
		return fmt.Sprintf("host (%d threads, %s kernels, link %s/s)", d.threads, kernels.Impl(), humanize.SI(d.opts.Link, "B"))
	}
	return fmt.Sprintf("host (%d threads, %s kernels)", d.threads, kernels.Impl())
}

// Capacity is Options.Capacity.
func (d *Device) Capacity() int64 { return d.opts.Capacity }

// Used is the sum of the sizes of the live buffers.
func (d *Device) Used() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.used
}

// Peak is the most Used has ever been.
func (d *Device) Peak() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.peak
}

// now is the device clock: time since New, monotonic.
func (d *Device) now() time.Duration { return time.Since(d.start) }

// buffer is one Alloc: its own Go allocation, 8-byte aligned so that any
// element-aligned offset is aligned for its type.
type buffer struct {
	dev   *Device
	data  []byte // nil once freed (guarded by dev.mu)
	size  int64
	label string
	freed bool // guarded by dev.mu
	// readonly buffers alias host memory (MapHost): nothing may write them.
	readonly bool
}

func (b *buffer) Size() int64 { return b.size }

// Alloc reserves size bytes as a new Go allocation, failing with
// device.ErrOutOfMemory when Used()+size would exceed Capacity().
func (d *Device) Alloc(size int64, label string) (device.Buffer, error) {
	if size < 0 {
		return nil, fmt.Errorf("host: alloc %q: negative size %d", label, size)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, errClosed
	}
	if d.used+size > d.opts.Capacity {
		used := d.used
		d.mu.Unlock()
		return nil, fmt.Errorf("host: alloc %q of %s with %s of %s in use: %w", label,
			humanize.IBytes(uint64(size)), humanize.IBytes(uint64(used)), humanize.IBytes(uint64(d.opts.Capacity)), device.ErrOutOfMemory)
	}
	d.used += size
	d.peak = max(d.peak, d.used)
	collect := size >= gcAllocMin && d.freed >= gcFreedMin
	if collect {
		d.freed = 0
	}
	d.mu.Unlock()
	if collect {
		// Freed buffers are only returned by the garbage collector; without
		// this a free-then-alloc cycle of big buffers could hold twice the
		// capacity in RAM until the collector's own pacing caught up.
		runtime.GC()
	}

	words := make([]uint64, (size+7)/8)
	data := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), size)
	return &buffer{dev: d, data: data, size: size, label: label}, nil
}

// MapHost makes a read-only buffer of host memory b without copying it
// (counted against Capacity). b must be aligned for its widest element type
// (8 bytes) and stay unchanged until Free.
func (d *Device) MapHost(b []byte, label string) (device.Buffer, error) {
	size := int64(len(b))
	if size > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%8 != 0 {
		return nil, fmt.Errorf("host: map %q: host memory not 8-byte aligned: %w", label, device.ErrUnsupported)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	if d.used+size > d.opts.Capacity {
		return nil, fmt.Errorf("host: map %q of %s with %s of %s in use: %w", label,
			humanize.IBytes(uint64(size)), humanize.IBytes(uint64(d.used)), humanize.IBytes(uint64(d.opts.Capacity)), device.ErrOutOfMemory)
	}
	d.used += size
	d.peak = max(d.peak, d.used)
	return &buffer{dev: d, data: b, size: size, label: label, readonly: true}, nil
}

// Free returns b's bytes to the budget and drops the device's reference to
// its memory. Freeing a buffer twice, or one of another device, does nothing.
func (d *Device) Free(b device.Buffer) {
	hb, ok := b.(*buffer)
	if !ok || hb == nil || hb.dev != d {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if hb.freed || d.closed {
		return
	}
	hb.freed = true
	hb.data = nil
	d.used -= hb.size
	if !hb.readonly {
		d.freed += hb.size
	}
}

// A big Alloc forces a collection first when at least gcFreedMin bytes were
// freed since the last one, so the freed memory is reused rather than added.
const (
	gcAllocMin = 64 << 20
	gcFreedMin = 256 << 20
)

// Options returns the options the device was made with (Threads resolved).
func (d *Device) Options() Options {
	o := d.opts
	o.Threads = d.threads
	return o
}

// bytesOf returns the live bytes of buffer b, checking it belongs to d.
func (d *Device) bytesOf(b device.Buffer, what string) (*buffer, []byte, error) {
	hb, ok := b.(*buffer)
	if !ok || hb == nil {
		return nil, nil, fmt.Errorf("%s: not a buffer of the host device (%T)", what, b)
	}
	if hb.dev != d {
		return nil, nil, fmt.Errorf("%s: buffer %q belongs to another device", what, hb.label)
	}
	d.mu.RLock()
	data, closed, freed := hb.data, d.closed, hb.freed
	d.mu.RUnlock()
	if closed {
		return nil, nil, errClosed
	}
	if freed {
		return nil, nil, fmt.Errorf("%s: buffer %q was freed", what, hb.label)
	}
	return hb, data, nil
}

// HostAlloc returns ordinary Go memory: on the host every page is "pinned".
func (d *Device) HostAlloc(size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("host: host alloc: negative size %d", size)
	}
	return make([]byte, size), nil
}

// HostFree does nothing; the garbage collector owns host memory.
func (d *Device) HostFree([]byte) {}

// Close stops the streams (queued work that has not started is dropped and
// its events fire with an error) and frees every buffer. Calling it again
// does nothing.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.used = 0
	streams := d.streams
	d.mu.Unlock()
	close(d.done)
	for _, s := range streams {
		s.mu.Lock()
		s.closed = true
		s.cond.Broadcast()
		s.mu.Unlock()
	}
	d.workers.Wait()
	return nil
}

// stream is an in-order queue run by one goroutine.
type stream struct {
	dev  *Device
	name string

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []item
	closed bool
	err    error // first error raised since it was last reported

	// ready is when the previous item finished on the device clock (for a
	// paced copy: its booked end on the link, not the wake-up after the
	// sleep). Only the stream's goroutine touches it.
	ready time.Duration
}

func (s *stream) Name() string { return s.name }

// item is one queued piece of work, or an event record when ev is set.
type item struct {
	op       string
	run      func(it *item) error
	ev       *event
	take     bool // an event made by Synchronize: it takes the error away
	enqueued time.Duration
	// end, when set by a paced copy, is its booked end on the link; the
	// stream's next item counts as ready from then, not from the wake-up.
	end time.Duration
	// prevEnd is when the stream's previous item ended (set when it runs).
	prevEnd time.Duration
}

// event fires (done is closed) when its stream reaches it.
type event struct {
	s    *stream
	done chan struct{}
	at   time.Duration
	err  error
}

// NewStream starts a goroutine that runs the stream's queue in order.
func (d *Device) NewStream(name string) (device.Stream, error) {
	s := &stream{dev: d, name: name}
	s.cond = sync.NewCond(&s.mu)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	d.streams = append(d.streams, s)
	d.workers.Add(1)
	go s.loop()
	return s, nil
}

func (d *Device) streamOf(s device.Stream, op string) (*stream, error) {
	hs, ok := s.(*stream)
	if !ok || hs == nil || hs.dev != d {
		return nil, fmt.Errorf("host: %s: not a stream of this device (%T)", op, s)
	}
	return hs, nil
}

func (s *stream) enqueue(it item) error {
	it.enqueued = s.dev.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if it.ev != nil {
			it.ev.err = errClosed
			close(it.ev.done)
		}
		return errClosed
	}
	s.queue = append(s.queue, it)
	s.cond.Signal()
	return nil
}

// work enqueues fn as operation op.
func (s *stream) work(op string, fn func(it *item) error) error {
	return s.enqueue(item{op: op, run: fn})
}

func (s *stream) loop() {
	defer s.dev.workers.Done()
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closed {
			s.cond.Wait()
		}
		if s.closed {
			// Drop what has not started; nobody may hang on its events.
			for _, it := range s.queue {
				if it.ev != nil {
					it.ev.err = errClosed
					close(it.ev.done)
				}
			}
			s.queue = nil
			s.mu.Unlock()
			return
		}
		it := s.queue[0]
		s.queue[0] = item{}
		s.queue = s.queue[1:]
		if it.ev != nil {
			it.ev.err = s.err
			if it.take {
				s.err = nil
			}
			s.mu.Unlock()
			// The event fires when the work before it completed, on the
			// stream's clock (a paced copy completes at its booked end, not
			// when this goroutine got to it), and no earlier than it was
			// recorded; later work cannot begin before it.
			at := max(s.ready, it.enqueued)
			s.ready = at
			it.ev.at = at
			close(it.ev.done)
			continue
		}
		s.mu.Unlock()

		err := s.runItem(&it)
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("host: stream %s: %s: %w", s.name, it.op, err)
			}
			s.mu.Unlock()
		}
	}
}

// runItem runs one item, turning a panic into an error so that a bug in a
// kernel is reported by Synchronize instead of killing the process. A fault
// reading a memory-mapped model file (truncated while mapped) becomes
// fault.ErrFileChanged.
func (s *stream) runItem(it *item) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if ferr := fault.Recovered(r); ferr != nil {
				err = ferr
			} else {
				err = fmt.Errorf("panic: %v", r)
			}
		}
		if it.end > 0 {
			s.ready = it.end
		} else {
			s.ready = s.dev.now()
		}
	}()
	it.prevEnd = s.ready
	return it.run(it)
}

// Record enqueues an event on s. On a stream of another device, or after
// Close, it returns an event that has already fired with an error.
func (d *Device) Record(s device.Stream) device.Event {
	ev := &event{done: make(chan struct{})}
	hs, err := d.streamOf(s, "Record")
	if err != nil {
		ev.err = err
		close(ev.done)
		return ev
	}
	ev.s = hs
	hs.enqueue(item{op: "record", ev: ev}) // on error it fires ev itself
	return ev
}

// Wait makes later work on s wait until e has fired. A foreign or nil event
// is reported as an error by the next Synchronize of s.
func (d *Device) Wait(s device.Stream, e device.Event) {
	hs, err := d.streamOf(s, "Wait")
	if err != nil {
		return
	}
	ev, ok := e.(*event)
	if !ok || ev == nil {
		hs.work("wait", func(*item) error { return fmt.Errorf("not an event of the host device (%T)", e) })
		return
	}
	hs.work("wait", func(*item) error {
		select {
		case <-ev.done:
			return nil
		case <-d.done:
			return errClosed
		}
	})
}

// Synchronize waits for everything enqueued on s so far and returns (and
// clears) the first error raised on s since the last Synchronize.
func (d *Device) Synchronize(s device.Stream) error {
	hs, err := d.streamOf(s, "Synchronize")
	if err != nil {
		return err
	}
	ev := &event{s: hs, done: make(chan struct{})}
	hs.enqueue(item{op: "synchronize", ev: ev, take: true})
	<-ev.done
	return ev.err
}

// EventSynchronize waits for e and returns the first error its stream had
// raised (and not yet reported by Synchronize) when e fired.
func (d *Device) EventSynchronize(e device.Event) error {
	ev, ok := e.(*event)
	if !ok || ev == nil {
		return fmt.Errorf("host: EventSynchronize: not an event of the host device (%T)", e)
	}
	<-ev.done
	return ev.err
}

// EventTime is when e fired, from the monotonic clock started by New.
func (d *Device) EventTime(e device.Event) (time.Duration, error) {
	ev, ok := e.(*event)
	if !ok || ev == nil {
		return 0, fmt.Errorf("host: EventTime: not an event of the host device (%T)", e)
	}
	select {
	case <-ev.done:
		if ev.s == nil || ev.s.dev != d {
			return 0, fmt.Errorf("host: EventTime: event of another device")
		}
		if errors.Is(ev.err, errClosed) {
			return 0, ev.err
		}
		return ev.at, nil
	default:
		return 0, errors.New("host: EventTime: event has not fired")
	}
}

// parallel runs fn over [0,total) in blocks on the kernels' worker pool
// (kernels.ParallelFor: parked workers, no goroutine started per call) when
// work (about the number of element operations) is large enough to pay for
// the handoff.
func (d *Device) parallel(total, work int, fn func(lo, hi int)) {
	kernels.ParallelFor(total, work, fn)
}
