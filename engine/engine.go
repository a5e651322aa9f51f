// Package engine runs a Llama model whose weights stay in host memory on a
// bounded device: it decides what stays resident (residency.go), streams the
// rest layer by layer with copies on one stream overlapping compute on
// another (pipeline.go, staging.go), keeps the KV caches (kvcache.go), runs
// the sparse models (griffin.go, topk.go), adapts itself to the Sirius
// corrector (sirius.go) and counts every byte and millisecond (report.go).
//
// The layer math itself is package model's; the engine decides where each
// weight comes from for each pass and hands model the device tensors.
package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/dustin/go-humanize"

	"offload/corrector"
	"offload/device"
	"offload/internal/sysmem"
	"offload/model"
	"offload/plan"
	"offload/sparsity"
)

// FFNMode says which FFN neurons a forward pass uses.
type FFNMode uint8

const (
	// FFNFull uses every neuron (prefill, dense decoding, Sirius checks).
	FFNFull FFNMode = iota
	// FFNSparse uses the sparse model: the per-sequence Griffin set, or the
	// per-token top-k of |silu(gate x)| under the topk policy.
	FFNSparse
)

// Phase labels a pass for the profiler.
type Phase uint8

const (
	PhasePrefill Phase = iota
	PhaseDecode        // one dense token
	PhaseDraft         // one sparse token
	PhaseCheck         // one batched full pass over a window
	numPhases
)

func (p Phase) String() string {
	return [...]string{"prefill", "decode", "draft", "check"}[p]
}

// ErrContextFull is returned when a pass would run past the KV cache.
var ErrContextFull = errors.New("context full")

// Seq is one sequence's rows in a pass: toks at positions Pos.. of the KV
// cache of Branch. Logits says whether its rows' logits are wanted (all of
// them, or only the last when LastOnly).
type Seq struct {
	Branch   int
	Toks     []int
	Pos      int
	Logits   bool
	LastOnly bool
}

// Engine runs one model on one device.
type Engine struct {
	M    *model.Model
	cfg  model.Config
	dev  device.Device
	opt  Options
	copy device.Stream
	comp device.Stream

	res  residency
	pipe pipeline
	kv   *KVCache
	act  activations
	grif griffinState
	topk topkState
	// costs are the measured times of draft and check passes, kept across
	// requests, for the adaptive window policy.
	costs corrector.CostTable
	// firstDrafts is the drafts the adaptive policy planned for the last
	// sequence's first window (-1: none yet), to guess what the pass after
	// a prefill will be.
	firstDrafts int
	fin         finiteChecker
	// diag, when set, is called after each unit's compute is enqueued
	// (diagnose: it finds the layer where activations went non-finite).
	diag func(u int) error

	Prof *Profiler
}

// activations are the pass's device tensors and the host buffers that feed
// and drain them.
type activations struct {
	model.Activations
	buf     device.Buffer
	idx     device.Tensor // [1, hidden] I32: neuron indices for on-device gathers
	sel     device.Tensor // top-k: the chosen up rows and down columns, gathered on the device
	inHost  []byte        // embedding rows (f32) for the pass
	outHost []byte        // logits
}

// New builds an engine: it decides the residency plan under opt.DeviceMem,
// allocates the KV caches, activations, layer slots and staging, and copies
// the resident weights to the device.
func New(m *model.Model, dev device.Device, opt Options) (_ *Engine, err error) {
	defer func() { err = plainFault(err) }()
	cfg := m.Config
	if opt.Window <= 0 {
		opt.Window = corrector.DefaultWindow
	}
	if opt.Width <= 0 {
		opt.Width = 1
	}
	if opt.Keep == 0 {
		opt.Keep = 0.5
	}
	if opt.Sparsity == "" {
		opt.Sparsity = sparsity.PolicyGriffin
	}
	if err := opt.Decoding.Validate(); err != nil {
		return nil, err
	}
	if opt.Context <= 0 || opt.Context > cfg.MaxSeq {
		opt.Context = cfg.MaxSeq
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 64
	}
	check := opt.Window * opt.Width
	if check > opt.Context*opt.Width {
		return nil, fmt.Errorf("a window of %d does not fit a context of %d positions", opt.Window, opt.Context)
	}
	opt.MaxBatch = max(opt.MaxBatch, check)
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.HostPack == 0 {
		opt.HostPack = sysmem.Physical() / 4
	}
	if dev.Caps().PrefersStaging {
		opt.StageAll = true
	}
	if err := checkWeightTypes(m, dev); err != nil {
		return nil, err
	}
	budget := dev.Capacity()
	if opt.DeviceMem > 0 && opt.DeviceMem < budget {
		budget = opt.DeviceMem
	}
	if err := checkBatch(cfg, opt, budget); err != nil {
		return nil, err
	}
	e := &Engine{M: m, cfg: cfg, dev: dev, opt: opt, Prof: newProfiler(cfg.Layers, opt.Trace), firstDrafts: -1}
	if e.copy, err = dev.NewStream("copy"); err != nil {
		return nil, err
	}
	if e.comp, err = dev.NewStream("compute"); err != nil {
		return nil, err
	}
	e.grif.k = sparsity.KeepCount(opt.Keep, cfg.Hidden)
	p, err := e.planResidency(budget)
	if err != nil {
		return nil, err
	}
	e.Prof.Plan = p
	if err := e.allocate(p); err != nil {
		e.Close()
		return nil, err
	}
	// From now on a corrupt tensor found on its first read names the file
	// (New's errors are reported with the model's path by its callers).
	e.fin.path = m.File.Path
	return e, nil
}

// checkBatch refuses, before anything is allocated, a batch the machine
// cannot hold: every pass holds MaxBatch rows of activations on the device
// and up to window x width rows of logits on both sides, so an absurd
// window or width would otherwise ask for hundreds of GB (the host backend's
// device memory is host RAM too).
func checkBatch(cfg model.Config, opt Options, budget int64) error {
	rows := int64(opt.MaxBatch)
	logitRows := min(rows, max(64, int64(opt.Window)*int64(opt.Width)))
	act := rows * 4 * int64(3*cfg.Dim+2*cfg.Heads*cfg.HeadDim+2*cfg.KVDim()+2*cfg.Hidden)
	logits := logitRows * 4 * int64(cfg.Vocab)
	what := fmt.Sprintf("a batch of %d rows (window %d x width %d) of activations and logits", rows, opt.Window, opt.Width)
	if act+logits > budget {
		return &plan.BudgetError{What: what, Need: act + logits, Have: budget}
	}
	if host, phys := logits+rows*4*int64(cfg.Dim), sysmem.Physical(); host > phys/2 {
		return fmt.Errorf("%s needs %s of host buffers, more than half of this machine's %s of memory: lower the window or width",
			what, humanize.IBytes(uint64(host)), humanize.IBytes(uint64(phys)))
	}
	return nil
}

// logitRows is the most rows of one pass that return logits: a window check
// over every branch (a prefill needs only its last row).
func (e *Engine) logitRows() int { return min(e.opt.MaxBatch, max(64, e.opt.Window*e.opt.Width)) }

// Close frees every device buffer.
func (e *Engine) Close() {
	if e.dev == nil {
		return
	}
	if e.comp != nil {
		e.dev.Synchronize(e.comp)
	}
	if e.copy != nil {
		e.dev.Synchronize(e.copy)
	}
	e.res.free(e.dev)
	e.pipe.free(e.dev)
	e.grif.free(e.dev)
	if e.kv != nil {
		e.kv.free()
	}
	if e.act.buf != nil {
		e.dev.Free(e.act.buf)
		e.act.buf = nil
	}
	if e.topk.stage != nil {
		e.dev.HostFree(e.topk.stage)
		e.topk.stage = nil
	}
	if e.act.inHost != nil {
		e.dev.HostFree(e.act.inHost)
		e.act.inHost = nil
	}
}

// Config is the model's architecture.
func (e *Engine) Config() model.Config { return e.cfg }

// Device is the device the engine runs on.
func (e *Engine) Device() device.Device { return e.dev }

// Options are the engine's settings after defaults.
func (e *Engine) Options() Options { return e.opt }

// KV is the engine's key/value cache.
func (e *Engine) KV() *KVCache { return e.kv }

func (e *Engine) allocate(p *Plan) error {
	cfg, dev := e.cfg, e.dev
	N, LR := e.opt.MaxBatch, e.logitRows()
	var lo layout
	x := lo.place(device.F32, N, cfg.Dim)
	xb := lo.place(device.F32, N, cfg.Dim)
	xb2 := lo.place(device.F32, N, cfg.Dim)
	q := lo.place(device.F32, N, cfg.Heads*cfg.HeadDim)
	k := lo.place(device.F32, N, cfg.KVDim())
	v := lo.place(device.F32, N, cfg.KVDim())
	at := lo.place(device.F32, N, cfg.Heads*cfg.HeadDim)
	hb := lo.place(device.F32, N, cfg.Hidden)
	hb2 := lo.place(device.F32, N, cfg.Hidden)
	lg := lo.place(device.F32, LR, cfg.Vocab)
	ix := lo.place(device.I32, 1, cfg.Hidden)
	var selOff, rfOff int64
	if cfg.RopeFreqs != nil {
		rfOff = lo.place(device.F32, 1, len(cfg.RopeFreqs))
	}
	if e.opt.Sparsity == sparsity.PolicyTopK {
		selOff = lo.place(device.F32, 2*e.grif.k, cfg.Dim) // room for 2 x [k, dim] of any plain weight dtype
	}
	buf, err := dev.Alloc(lo.off, "activations")
	if err != nil {
		return fmt.Errorf("activations: %w", err)
	}
	a := &e.act
	a.buf = buf
	a.Activations = model.Activations{MaxRows: N, MaxLogitRows: LR,
		X: tensorAt(buf, x, device.F32, N, cfg.Dim), XB: tensorAt(buf, xb, device.F32, N, cfg.Dim),
		XB2: tensorAt(buf, xb2, device.F32, N, cfg.Dim), Q: tensorAt(buf, q, device.F32, N, cfg.Heads*cfg.HeadDim),
		K: tensorAt(buf, k, device.F32, N, cfg.KVDim()), V: tensorAt(buf, v, device.F32, N, cfg.KVDim()),
		Att: tensorAt(buf, at, device.F32, N, cfg.Heads*cfg.HeadDim), HB: tensorAt(buf, hb, device.F32, N, cfg.Hidden),
		HB2: tensorAt(buf, hb2, device.F32, N, cfg.Hidden), Logits: tensorAt(buf, lg, device.F32, LR, cfg.Vocab)}
	a.idx = tensorAt(buf, ix, device.I32, 1, cfg.Hidden)
	if cfg.RopeFreqs != nil {
		a.RopeFreqs = tensorAt(buf, rfOff, device.F32, 1, len(cfg.RopeFreqs))
		b := make([]byte, 4*len(cfg.RopeFreqs))
		copy(f32s(b), cfg.RopeFreqs)
		if err := dev.CopyToDevice(e.copy, buf, rfOff, b); err != nil {
			return err
		}
		if err := dev.Synchronize(e.copy); err != nil {
			return err
		}
		e.Prof.addSetup(int64(len(b)))
	}
	if e.opt.Sparsity == sparsity.PolicyTopK {
		a.sel = tensorAt(buf, selOff, device.F32, 2*e.grif.k, cfg.Dim)
		if e.topk.stage, err = dev.HostAlloc(2 * alignUp(int64(e.grif.k)*int64(cfg.Dim)*4)); err != nil {
			return err
		}
	}
	if a.inHost, err = dev.HostAlloc(int64(N * cfg.Dim * 4)); err != nil {
		return err
	}
	a.outHost = make([]byte, LR*cfg.Vocab*4)
	if e.kv, err = newKVCache(dev, cfg, e.opt.Width, e.opt.Context); err != nil {
		return err
	}
	if err := e.pipe.allocate(dev, p, e.opt.NoPrefetch); err != nil {
		return err
	}
	e.res.layers = make([]layerRes, cfg.Layers)
	return e.loadResident(p)
}

// Reset starts a new sequence: caches are emptied and the Griffin set is
// forgotten (the next full prefill collects new statistics).
func (e *Engine) Reset() {
	e.pipe.seqGen++
	e.dropPrefetch() // a new sequence: drop (and count) any prefetch
	e.kv.Reset()
	e.grif.reset(e.dev, e.res.layers)
}

// Truncate drops branch b's cache beyond n positions (Sirius rollback).
func (e *Engine) Truncate(b, n int) error { return e.kv.Truncate(b, n) }

// Fork makes branch dst's cache a copy of src's valid positions.
func (e *Engine) Fork(dst, src int) error { return e.kv.Fork(e.comp, dst, src) }

// Forward runs one pass over the rows of seqs and returns the logits of the
// rows that asked for them, in order (one slice per sequence, one row per
// returned token). A cancelled ctx stops the pass at the next layer boundary
// (after the device has finished what was enqueued) and returns ctx's error;
// the cache lengths are then unchanged.
func (e *Engine) Forward(ctx context.Context, seqs []Seq, phase Phase, ffn FFNMode) ([][][]float32, error) {
	rows := 0
	for _, s := range seqs {
		if err := e.kv.checkAppend(s.Branch, s.Pos, len(s.Toks)); err != nil {
			return nil, err
		}
		rows += len(s.Toks)
	}
	if rows == 0 {
		return nil, nil
	}
	if rows > e.act.MaxRows {
		return nil, fmt.Errorf("pass of %d rows exceeds the batch of %d", rows, e.act.MaxRows)
	}
	if lr := logitRows(seqs); lr > e.act.MaxLogitRows {
		return nil, fmt.Errorf("pass wants logits for %d rows, the engine holds %d", lr, e.act.MaxLogitRows)
	}
	if ffn == FFNSparse && e.opt.Sparsity == sparsity.PolicyGriffin && e.grif.sel == nil {
		if e.grif.stats == nil {
			return nil, errors.New("sparse pass before any full prefill: no Griffin neuron set yet")
		}
		if err := e.packGriffin(); err != nil {
			return nil, err
		}
	}
	if phase == PhasePrefill && e.opt.Sparsity == sparsity.PolicyGriffin && e.opt.Mode != corrector.Dense && e.grif.sel == nil && e.grif.stats == nil {
		// A new sequence (Reset cleared the statistics): later prefill
		// chunks add to these.
		e.grif.start(e.cfg.Layers, e.cfg.Hidden)
	}
	pass := e.Prof.begin(phase, rows)
	if err := e.embed(seqs, rows, pass); err != nil {
		return nil, err
	}
	lerr := e.layersForward(ctx, seqs, rows, phase, ffn, pass)
	out, err := e.logits(seqs, pass, lerr == nil)
	if lerr != nil {
		return nil, lerr
	}
	if err != nil {
		return nil, err
	}
	if total := logitRows(seqs); total > 0 && nonFiniteLogits(e.act.outHost[:total*e.cfg.Vocab*4]) {
		return nil, e.diagnose(ctx, seqs, rows, phase, ffn)
	}
	for _, s := range seqs {
		e.kv.Append(s.Branch, s.Pos, len(s.Toks))
	}
	e.Prof.end(pass, e.dev)
	return out, nil
}

// embed gathers the tokens' embedding rows on the host (the table never
// moves as a whole) and sends them as f32 activations.
func (e *Engine) embed(seqs []Seq, rows int, pass *passRec) error {
	D := e.cfg.Dim
	dst := e.act.inHost[:rows*D*4]
	r := 0
	for _, s := range seqs {
		for _, t := range s.Toks {
			if err := e.M.EmbedRow(f32s(dst[r*D*4:(r+1)*D*4]), t); err != nil {
				return err
			}
			r++
		}
	}
	if err := e.dev.CopyToDevice(e.comp, e.act.X.Buf, e.act.X.Off, dst); err != nil {
		return err
	}
	pass.inputBytes += int64(len(dst))
	return nil
}

// logits waits for the pass, brings the computed logits back and splits them
// per sequence. With fetch false it only waits (a failed or cancelled pass).
func (e *Engine) logits(seqs []Seq, pass *passRec, fetch bool) ([][][]float32, error) {
	V := e.cfg.Vocab
	total := logitRows(seqs)
	if fetch && total > 0 {
		host := e.act.outHost[:total*V*4]
		if err := e.dev.CopyToHost(e.comp, host, e.act.Logits.Buf, e.act.Logits.Off); err != nil {
			return nil, err
		}
		pass.outputBytes += int64(len(host))
	}
	serr := e.dev.Synchronize(e.comp)
	var cerr error
	if mark := e.pipe.passCopies; mark != nil {
		// A prefetch for the next pass is in flight behind this pass's
		// copies: wait for those only (a copy error of the prefetch is
		// reported by the next pass's wait).
		e.pipe.passCopies = nil
		cerr = e.dev.EventSynchronize(mark)
	} else {
		cerr = e.dev.Synchronize(e.copy)
	}
	if serr == nil {
		serr = cerr
	}
	if serr != nil {
		return nil, serr
	}
	if pass.err != nil {
		return nil, pass.err
	}
	if !fetch {
		return nil, nil
	}
	all := f32s(e.act.outHost[:total*V*4])
	out := make([][][]float32, len(seqs))
	o := 0
	for i, sq := range seqs {
		if !sq.Logits {
			continue
		}
		cnt := len(sq.Toks)
		if sq.LastOnly {
			cnt = 1
		}
		out[i] = make([][]float32, cnt)
		for j := range cnt {
			out[i][j] = append([]float32(nil), all[(o+j)*V:(o+j+1)*V]...)
		}
		o += cnt
	}
	return out, nil
}

// logitRows counts the rows of a pass that return logits.
func logitRows(seqs []Seq) int {
	n := 0
	for _, sq := range seqs {
		switch {
		case !sq.Logits:
		case sq.LastOnly:
			n++
		default:
			n += len(sq.Toks)
		}
	}
	return n
}

// f32s views little-endian bytes as float32s (amd64 and arm64 are little
// endian; the byte slice comes from make and is suitably aligned).
func f32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// i32Bytes writes v as little-endian bytes into dst.
func i32Bytes(dst []byte, v []int32) {
	copy(unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(dst))), len(dst)/4), v)
}
