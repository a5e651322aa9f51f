// Package offload is the engine: it runs a Llama model whose weights stay in
// host memory on a bounded device, streaming what does not fit layer by
// layer, with copies on one stream overlapping compute on another, and
// counting every byte and millisecond (see profile.go).
package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"

	"offload/device"
	"offload/device/kernels"
	"offload/model"
	"offload/pager"
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

// Options configures an Engine.
type Options struct {
	// DeviceMem is the device memory the engine may use (0: all of it).
	DeviceMem int64
	// NoPrefetch turns the pipeline off: each layer's copy starts only after
	// the previous layer's compute has finished (one slot).
	NoPrefetch bool
	// Policy and Keep choose the sparse model.
	Policy sparsity.Policy
	Keep   float64
	// Mode, Window and AAL weight the residency plan (how often each byte is
	// used per generated token).
	Mode   Mode
	Window int
	// Branches is the number of KV caches (Sirius beam width).
	Branches int
	// Context is the number of positions the KV caches hold (0: the model's).
	Context int
	// MaxBatch bounds the rows of one pass (prefill is chunked to it).
	// Streamed weights cross the link once per chunk, so long prompts want
	// it large.
	MaxBatch int
	// LogitRows bounds the rows of one pass that return logits (a window
	// check needs Window x Branches; a prefill only its last row). The
	// logits buffer is vocab wide, so it is sized separately.
	LogitRows int
	// Workers gather rows into staging (0: GOMAXPROCS).
	Workers int
	// Trace keeps every span for --trace.
	Trace bool
	// PrefillProgress, if set, is told after each prefill chunk how many
	// prompt tokens are done (a long prompt on a streamed 70B model takes
	// one full pass over the weights per chunk).
	PrefillProgress func(done, total int)
	// ResidentAll forces everything resident (fails if it does not fit).
	ResidentAll bool
	// HostPack bounds the host memory used to pack the Griffin rows of the
	// streamed layers once per sequence (0: a quarter of physical memory;
	// negative: never pack, gather the rows every step).
	HostPack int64
	// StageAll copies even contiguous weights through the pinned staging
	// buffers (set automatically for a device that prefers staging, i.e.
	// CUDA with pinned memory).
	StageAll bool
	// StreamAll keeps only the LM head resident and streams every layer
	// (the paper's offloading setting), whatever the budget.
	StreamAll bool
}

// Mode is the decoding mode, which decides how weights are used.
type Mode uint8

const (
	ModeSirius Mode = iota
	ModeDense
	ModeSparse
)

func (m Mode) String() string { return [...]string{"sirius", "dense", "sparse"}[m] }

// ParseMode reads --mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "sirius", "":
		return ModeSirius, nil
	case "dense":
		return ModeDense, nil
	case "sparse":
		return ModeSparse, nil
	}
	return 0, fmt.Errorf("unknown mode %q (valid: dense, sparse, sirius)", s)
}

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

// layerRes is what of a layer stays on the device.
type layerRes struct {
	attn   *devAttn
	ffn    *devFFN // the whole FFN
	packed *devFFN // the Griffin neurons, packed once per sequence
	// packedPlanned says packed gets a resident buffer once the set is known.
	packedPlanned bool
	packedBuf     device.Buffer
}

type kvPair struct{ k, v device.Tensor }

// Engine runs one model on one device.
type Engine struct {
	M    *model.Model
	cfg  model.Config
	dev  device.Device
	opt  Options
	copy device.Stream
	comp device.Stream

	layers  []layerRes
	headRes bool
	head    struct{ norm, w device.Tensor }
	resBufs []device.Buffer

	slots     []device.Buffer
	slotSize  int64
	staging   [][]byte
	slotUsed  []device.Event // compute done with the slot's contents
	stageFree []device.Event // copies out of the staging buffer done

	kv     [][]kvPair // [branch][layer]
	kvBufs []device.Buffer
	kvLen  []int

	act       acts
	inHost    []byte // embedding rows (f32) for the pass
	outHost   []byte // logits
	topkStage []byte // top-k: staging for the chosen rows

	// Griffin state for the current sequence.
	griffin []*sparsity.Griffin
	sel     [][]int32
	selK    int
	sel32   []byte
	topk    sparsity.Selector
	// expect is the kind of the next pass, prefetch its first unit if
	// already copied; seqGen changes whenever streamed contents may
	// (a new sequence, a new Griffin set), invalidating a prefetch.
	expect   *FFNMode
	prefetch *prefetched
	seqGen   int
	// scratch holds host buffers reused by every layer's top-k selection and
	// Griffin statistics (hot paths: no allocation per layer).
	scratch struct{ gate, mag, sel, idx, stats []byte }
	// hostPacked[l] is layer l's Griffin rows packed in host memory.
	hostPacked [][]byte

	Prof *Profiler
}

type acts struct {
	buf                     device.Buffer
	x, xb, xb2, q, k, v, at device.Tensor
	hb, hb2, logits         device.Tensor
	idx                     device.Tensor
	ropeFreqs               device.Tensor // scaled RoPE's inverse frequencies (Rows 0: plain theta RoPE)
	sel                     device.Tensor // top-k: the chosen up rows and down columns, when gathered on the device
	rows                    int
}

// New builds an engine: it decides the residency plan under opt.DeviceMem,
// allocates the KV caches, activations, layer slots and staging, and copies
// the resident weights to the device.
func New(m *model.Model, dev device.Device, opt Options) (*Engine, error) {
	cfg := m.Config
	if opt.Keep <= 0 || opt.Keep > 1 {
		opt.Keep = 0.5
	}
	if opt.Window <= 0 {
		opt.Window = 16
	}
	if opt.Branches <= 0 {
		opt.Branches = 1
	}
	if opt.Context <= 0 || opt.Context > cfg.MaxSeq {
		opt.Context = cfg.MaxSeq
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 64
	}
	opt.MaxBatch = max(opt.MaxBatch, opt.Window*opt.Branches)
	if opt.LogitRows <= 0 {
		opt.LogitRows = min(opt.MaxBatch, 64)
	}
	opt.LogitRows = min(max(opt.LogitRows, opt.Window*opt.Branches), opt.MaxBatch)
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Policy == "" {
		opt.Policy = sparsity.PolicyGriffin
	}
	if opt.HostPack == 0 {
		opt.HostPack = physicalMemory() / 4
	}
	if dev.Caps().PrefersStaging {
		opt.StageAll = true
	}
	budget := dev.Capacity()
	if opt.DeviceMem > 0 && opt.DeviceMem < budget {
		budget = opt.DeviceMem
	}
	e := &Engine{M: m, cfg: cfg, dev: dev, opt: opt, Prof: newProfiler(cfg.Layers, opt.Trace)}
	var err error
	if e.copy, err = dev.NewStream("copy"); err != nil {
		return nil, err
	}
	if e.comp, err = dev.NewStream("compute"); err != nil {
		return nil, err
	}
	e.selK = sparsity.KeepCount(opt.Keep, cfg.Hidden)
	p, err := e.planResidency(budget)
	if err != nil {
		return nil, err
	}
	e.Prof.Plan = p
	if err := e.allocate(p); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

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
	for _, b := range e.resBufs {
		e.dev.Free(b)
	}
	for _, b := range e.slots {
		e.dev.Free(b)
	}
	for _, b := range e.kvBufs {
		e.dev.Free(b)
	}
	for _, l := range e.layers {
		if l.packedBuf != nil {
			e.dev.Free(l.packedBuf)
		}
	}
	if e.act.buf != nil {
		e.dev.Free(e.act.buf)
	}
	for _, s := range e.staging {
		e.dev.HostFree(s)
	}
	for _, b := range e.hostPacked {
		if b != nil {
			e.dev.HostFree(b)
		}
	}
	e.hostPacked = nil
	e.resBufs, e.slots, e.kvBufs, e.staging, e.act.buf = nil, nil, nil, nil, nil
}

// Config is the model's architecture.
func (e *Engine) Config() model.Config { return e.cfg }

// Device is the device the engine runs on.
func (e *Engine) Device() device.Device { return e.dev }

// Options are the engine's settings after defaults.
func (e *Engine) Options() Options { return e.opt }

func (e *Engine) allocate(p *Plan) error {
	cfg, dev := e.cfg, e.dev
	// Activations.
	N := e.opt.MaxBatch
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
	lg := lo.place(device.F32, e.opt.LogitRows, cfg.Vocab)
	ix := lo.place(device.I32, 1, cfg.Hidden)
	var selOff, rfOff int64
	if cfg.RopeFreqs != nil {
		rfOff = lo.place(device.F32, 1, len(cfg.RopeFreqs))
	}
	if e.opt.Policy == sparsity.PolicyTopK {
		selOff = lo.place(device.F32, 2*e.selK, cfg.Dim) // room for 2 x [k, dim] of any weight dtype
	}
	buf, err := dev.Alloc(lo.off, "activations")
	if err != nil {
		return fmt.Errorf("activations: %w", err)
	}
	e.act = acts{buf: buf, rows: N,
		x: tensorAt(buf, x, device.F32, N, cfg.Dim), xb: tensorAt(buf, xb, device.F32, N, cfg.Dim),
		xb2: tensorAt(buf, xb2, device.F32, N, cfg.Dim), q: tensorAt(buf, q, device.F32, N, cfg.Heads*cfg.HeadDim),
		k: tensorAt(buf, k, device.F32, N, cfg.KVDim()), v: tensorAt(buf, v, device.F32, N, cfg.KVDim()),
		at: tensorAt(buf, at, device.F32, N, cfg.Heads*cfg.HeadDim), hb: tensorAt(buf, hb, device.F32, N, cfg.Hidden),
		hb2: tensorAt(buf, hb2, device.F32, N, cfg.Hidden), logits: tensorAt(buf, lg, device.F32, e.opt.LogitRows, cfg.Vocab),
		idx: tensorAt(buf, ix, device.I32, 1, cfg.Hidden)}
	if cfg.RopeFreqs != nil {
		e.act.ropeFreqs = tensorAt(buf, rfOff, device.F32, 1, len(cfg.RopeFreqs))
		b := make([]byte, 4*len(cfg.RopeFreqs))
		for i, v := range cfg.RopeFreqs {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		if err := dev.CopyToDevice(e.copy, buf, rfOff, b); err != nil {
			return err
		}
		if err := dev.Synchronize(e.copy); err != nil {
			return err
		}
		e.Prof.addSetup(int64(len(b)))
	}
	if e.opt.Policy == sparsity.PolicyTopK {
		e.act.sel = tensorAt(buf, selOff, device.F32, 2*e.selK, cfg.Dim)
		if e.topkStage, err = dev.HostAlloc(2 * alignUp(int64(e.selK)*int64(cfg.Dim)*4)); err != nil {
			return err
		}
	}
	if e.inHost, err = dev.HostAlloc(int64(N * cfg.Dim * 4)); err != nil {
		return err
	}
	e.outHost = make([]byte, e.opt.LogitRows*cfg.Vocab*4)
	// KV caches.
	kvBytes := int64(e.opt.Context) * int64(cfg.KVDim()) * 4
	e.kv = make([][]kvPair, e.opt.Branches)
	e.kvLen = make([]int, e.opt.Branches)
	for b := range e.kv {
		kb, err := dev.Alloc(2*kvBytes*int64(cfg.Layers), fmt.Sprintf("kv cache %d", b))
		if err != nil {
			return fmt.Errorf("kv cache: %w", err)
		}
		e.kvBufs = append(e.kvBufs, kb)
		e.kv[b] = make([]kvPair, cfg.Layers)
		for l := range e.kv[b] {
			o := int64(2*l) * kvBytes
			e.kv[b][l] = kvPair{tensorAt(kb, o, device.F32, e.opt.Context, cfg.KVDim()), tensorAt(kb, o+kvBytes, device.F32, e.opt.Context, cfg.KVDim())}
		}
	}
	// Slots and staging for what streams.
	nslots := 2
	if e.opt.NoPrefetch {
		nslots = 1
	}
	if p.SlotBytes > 0 {
		e.slotSize = p.SlotBytes
		for i := 0; i < nslots; i++ {
			b, err := dev.Alloc(p.SlotBytes, fmt.Sprintf("layer slot %d", i))
			if err != nil {
				return fmt.Errorf("layer slot: %w", err)
			}
			e.slots = append(e.slots, b)
		}
		e.slotUsed = make([]device.Event, nslots)
	}
	nstage := nslots
	if p.StagingBytes > 0 {
		for i := 0; i < nstage; i++ {
			s, err := dev.HostAlloc(p.StagingBytes)
			if err != nil {
				return fmt.Errorf("staging: %w", err)
			}
			e.staging = append(e.staging, s)
		}
	}
	e.stageFree = make([]device.Event, max(nstage, 1))
	// Resident weights.
	e.layers = make([]layerRes, cfg.Layers)
	return e.loadResident(p)
}

// loadResident copies the resident blocks to the device (once).
func (e *Engine) loadResident(p *Plan) error {
	cfg := e.cfg
	place := func(label string, build func(lo *layout, buf device.Buffer)) error {
		var lo layout
		build(&lo, nil)
		if lo.off == 0 {
			return nil
		}
		buf, err := e.dev.Alloc(lo.off, label)
		if err != nil {
			return fmt.Errorf("resident %s: %w", label, err)
		}
		e.resBufs = append(e.resBufs, buf)
		lo = layout{}
		build(&lo, buf)
		staging, err := e.dev.HostAlloc(max(lo.stagingNeed(e.opt.StageAll), 1))
		if err != nil {
			return err
		}
		defer e.dev.HostFree(staging)
		n, err := enqueue(e.dev, e.copy, buf, &lo, staging, e.opt.StageAll, e.opt.Workers)
		if err != nil {
			return err
		}
		e.Prof.addSetup(n)
		return e.dev.Synchronize(e.copy)
	}
	if p.Head {
		e.headRes = true
		if err := place("lm head", func(lo *layout, buf device.Buffer) {
			e.head.norm, e.head.w = headLayout(lo, buf, e.M)
		}); err != nil {
			return err
		}
	}
	for l := 0; l < cfg.Layers; l++ {
		L := &e.M.Layers[l]
		if p.Attn[l] {
			var a devAttn
			if err := place(fmt.Sprintf("layer %d attention", l), func(lo *layout, buf device.Buffer) { a = attnLayout(lo, buf, L) }); err != nil {
				return err
			}
			e.layers[l].attn = &a
		}
		if p.FFN[l] {
			var f devFFN
			if err := place(fmt.Sprintf("layer %d ffn", l), func(lo *layout, buf device.Buffer) {
				f = ffnLayout(lo, buf, L, cfg.Dim, cfg.Hidden, nil, e.opt.Workers)
			}); err != nil {
				return err
			}
			e.layers[l].ffn = &f
		}
		e.layers[l].packedPlanned = p.Packed[l]
	}
	return nil
}

// ErrContextFull is returned when a pass would run past the KV cache.
var ErrContextFull = errors.New("context full")

// Reset starts a new sequence: caches are emptied and the Griffin set is
// forgotten (the next full prefill collects new statistics).
func (e *Engine) Reset() {
	e.seqGen++
	e.dropPrefetch() // a new sequence: drop (and count) any prefetch
	for b := range e.kvLen {
		e.kvLen[b] = 0
	}
	e.sel = nil
	e.griffin = nil
	for l := range e.layers {
		if e.layers[l].packedBuf != nil {
			e.dev.Free(e.layers[l].packedBuf)
			e.layers[l].packedBuf = nil
			e.layers[l].packed = nil
		}
	}
}

// KVLen is the number of valid positions in branch b's cache.
func (e *Engine) KVLen(b int) int { return e.kvLen[b] }

// Truncate drops branch b's cache beyond n positions (Sirius rollback). The
// slots are simply overwritten by the next pass.
func (e *Engine) Truncate(b, n int) error {
	if b < 0 || b >= len(e.kvLen) || n < 0 || n > e.kvLen[b] {
		return fmt.Errorf("truncate branch %d to %d: out of range", b, n)
	}
	e.kvLen[b] = n
	return nil
}

// Fork makes branch dst's cache a copy of src's first KVLen(src) positions.
func (e *Engine) Fork(dst, src int) error {
	if dst == src {
		return nil
	}
	n := int64(e.kvLen[src]) * int64(e.cfg.KVDim()) * 4
	for l := 0; l < e.cfg.Layers; l++ {
		s, d := e.kv[src][l], e.kv[dst][l]
		if n > 0 {
			if err := e.dev.CopyDevice(e.comp, d.k.Buf, d.k.Off, s.k.Buf, s.k.Off, n); err != nil {
				return err
			}
			if err := e.dev.CopyDevice(e.comp, d.v.Buf, d.v.Off, s.v.Buf, s.v.Off, n); err != nil {
				return err
			}
		}
	}
	e.kvLen[dst] = e.kvLen[src]
	return nil
}

// Forward runs one pass over the rows of seqs and returns the logits of the
// rows that asked for them, in order (one slice per sequence, one row per
// returned token).
func (e *Engine) Forward(seqs []Seq, phase Phase, ffn FFNMode) ([][][]float32, error) {
	rows := 0
	for _, s := range seqs {
		if s.Branch < 0 || s.Branch >= len(e.kv) {
			return nil, fmt.Errorf("branch %d: engine has %d", s.Branch, len(e.kv))
		}
		if s.Pos > e.kvLen[s.Branch] { // rewriting earlier positions (a check) is fine; gaps are not
			return nil, fmt.Errorf("branch %d: position %d leaves a gap after %d cached", s.Branch, s.Pos, e.kvLen[s.Branch])
		}
		if s.Pos+len(s.Toks) > e.opt.Context {
			return nil, fmt.Errorf("%w: %d positions of %d", ErrContextFull, s.Pos+len(s.Toks), e.opt.Context)
		}
		rows += len(s.Toks)
	}
	if rows == 0 {
		return nil, nil
	}
	if rows > e.act.rows {
		return nil, fmt.Errorf("pass of %d rows exceeds the batch of %d", rows, e.act.rows)
	}
	if lr := logitRows(seqs); lr > e.opt.LogitRows {
		return nil, fmt.Errorf("pass wants logits for %d rows, the engine holds %d", lr, e.opt.LogitRows)
	}
	if ffn == FFNSparse && e.opt.Policy == sparsity.PolicyGriffin && e.sel == nil {
		if e.griffin == nil {
			return nil, errors.New("sparse pass before any full prefill: no Griffin neuron set yet")
		}
		if err := e.packGriffin(); err != nil {
			return nil, err
		}
	}
	if phase == PhasePrefill && e.opt.Policy == sparsity.PolicyGriffin && e.opt.Mode != ModeDense && e.sel == nil && e.griffin == nil {
		// A new sequence (Reset cleared the statistics): later prefill
		// chunks add to these.
		e.griffin = make([]*sparsity.Griffin, e.cfg.Layers)
		for l := range e.griffin {
			e.griffin[l] = sparsity.NewGriffin(e.cfg.Hidden)
		}
	}
	pass := e.Prof.begin(phase, rows)
	if err := e.embed(seqs, rows, pass); err != nil {
		return nil, err
	}
	if err := e.layersForward(seqs, rows, phase, ffn, pass); err != nil {
		return nil, err
	}
	out, err := e.logits(seqs, rows, pass)
	if err != nil {
		return nil, err
	}
	for _, s := range seqs {
		e.kvLen[s.Branch] = s.Pos + len(s.Toks)
	}
	e.Prof.end(pass, e.dev)
	return out, nil
}

// embed gathers the tokens' embedding rows on the host (the table never
// moves as a whole) and sends them as f32 activations.
func (e *Engine) embed(seqs []Seq, rows int, pass *passRec) error {
	D := e.cfg.Dim
	dst := e.inHost[:rows*D*4]
	r := 0
	for _, s := range seqs {
		for _, t := range s.Toks {
			if t < 0 || t >= e.cfg.Vocab {
				return fmt.Errorf("token id %d out of range [0,%d)", t, e.cfg.Vocab)
			}
			rowToF32(dst[r*D*4:(r+1)*D*4], e.M.Embed.Row(t), e.M.Embed.DType)
			r++
		}
	}
	if err := e.dev.CopyToDevice(e.comp, e.act.x.Buf, e.act.x.Off, dst); err != nil {
		return err
	}
	pass.inputBytes += int64(len(dst))
	return nil
}

// rowToF32 converts one embedding row to float32 (as bytes) with the
// conversion kernels.
func rowToF32(dst, src []byte, dt pager.DType) {
	switch dt {
	case pager.F32:
		copy(dst, src)
	case pager.BF16:
		kernels.BF16ToF32(f32s(dst), asElems[uint16](src))
	case pager.F16:
		kernels.F16ToF32(f32s(dst), asElems[uint16](src))
	}
}

// physicalMemory is the machine's RAM in bytes (Linux), or 8 GiB.
func physicalMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						return n << 10
					}
				}
			}
		}
	}
	return 8 << 30
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
