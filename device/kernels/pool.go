package kernels

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// The worker pool is started lazily and only grows: SetThreads bounds how
// many participants a call uses, and idle workers cost nothing but a parked
// goroutine. One pool serves every caller; concurrent calls share it.
var (
	threads   atomic.Int32
	poolMu    sync.Mutex
	poolSize  atomic.Int32 // workers started so far
	poolQueue = make(chan *job, 256)
	jobs      = sync.Pool{New: func() any { return new(job) }}
)

func init() { threads.Store(int32(runtime.GOMAXPROCS(0))) }

// SetThreads sets how many goroutines (the caller included) a product may run
// on; n < 1 restores the default, runtime.GOMAXPROCS(0). It is safe to call
// at any time; calls already running keep the count they started with.
func SetThreads(n int) {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	threads.Store(int32(n))
}

// Threads reports the current SetThreads value.
func Threads() int { return int(threads.Load()) }

// job is one parallel call: participants claim blocks of [0,total) through
// next until none remain.
type job struct {
	fn    func(lo, hi int)
	total int
	block int
	next  atomic.Int64
	wg    sync.WaitGroup
	// A participant's panic (a fault reading weights mapped from a model
	// file that was truncated) is kept here and re-raised on the caller,
	// whose recover reports it; on a pool worker it would kill the process.
	mu       sync.Mutex
	panicked any
	failed   bool
}

// runCaught is run with faults turned into panics, and keeps the first one.
func (j *job) runCaught() {
	defer j.catch()
	j.run()
}

func (j *job) catch() {
	if r := recover(); r != nil {
		j.mu.Lock()
		if !j.failed {
			j.panicked, j.failed = r, true
		}
		j.mu.Unlock()
	}
}

func (j *job) run() {
	for {
		lo := int(j.next.Add(1)-1) * j.block
		if lo >= j.total {
			return
		}
		j.fn(lo, min(lo+j.block, j.total))
	}
}

func worker() {
	debug.SetPanicOnFault(true) // see job.panicked
	for j := range poolQueue {
		j.runCaught()
		j.wg.Done()
	}
}

func ensureWorkers(n int) {
	if int(poolSize.Load()) >= n {
		return
	}
	poolMu.Lock()
	for int(poolSize.Load()) < n {
		go worker()
		poolSize.Add(1)
	}
	poolMu.Unlock()
}

// blocksPerThread trades load balance (more blocks) against per-block
// overhead and the sequential prefetch stream a long block enjoys.
const blocksPerThread = 4

// parallelFor calls fn over disjoint ranges covering [0,total), each a
// multiple of align long except the last. work (in multiply-adds) decides
// whether handing off is worth it; small calls run inline on the caller.
func parallelFor(total, work, align int, fn func(lo, hi int)) {
	block, nblocks := planBlocks(total, work, align, blocksPerThread)
	runBlocks(total, block, nblocks, fn)
}

// inline reports whether parallelFor(total, work, align, ...) would run on
// the caller alone. Hot callers test it first and call their body directly,
// so that small calls allocate no closure.
func inline(total, work, align int) bool {
	_, nblocks := planBlocks(total, work, align, blocksPerThread)
	return nblocks == 1
}

// ParallelFor runs fn over disjoint ranges covering [0, total) on the
// kernels' worker pool (the caller included, at most Threads() at once),
// or on the caller alone when work (about the number of element
// operations) is too small to pay for a handoff. The pool's workers are
// started once and parked between calls, so a call costs a channel send per
// helper, not a goroutine start. The host backend's element-wise kernels
// use it.
func ParallelFor(total, work int, fn func(lo, hi int)) {
	if total <= 0 {
		return
	}
	parallelFor(total, work, 1, fn)
}

// planBlocks picks the block size for parallelFor: one block (inline) for
// small work, else about per blocks per thread, so blocks are claimed
// dynamically and a core slowed by other load does not stall the call.
func planBlocks(total, work, align, per int) (block, nblocks int) {
	t := int(threads.Load())
	if t <= 1 || work < inlineWork || total <= align {
		return total, 1
	}
	block = (total + t*per - 1) / (t * per)
	block = (block + align - 1) / align * align
	return block, (total + block - 1) / block
}

// runBlocks runs fn over the nblocks blocks of [0,total) on the caller and up
// to Threads()-1 pool workers.
func runBlocks(total, block, nblocks int, fn func(lo, hi int)) {
	helpers := min(int(threads.Load()), nblocks) - 1
	if helpers <= 0 {
		for lo := 0; lo < total; lo += block {
			fn(lo, min(lo+block, total))
		}
		return
	}
	ensureWorkers(helpers)
	j := jobs.Get().(*job)
	j.fn, j.total, j.block = fn, total, block
	j.next.Store(0)
	j.wg.Add(helpers)
	for range helpers {
		poolQueue <- j
	}
	old := debug.SetPanicOnFault(true)
	j.runCaught()
	debug.SetPanicOnFault(old)
	j.wg.Wait()
	r, failed := j.panicked, j.failed
	j.fn, j.panicked, j.failed = nil, nil, false
	jobs.Put(j)
	if failed {
		panic(r) // on the caller (the host backend's stream reports it)
	}
}
