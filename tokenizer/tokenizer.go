// Package tokenizer encodes text to token ids and back for Llama-family
// models, reading the vocabulary from any of the places they ship it:
//
//   - llama2.c tokenizer.bin (LoadLlama2C): SentencePiece-style BPE by score,
//     byte fallback to ids byte+3, exactly as llama2.c run.c encodes;
//   - the tokenizer embedded in GGUF metadata (FromGGUFMetadata):
//     tokenizer.ggml.model "llama" (SentencePiece-style BPE by score, byte
//     fallback) or "gpt2" (byte-level BPE by merge rank with the GPT-2, Llama 3
//     or Qwen2 pre-tokenizer regex);
//   - Hugging Face tokenizer.json (LoadHFJSON): BPE with merges, either
//     byte-level or SentencePiece-style with byte fallback;
//   - Meta's tiktoken rank file for Llama 3 (LoadTiktoken).
//
// Kind() names the algorithm: "llama2c", "spm", "bpe" (byte-level BPE with
// merges) or "tiktoken" (byte-level BPE by rank). Encoding is O(n log n) in
// the text length (a heap of candidate merges, see bpe.go).
//
// Special tokens written in the text (e.g. "<|begin_of_text|>", "<s>") are
// recognised by Encode as their single id for every kind except llama2c,
// which has no notion of them (run.c does not either). This is what Hugging
// Face does by default and what llama.cpp does for prompts; use EncodeWith
// with ParseSpecial false to treat them as plain text. For llama2c, EncodeWith
// with ParseSpecial true recognises "<s>" and "</s>" as BOS and EOS (its
// pieces for them are "\n<s>\n" and "\n</s>\n"), so that a chat template's
// rendering encodes the same way for every kind.
package tokenizer

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// Token types, numbered as in GGUF's tokenizer.ggml.token_type.
const (
	typeNormal      = 1
	typeUnknown     = 2
	typeControl     = 3
	typeUserDefined = 4
	typeUnused      = 5
	typeByte        = 6
)

type prefixScheme uint8

const (
	prefixNever  prefixScheme = iota
	prefixAlways              // every text segment (llama.cpp, HF legacy Prepend normalizer)
	prefixFirst               // only a segment at the start of the text (HF Metaspace "first")
)

// Tokenizer is an immutable vocabulary plus encoding rules; it is safe for
// concurrent use.
type Tokenizer struct {
	kind   string
	source string // the file it came from, for errors and display
	pre    string // pre-tokenizer, for byte-level kinds

	pieces  []string // Piece: the token as the file writes it
	raw     []string // the bytes Decode produces
	key     []string // the string merges and lookups use (SPM piece / raw bytes)
	types   []uint8
	scores  []float32
	lookup  map[string]int // key -> id of tokens BPE may produce
	merges  map[uint64]mergeResult
	mode    mergeMode
	noMerge []bool     // symbols that never merge (byte fallback tokens)
	byteID  [256]int32 // byte-level: symbol per byte; SPM: byte fallback token; -1 none

	specials     []special // sorted by length, longest first
	specialFirst [256]bool

	bos, eos, unk  int
	eog            map[int]bool
	addBOS, addEOS bool

	// SentencePiece-style options.
	prefix       prefixScheme
	meta         bool // spaces become U+2581 "▁" (pieces use ▁)
	metaSplit    bool // HF Metaspace split: each ▁ starts a new word
	stripLeading bool // Decode drops the dummy-prefix space at start / after BOS
	byteFallback bool
	fuseUnk      bool

	norms []func(string) string // Unicode normalizers (HF NFC/NFKC...)

	// Byte-level options.
	steps          []splitter
	ignoreMerges   bool // a piece that is itself a token is emitted whole
	addPrefixSpace bool
}

type special struct {
	text           string
	id             int
	lstrip, rstrip bool
}

// Options control EncodeWith.
type Options struct {
	AddBOS bool // prepend BOS (if the vocabulary has one)
	AddEOS bool // append EOS (if the vocabulary has one)
	// ParseSpecial makes special-token strings in the text encode as their
	// single id. Encode sets it for every kind except llama2c.
	ParseSpecial bool
}

const metaSpace = "\u2581" // ▁

// Kind is "llama2c", "spm", "bpe" or "tiktoken".
func (t *Tokenizer) Kind() string { return t.kind }

// Source is the file (or description) the vocabulary came from.
func (t *Tokenizer) Source() string { return t.source }

// PreTokenizer names the split applied before byte-level BPE ("gpt2",
// "llama3", "qwen2", "regex", ...), or "" for SentencePiece-style kinds.
func (t *Tokenizer) PreTokenizer() string { return t.pre }

// VocabSize is the number of ids, special tokens included.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// BOS is the beginning-of-sequence id, or -1 if there is none.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS is the end-of-sequence id, or -1 if there is none.
func (t *Tokenizer) EOS() int { return t.eos }

// AddsBOS says whether the vocabulary's own config asks for a BOS at the
// start of a prompt (GGUF add_bos_token, tokenizer_config.json add_bos_token
// or the post-processor template; always for llama2.c and Llama 3).
func (t *Tokenizer) AddsBOS() bool { return t.addBOS && t.bos >= 0 }

// AddsEOS is the same for EOS at the end.
func (t *Tokenizer) AddsEOS() bool { return t.addEOS && t.eos >= 0 }

// IsEOG reports whether id ends generation: EOS, and end-of-turn tokens such
// as <|eot_id|>, <|end_of_text|>, <|eom_id|>, <|im_end|> or those named by
// GGUF eot/eom ids or generation_config.json.
func (t *Tokenizer) IsEOG(id int) bool { return t.eog[id] }

// Piece returns the token as its file writes it, for display: llama2.c
// pieces with plain spaces, SentencePiece pieces with ▁, byte-level pieces in
// GPT-2's printable byte mapping (Ġ for a space; tiktoken ranks are shown the
// same way), special tokens as their text. Out of range ids give "".
func (t *Tokenizer) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// TokenID returns the id of the token written as text: a special token
// (as EncodeWith with ParseSpecial matches it) or a vocabulary piece.
func (t *Tokenizer) TokenID(text string) (int, bool) { return t.idOf(text) }

// SpecialText returns the text that EncodeWith with ParseSpecial encodes as
// the single token id (e.g. "<s>" for a llama2.c BOS, whose piece is
// "\n<s>\n"), or "" if id is not a special token.
func (t *Tokenizer) SpecialText(id int) string {
	for _, sp := range t.specials {
		if sp.id == id {
			return sp.text
		}
	}
	return ""
}

// IsSpecial reports whether id is a control token (BOS, EOS, chat markers,
// reserved), which Stream and DecodeNext do not print.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.types) && t.types[id] == typeControl
}

// Encode returns the ids of text, with BOS first if addBOS is set and the
// vocabulary has one. Special-token strings in text become their ids except
// for llama2c (see the package doc). No EOS is added.
func (t *Tokenizer) Encode(text string, addBOS bool) []int {
	return t.EncodeWith(text, Options{AddBOS: addBOS, ParseSpecial: t.kind != "llama2c"})
}

// EncodeWith encodes text with explicit options.
func (t *Tokenizer) EncodeWith(text string, o Options) []int {
	out := make([]int, 0, len(text)/3+2)
	if o.AddBOS && t.bos >= 0 {
		out = append(out, t.bos)
	}
	if !o.ParseSpecial || len(t.specials) == 0 {
		out = t.encodeSegment(text, true, out)
	} else {
		start, pos := 0, 0
		rstrip := false
		for pos < len(text) {
			sp, ok := t.specialAt(text, pos)
			if !ok {
				pos++
				continue
			}
			seg := text[start:pos]
			if rstrip {
				seg = strings.TrimLeft(seg, " \t\n\r\v\f")
			}
			if sp.lstrip {
				seg = strings.TrimRight(seg, " \t\n\r\v\f")
			}
			out = t.encodeSegment(seg, start == 0, out)
			out = append(out, sp.id)
			rstrip = sp.rstrip
			pos += len(sp.text)
			start = pos
		}
		seg := text[start:]
		if rstrip {
			seg = strings.TrimLeft(seg, " \t\n\r\v\f")
		}
		out = t.encodeSegment(seg, start == 0, out)
	}
	if o.AddEOS && t.eos >= 0 {
		out = append(out, t.eos)
	}
	return out
}

// specialAt returns the longest special token starting at text[pos:].
func (t *Tokenizer) specialAt(text string, pos int) (special, bool) {
	if !t.specialFirst[text[pos]] {
		return special{}, false
	}
	rest := text[pos:]
	for _, sp := range t.specials {
		if strings.HasPrefix(rest, sp.text) {
			return sp, true
		}
	}
	return special{}, false
}

// encodeSegment encodes text that holds no special tokens; atStart says it
// begins the whole text.
func (t *Tokenizer) encodeSegment(seg string, atStart bool, out []int) []int {
	for _, f := range t.norms {
		seg = f(seg)
	}
	if seg == "" {
		return out
	}
	switch t.kind {
	case "llama2c":
		return t.merge(t.llama2cSymbols(" "+seg), out)
	case "spm":
		return t.encodeSPM(seg, atStart, out)
	default:
		return t.encodeByteLevel(seg, out)
	}
}

// llama2cSymbols splits text as run.c does: a byte plus up to three
// following continuation bytes is looked up as a token; if it is none, each
// of its bytes becomes token byte+3.
func (t *Tokenizer) llama2cSymbols(s string) []int32 {
	syms := make([]int32, 0, len(s))
	for i := 0; i < len(s); {
		j := i + 1
		for j < len(s) && s[j]&0xC0 == 0x80 && j-i < 4 {
			j++
		}
		if id, ok := t.lookup[s[i:j]]; ok {
			syms = append(syms, int32(id))
		} else {
			for k := i; k < j; k++ {
				syms = append(syms, t.byteFallbackID(s[k]))
			}
		}
		i = j
	}
	return syms
}

func (t *Tokenizer) byteFallbackID(b byte) int32 {
	if id := t.byteID[b]; id >= 0 {
		return id
	}
	return int32(t.unk)
}

// encodeSPM applies the SentencePiece normalisation (dummy prefix, spaces to
// ▁), then BPE over code points with byte fallback.
func (t *Tokenizer) encodeSPM(seg string, atStart bool, out []int) []int {
	if t.meta {
		seg = strings.ReplaceAll(seg, " ", metaSpace)
	}
	if t.prefix == prefixAlways || (t.prefix == prefixFirst && atStart) {
		if t.meta {
			seg = metaSpace + seg
		} else {
			seg = " " + seg
		}
	}
	if !t.metaSplit {
		return t.merge(t.spmSymbols(seg), out)
	}
	start := 0
	for i := 1; i <= len(seg); i++ {
		if i == len(seg) || strings.HasPrefix(seg[i:], metaSpace) {
			out = t.merge(t.spmSymbols(seg[start:i]), out)
			start = i
		}
	}
	return out
}

func (t *Tokenizer) spmSymbols(s string) []int32 {
	syms := make([]int32, 0, len(s))
	unk := int32(t.unk)
	for i := 0; i < len(s); {
		_, w := utf8.DecodeRuneInString(s[i:])
		if id, ok := t.lookup[s[i:i+w]]; ok {
			syms = append(syms, int32(id))
			i += w
			continue
		}
		ok := t.byteFallback
		for k := i; ok && k < i+w; k++ {
			ok = t.byteID[s[k]] >= 0
		}
		switch {
		case ok:
			for k := i; k < i+w; k++ {
				syms = append(syms, t.byteID[s[k]])
			}
		case unk < 0:
			// No unk token: the character is dropped.
		case t.fuseUnk && len(syms) > 0 && syms[len(syms)-1] == unk:
		default:
			syms = append(syms, unk)
		}
		i += w
	}
	return syms
}

// encodeByteLevel splits seg with the pre-tokenizer and runs byte-level BPE
// on each piece's bytes.
func (t *Tokenizer) encodeByteLevel(seg string, out []int) []int {
	if t.addPrefixSpace && seg[0] != ' ' {
		seg = " " + seg
	}
	ends := []int{len(seg)}
	for _, step := range t.steps {
		var next []int
		start := 0
		for _, e := range ends {
			piece := seg[start:e]
			n0 := len(next)
			next = step(piece, next)
			for k := n0; k < len(next); k++ {
				next[k] += start
			}
			start = e
		}
		ends = next
	}
	var syms []int32
	start := 0
	for _, e := range ends {
		piece := seg[start:e]
		start = e
		if t.ignoreMerges {
			if id, ok := t.lookup[piece]; ok {
				out = append(out, id)
				continue
			}
		}
		syms = syms[:0]
		for k := 0; k < len(piece); k++ {
			if id := t.byteID[piece[k]]; id >= 0 {
				syms = append(syms, id)
			} else if t.unk >= 0 {
				syms = append(syms, int32(t.unk))
			}
		}
		out = t.merge(syms, out)
	}
	return out
}

// text is the Decode output for id following prev (-1 at the start); start
// says id begins the text (first, or right after a leading BOS).
func (t *Tokenizer) text(prev, id int, start bool) string {
	if id < 0 || id >= len(t.raw) {
		return ""
	}
	s := t.raw[id]
	if t.stripLeading && len(s) > 0 && s[0] == ' ' && t.types[id] != typeControl && (start || t.stripAfter(prev)) {
		s = s[1:]
	}
	return s
}

// stripAfter says whether a piece following prev starts with a dummy-prefix
// space, mirroring encodeSPM: when every text segment is prefixed, that is
// after BOS (llama2.c's rule) and, for SentencePiece kinds that match special
// tokens in text, after any special token.
func (t *Tokenizer) stripAfter(prev int) bool {
	if t.prefix != prefixAlways || prev < 0 || prev >= len(t.types) {
		return false
	}
	if prev == t.bos {
		return true
	}
	if t.kind != "spm" {
		return false
	}
	switch t.types[prev] {
	case typeControl, typeUserDefined, typeUnknown:
		return true
	}
	return false
}

// Decode returns the text of ids. It inverts Encode(text, false):
// Decode(Encode(s, false)) == s for byte-level kinds, and for SentencePiece
// kinds too (except that a literal ▁ comes back as a space), because the
// dummy-prefix space the encoder adds is dropped again: from the first
// piece, from the piece after a leading BOS (so Decode(Encode(s, true)) is
// "<s>"+s... without the prefix space), and wherever the encoder prefixes a
// segment (after BOS for llama2c; after any special token for GGUF and
// legacy HF SentencePiece vocabularies). Every id is rendered, special
// tokens as their text (Hugging Face's default, skip_special_tokens=False);
// byte tokens give raw bytes, so the result is invalid UTF-8 only if the
// ids spell invalid UTF-8. Use a Stream to print tokens as they come.
func (t *Tokenizer) Decode(ids []int) string {
	var b strings.Builder
	prev := -1
	for i, id := range ids {
		b.WriteString(t.text(prev, id, i == 0 || (i == 1 && ids[0] == t.bos && t.bos >= 0)))
		prev = id
	}
	return b.String()
}

// DecodeNext returns the text to print for id following prev, for streaming
// output: control tokens (BOS, EOS, chat markers) print nothing; for
// SentencePiece kinds the leading space of a piece right after BOS is dropped
// (llama2.c's rule); <0xNN> byte tokens and byte-level pieces give raw bytes,
// which may be part of a UTF-8 sequence: Stream buffers those.
func (t *Tokenizer) DecodeNext(prev, id int) string {
	if t.IsSpecial(id) {
		return ""
	}
	return t.text(prev, id, prev == t.bos && t.bos >= 0)
}

// Stream turns a sequence of ids into printable text, holding back the
// bytes of an incomplete UTF-8 sequence until the rest arrives, so the
// concatenated output is always valid UTF-8.
type Stream struct {
	t    *Tokenizer
	prev int
	buf  []byte
}

// NewStream starts a stream. Feed it every id, the prompt's BOS included,
// so that the space after BOS is dropped.
func (t *Tokenizer) NewStream() *Stream { return &Stream{t: t, prev: -1} }

// Next returns the text that id completes (possibly "").
func (s *Stream) Next(id int) string {
	s.buf = append(s.buf, s.t.DecodeNext(s.prev, id)...)
	s.prev = id
	return s.drain(false)
}

// Flush returns what is still held back, with each byte of an unfinished
// sequence as U+FFFD.
func (s *Stream) Flush() string { return s.drain(true) }

func (s *Stream) drain(final bool) string {
	var out []byte
	i := 0
	for i < len(s.buf) {
		r, w := utf8.DecodeRune(s.buf[i:])
		if r == utf8.RuneError && w <= 1 {
			if !final && !utf8.FullRune(s.buf[i:]) {
				break // a valid prefix: wait for the rest
			}
			out = append(out, "\uFFFD"...)
			i++
			continue
		}
		out = append(out, s.buf[i:i+w]...)
		i += w
	}
	s.buf = append(s.buf[:0], s.buf[i:]...)
	return string(out)
}

// setSpecials installs the special tokens matched in text.
func (t *Tokenizer) setSpecials(sp []special) {
	sort.SliceStable(sp, func(i, j int) bool { return len(sp[i].text) > len(sp[j].text) })
	t.specials = t.specials[:0]
	t.specialFirst = [256]bool{}
	for _, s := range sp {
		if s.text == "" {
			continue
		}
		t.specials = append(t.specials, s)
		t.specialFirst[s.text[0]] = true
	}
}

// eogNames are end-of-generation tokens recognised by name.
var eogNames = []string{
	"</s>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>",
	"<|im_end|>", "<|end|>", "<end_of_turn>", "<|return|>", "<EOT>",
}

// finish fills derived tables after a loader has set pieces, raw, key,
// types and the ids.
func (t *Tokenizer) finish() {
	if t.eog == nil {
		t.eog = map[int]bool{}
	}
	if t.eos >= 0 {
		t.eog[t.eos] = true
	}
	byText := make(map[string]int, 16)
	for id, p := range t.pieces {
		if t.types[id] == typeControl || t.types[id] == typeUserDefined {
			byText[p] = id
		}
	}
	for _, n := range eogNames {
		if id, ok := byText[n]; ok && t.types[id] == typeControl {
			t.eog[id] = true
		}
	}
}

func validID(id, n int) int {
	if id < 0 || id >= n {
		return -1
	}
	return id
}
