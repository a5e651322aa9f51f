// Package offload is the one way to put a model, a tokenizer, a device and
// an engine together, shared by every front end (run, eval, bench, serve,
// chat):
//
//	m, _ := offload.Load("llama-70b.gguf", "")          // weights (mapped) and tokenizer
//	dev, note, _ := offload.OpenDevice("auto", device.Config{})
//	s, _ := m.NewSession(dev, engine.Options{Decoding: engine.DefaultDecoding()})
//	res, _ := s.Generate(ctx, offload.Request{Prompt: "Once upon a time", MaxTokens: 64}, print)
//	fmt.Print(s.Report(res))
//
// The packages below it do the work: engine (streaming, residency, Sirius),
// model (the layer math), corrector (drafting and checking), pager (weight
// files), tokenizer, device and its backends (which register themselves;
// this package links in the host and CUDA backends).
package offload

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"offload/corrector"
	_ "offload/cuda" // registers the "cuda" backend
	"offload/device"
	_ "offload/device/host" // registers the "host" backend
	"offload/engine"
	"offload/model"
	"offload/tokenizer"
)

// Model is a model opened for inference: its weights (memory-mapped, read
// only when used) and its tokenizer.
type Model struct {
	*model.Model
	Tok *tokenizer.Tokenizer
	// Path is what was opened; Name is what reports call it.
	Path, Name string
}

// Load opens a model (a GGUF file, a Hugging Face directory with
// config.json and *.safetensors, or a llama2.c checkpoint) and its tokenizer
// (tokenizerPath, or the one in or beside the model when empty).
func Load(path, tokenizerPath string) (*Model, error) {
	m, err := model.Open(path)
	if err != nil {
		return nil, err
	}
	var tok *tokenizer.Tokenizer
	if tokenizerPath != "" {
		tok, err = tokenizer.Load(tokenizerPath)
	} else {
		tok, err = tokenizer.ForModel(path, m.File.Meta, m.File.Format)
	}
	if err == nil {
		_, synthetic := m.File.Meta["safetensors.metadata.offload.synthetic"]
		err = checkVocab(m.Config.Vocab, tok, path, synthetic)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return &Model{Model: m, Tok: tok, Path: path, Name: ModelName(path)}, nil
}

// checkVocab is where the tokenizer meets the model: its ids index the
// embedding and the head (both vocab rows, checked by model.Open). A
// tokenizer with more tokens than rows would fail mid-run ("token id out of
// range"); one with far fewer decodes most of what the model says as
// nothing. A few spare rows are normal: checkpoints pad the embedding to a
// round size (Qwen 2.5: 151,665 tokens, 152,064 rows), so up to vocab/256
// unused rows are accepted. A synthetic model (offload synth: random weights
// with a real shape, for measuring speed) says nothing meaningful anyway, so
// any tokenizer that fits its rows is accepted.
func checkVocab(vocab int, tok *tokenizer.Tokenizer, modelPath string, synthetic bool) error {
	n := tok.VocabSize()
	switch {
	case n > vocab:
		return fmt.Errorf("tokenizer %s has %d tokens but the model %s has %d embedding rows: its ids %d..%d have no embedding; use the model's own tokenizer",
			tok.Source(), n, modelPath, vocab, vocab, n-1)
	case vocab-n > vocab/256 && !synthetic:
		return fmt.Errorf("tokenizer %s has %d tokens but the model %s has %d embedding rows: the model would say tokens the tokenizer cannot print; use the model's own tokenizer",
			tok.Source(), n, modelPath, vocab)
	}
	return nil
}

// ModelName is what reports call the model at path: its file or directory name.
func ModelName(path string) string { return filepath.Base(filepath.Clean(path)) }

// StopIDs are the tokens that end generation: the tokenizer's end-of-
// generation ids, its EOS, and BOS, which llama2.c models emit between
// documents (run.c stops on it too).
func (m *Model) StopIDs() []int {
	t := m.Tok
	var ids []int
	for id := 0; id < t.VocabSize(); id++ {
		if t.IsEOG(id) {
			ids = append(ids, id)
		}
	}
	if t.EOS() >= 0 && !t.IsEOG(t.EOS()) {
		ids = append(ids, t.EOS())
	}
	if t.BOS() >= 0 {
		ids = append(ids, t.BOS())
	}
	return ids
}

// Encode tokenizes a prompt, with BOS when the tokenizer has one.
func (m *Model) Encode(text string) []int { return m.Tok.Encode(text, m.Tok.BOS() >= 0) }

// OpenDevice opens a backend by name: "host", "cuda", or "auto" (CUDA when a
// GPU can be opened, else the host backend; note then says why).
func OpenDevice(name string, cfg device.Config) (dev device.Device, note string, err error) {
	switch name {
	case "auto":
		d, cerr := device.Open("cuda", cfg)
		if cerr == nil {
			if cfg.Link > 0 {
				note = "the link pacing setting is ignored on a GPU: the real link is measured"
			}
			return d, note, nil
		}
		note = "no CUDA GPU found, running on the host backend (" + firstLine(cerr.Error()) + ")"
		cfg.Pageable = false
		d, err := device.Open("host", cfg)
		return d, note, err
	case "cuda":
		if cfg.Link > 0 {
			note = "the link pacing setting is ignored on a GPU: the real link is measured"
		}
	}
	d, err := device.Open(name, cfg)
	return d, note, err
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Session is one model running on one device with one engine: what a front
// end generates with. Generations on a session run one at a time.
type Session struct {
	Model  *Model
	Engine *engine.Engine
	// DeviceNote, if set, is said in every report (e.g. the CUDA fallback).
	DeviceNote string
	mu         sync.Mutex
}

// NewSession builds an engine for m on dev. Closing the session frees the
// engine's device memory; the device and the model stay open.
func (m *Model) NewSession(dev device.Device, opt engine.Options) (*Session, error) {
	e, err := engine.New(m.Model, dev, opt)
	if err != nil {
		return nil, err
	}
	return &Session{Model: m, Engine: e}, nil
}

// Close frees the engine.
func (s *Session) Close() { s.Engine.Close() }

// Request is one generation.
type Request struct {
	// Prompt is tokenized with BOS; Tokens, if set, is used instead.
	Prompt string
	Tokens []int
	// MaxTokens bounds the generated tokens.
	MaxTokens int
	// Temperature 0 is greedy; above 0 samples with top-p TopP from Seed.
	Temperature, TopP float64
	Seed              uint64
	// Stop strings end generation; the text stops before the first one.
	Stop []string
	// NoEOS generates exactly MaxTokens tokens, ignoring end-of-text (bench).
	NoEOS bool
}

// Finish reasons of a Result.
const (
	FinishStop      = "stop"      // end of text or a stop string
	FinishLength    = "length"    // MaxTokens, or the context is full
	FinishCancelled = "cancelled" // the context was cancelled
)

// Result is a finished (or cancelled) generation.
type Result struct {
	*engine.Result
	// Prompt are the prompt's tokens.
	Prompt []int
	// Text is the generated text (stop strings excluded).
	Text   string
	Finish string
}

// Generate runs one generation, calling emit with each new piece of text as
// it is final (held back while it could still be the start of a stop
// string). A cancelled ctx stops at the next layer boundary: the result then
// holds what was made, with Finish "cancelled", and the error is ctx's.
func (s *Session) Generate(ctx context.Context, req Request, emit func(text string) error) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	toks := req.Tokens
	if s.Model.Tok == nil {
		// A model opened without a tokenizer (bench on a synthetic model)
		// generates from token ids and produces no text.
		if toks == nil || len(req.Stop) > 0 {
			return nil, errors.New("this model has no tokenizer: the prompt must be token ids, and stop strings cannot be matched")
		}
	} else if toks == nil {
		toks = s.Model.Encode(req.Prompt)
	}
	if len(toks) == 0 {
		return nil, errors.New("the prompt is empty and the tokenizer has no BOS token to start from")
	}
	out := &textOut{stops: req.Stop, emit: emit}
	if s.Model.Tok != nil {
		// Decoding depends on the previous token (a leading space after BOS
		// is dropped, bytes of one character may span tokens): start the
		// stream where the prompt ends.
		out.stream = s.Model.Tok.NewStream()
		for _, id := range toks {
			out.stream.Next(id)
		}
	}
	er := engine.Request{Prompt: toks, MaxTokens: req.MaxTokens, Temperature: req.Temperature, TopP: req.TopP, Seed: req.Seed}
	if !req.NoEOS && s.Model.Tok != nil {
		er.EOS = s.Model.StopIDs()
	}
	if len(req.Stop) > 0 {
		er.Stop = func([]int) bool { return out.stopped }
	}
	res, err := s.Engine.Generate(ctx, er, out.next)
	if res == nil {
		return nil, err
	}
	r := &Result{Result: res, Prompt: toks}
	if ferr := out.finish(); err == nil {
		err = ferr
	}
	r.Text = out.text.String()
	switch {
	case ctx.Err() != nil:
		r.Finish = FinishCancelled
	case out.stopped || res.Stats.StopReason == corrector.StopEOS || (len(res.Tokens) < req.MaxTokens && res.CappedFrom == 0):
		r.Finish = FinishStop
	default:
		r.Finish = FinishLength
	}
	return r, err
}

// textOut turns tokens into text: it decodes incrementally, ends the
// generation at a stop string, and emits only text that cannot turn out to
// be the start of one.
type textOut struct {
	stream  *tokenizer.Stream // nil: no tokenizer, no text
	stops   []string
	emit    func(string) error
	text    strings.Builder // everything final so far
	pending string          // decoded, not yet emitted
	stopped bool
}

func (o *textOut) next(id int) error {
	if o.stopped || o.stream == nil {
		return nil
	}
	o.pending += o.stream.Next(id)
	return o.flush(false)
}

func (o *textOut) finish() error {
	if o.stream == nil {
		return nil
	}
	if !o.stopped {
		o.pending += o.stream.Flush()
	}
	return o.flush(true)
}

// flush emits what of pending is final: up to a stop string (which ends
// the generation), or all but a tail that could begin one.
func (o *textOut) flush(final bool) error {
	if o.stopped {
		return nil
	}
	keep := 0
	for _, s := range o.stops {
		if s == "" {
			continue
		}
		if i := strings.Index(o.pending, s); i >= 0 {
			o.pending = o.pending[:i]
			o.stopped, final = true, true
			break
		}
		for k := min(len(s)-1, len(o.pending)); k > keep; k-- {
			if strings.HasSuffix(o.pending, s[:k]) {
				keep = k
				break
			}
		}
	}
	if final {
		keep = 0
	}
	ready := o.pending[:len(o.pending)-keep]
	o.pending = o.pending[len(ready):]
	if ready == "" {
		return nil
	}
	o.text.WriteString(ready)
	if o.emit != nil {
		return o.emit(ready)
	}
	return nil
}

// Report is the run report of a result, with the device note.
func (s *Session) Report(r *Result) *engine.Report {
	rep := s.Engine.Report(r.Result, s.Model.Name)
	if s.DeviceNote != "" {
		rep.Notes = append(rep.Notes, s.DeviceNote)
	}
	return rep
}

// Score is the mean negative log-likelihood under the full model of gen
// following prompt (natural log, per generated token).
func (s *Session) Score(ctx context.Context, prompt, gen []int) (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Engine.Score(ctx, prompt, gen)
}
