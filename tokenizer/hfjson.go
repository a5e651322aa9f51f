package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// LoadHFJSON reads a Hugging Face tokenizer.json with a BPE model, either
// byte-level (a ByteLevel pre-tokenizer: GPT-2, Llama 3, ...) or
// SentencePiece-style (a Prepend/Replace "▁" normalizer or a Metaspace
// pre-tokenizer, usually with byte_fallback: Llama 2, TinyLlama, Mistral).
// tokenizer_config.json beside it, if present, gives bos_token, eos_token,
// add_bos_token and add_eos_token; generation_config.json adds its
// eos_token_id(s) to IsEOG. Without them BOS/EOS come from the
// post-processor template.
//
// Encode follows the tokenizers library with its defaults: added tokens
// written in the text become their ids (longest match first, honouring
// lstrip/rstrip), merges apply by rank, leftmost first.
func LoadHFJSON(path string) (*Tokenizer, error) {
	data, err := readBounded(path, maxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json %s: %w", path, err)
	}
	t, err := parseHFJSON(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json %s: %w", path, err)
	}
	t.source = path
	dir := filepath.Dir(path)
	if err := t.readHFConfig(filepath.Join(dir, "tokenizer_config.json")); err != nil {
		return nil, err
	}
	if err := t.readGenerationConfig(filepath.Join(dir, "generation_config.json")); err != nil {
		return nil, err
	}
	t.finish()
	return t, nil
}

type hfAdded struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	Special    bool   `json:"special"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
}

type hfPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// hfComp is any normalizer, pre-tokenizer, post-processor or decoder; only
// the fields this package uses are decoded.
type hfComp struct {
	Type           string     `json:"type"`
	Normalizers    []hfComp   `json:"normalizers"`
	Pretokenizers  []hfComp   `json:"pretokenizers"`
	Processors     []hfComp   `json:"processors"`
	Prepend        string     `json:"prepend"`
	Pattern        *hfPattern `json:"pattern"`
	Content        string     `json:"content"`
	AddPrefixSpace *bool      `json:"add_prefix_space"`
	UseRegex       *bool      `json:"use_regex"`
	Replacement    string     `json:"replacement"`
	PrependScheme  string     `json:"prepend_scheme"`
	Split          *bool      `json:"split"`
	Behavior       string     `json:"behavior"`
	Invert         bool       `json:"invert"`
	Individual     bool       `json:"individual_digits"`
	Single         []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
		Sequence *struct {
			ID string `json:"id"`
		} `json:"Sequence"`
	} `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int `json:"ids"`
	} `json:"special_tokens"`
}

type hfModel struct {
	Type         string          `json:"type"`
	Vocab        json.RawMessage `json:"vocab"`
	Merges       json.RawMessage `json:"merges"`
	UnkToken     *string         `json:"unk_token"`
	ByteFallback bool            `json:"byte_fallback"`
	FuseUnk      bool            `json:"fuse_unk"`
	IgnoreMerges bool            `json:"ignore_merges"`
	ContPrefix   *string         `json:"continuing_subword_prefix"`
	EndSuffix    *string         `json:"end_of_word_suffix"`
}

type hfFile struct {
	AddedTokens   []hfAdded `json:"added_tokens"`
	Normalizer    *hfComp   `json:"normalizer"`
	PreTokenizer  *hfComp   `json:"pre_tokenizer"`
	PostProcessor *hfComp   `json:"post_processor"`
	Model         *hfModel  `json:"model"`
}

// flatten expands Sequence components.
func flatten(c *hfComp, out []hfComp) []hfComp {
	if c == nil {
		return out
	}
	if c.Type == "Sequence" {
		for _, l := range [][]hfComp{c.Normalizers, c.Pretokenizers, c.Processors} {
			for i := range l {
				out = flatten(&l[i], out)
			}
		}
		return out
	}
	return append(out, *c)
}

func parseHFJSON(data []byte) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	m := f.Model
	if m == nil {
		return nil, fmt.Errorf("no \"model\" section")
	}
	if m.Type != "BPE" && !(m.Type == "" && len(m.Merges) > 0) {
		return nil, fmt.Errorf("model type %q is not supported (only BPE)", m.Type)
	}
	if (m.ContPrefix != nil && *m.ContPrefix != "") || (m.EndSuffix != nil && *m.EndSuffix != "") {
		return nil, fmt.Errorf("BPE with continuing_subword_prefix/end_of_word_suffix is not supported")
	}
	var vocab map[string]int
	if err := json.Unmarshal(m.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("model.vocab: want an object of token to id: %w", err)
	}
	merges, err := parseHFMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	if len(vocab) == 0 {
		return nil, fmt.Errorf("model.vocab is empty")
	}
	n := 0
	for tok, id := range vocab {
		if id < 0 || id >= maxTokens {
			return nil, fmt.Errorf("model.vocab: %q has id %d out of range", clip([]byte(tok)), id)
		}
		n = max(n, id+1)
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.ID >= maxTokens {
			return nil, fmt.Errorf("added token %q has id %d out of range", clip([]byte(a.Content)), a.ID)
		}
		n = max(n, a.ID+1)
	}
	if n > 2*(len(vocab)+len(f.AddedTokens))+1024 {
		return nil, fmt.Errorf("ids up to %d for %d tokens: too sparse", n-1, len(vocab)+len(f.AddedTokens))
	}
	t := &Tokenizer{pieces: make([]string, n), raw: make([]string, n), key: make([]string, n),
		types: make([]uint8, n), lookup: make(map[string]int, n), mode: mergeByRank,
		bos: -1, eos: -1, unk: -1, eog: map[int]bool{}}
	for i := range t.types {
		t.types[i] = typeUnused
	}
	for tok, id := range vocab {
		if t.types[id] != typeUnused {
			return nil, fmt.Errorf("model.vocab: id %d given twice (%q and %q)", id, clip([]byte(t.pieces[id])), clip([]byte(tok)))
		}
		t.pieces[id] = tok
		t.types[id] = typeNormal
	}
	var sp []special
	for _, a := range f.AddedTokens {
		if t.types[a.ID] != typeUnused && t.pieces[a.ID] != a.Content {
			return nil, fmt.Errorf("added token %q has id %d, which the vocab gives to %q", clip([]byte(a.Content)), a.ID, clip([]byte(t.pieces[a.ID])))
		}
		t.pieces[a.ID] = a.Content
		t.types[a.ID] = typeUserDefined
		if a.Special {
			t.types[a.ID] = typeControl
		}
		sp = append(sp, special{text: a.Content, id: a.ID, lstrip: a.LStrip, rstrip: a.RStrip})
	}
	if m.UnkToken != nil {
		if id, ok := vocab[*m.UnkToken]; ok {
			t.unk = id
			if t.types[id] == typeNormal {
				t.types[id] = typeUnknown
			}
		}
	}

	// Normalizer and pre-tokenizer decide the kind.
	byteLevel := false
	var steps []splitter
	var pres []string
	for _, c := range flatten(f.PreTokenizer, nil) {
		switch c.Type {
		case "ByteLevel":
			byteLevel = true
			if c.AddPrefixSpace != nil && *c.AddPrefixSpace {
				t.addPrefixSpace = true
			}
			if c.UseRegex == nil || *c.UseRegex {
				steps = append(steps, splitGPT2)
				pres = append(pres, "gpt2")
			}
		case "Split":
			s, name, err := splitFromPattern(c)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s)
			pres = append(pres, name)
		case "Digits":
			steps = append(steps, splitDigits(c.Individual))
			pres = append(pres, "digits")
		case "Metaspace":
			if c.Replacement != "" && c.Replacement != metaSpace {
				return nil, fmt.Errorf("Metaspace replacement %q is not supported (only ▁)", c.Replacement)
			}
			t.meta = true
			switch c.PrependScheme {
			case "always":
				t.prefix = prefixAlways
			case "first":
				t.prefix = prefixFirst
			case "never":
				t.prefix = prefixNever
			case "":
				if c.AddPrefixSpace == nil || *c.AddPrefixSpace {
					t.prefix = prefixAlways
				}
			default:
				return nil, fmt.Errorf("Metaspace prepend_scheme %q is not supported", c.PrependScheme)
			}
			t.metaSplit = c.Split == nil || *c.Split
		default:
			return nil, fmt.Errorf("pre-tokenizer %q is not supported", c.Type)
		}
	}
	var norms []func(string) string
	for _, c := range flatten(f.Normalizer, nil) {
		switch c.Type {
		case "Prepend":
			if c.Prepend != metaSpace {
				return nil, fmt.Errorf("Prepend normalizer %q is not supported (only ▁)", c.Prepend)
			}
			t.prefix = prefixAlways
		case "Replace":
			if c.Pattern == nil || c.Pattern.String == nil || *c.Pattern.String != " " || c.Content != metaSpace {
				return nil, fmt.Errorf("Replace normalizer other than \" \" -> \"▁\" is not supported")
			}
			t.meta = true
		case "NFC":
			norms = append(norms, norm.NFC.String)
		case "NFKC":
			norms = append(norms, norm.NFKC.String)
		case "NFD":
			norms = append(norms, norm.NFD.String)
		case "NFKD":
			norms = append(norms, norm.NFKD.String)
		default:
			return nil, fmt.Errorf("normalizer %q is not supported", c.Type)
		}
	}
	t.norms = norms

	split := func(p string) [2]string { a, b, _ := strings.Cut(p, " "); return [2]string{a, b} }
	flat := make([]string, len(merges))
	for i, mg := range merges {
		flat[i] = mg[0] + " " + mg[1]
	}
	switch {
	case byteLevel:
		if t.meta {
			return nil, fmt.Errorf("both ByteLevel and Metaspace/▁ handling: not supported")
		}
		t.kind = "bpe"
		t.steps = steps
		t.pre = strings.Join(pres, "+")
		if t.pre == "" {
			t.pre = "none"
		}
		t.ignoreMerges = m.IgnoreMerges
		// Merge parts may contain spaces only in the array form; the
		// joined form is re-split on the first space, which is exact
		// for byte-level pieces (a space is written Ġ).
		t.initByteLevel(split, flat)
	case t.meta || m.ByteFallback:
		if len(steps) > 0 {
			return nil, fmt.Errorf("a Split/Digits pre-tokenizer with SentencePiece-style BPE is not supported")
		}
		t.kind = "spm"
		t.byteFallback, t.fuseUnk, t.ignoreMerges = m.ByteFallback, m.FuseUnk, m.IgnoreMerges
		t.stripLeading = t.prefix != prefixNever
		t.initSPM()
		t.buildMergesSPM(merges)
	default:
		return nil, fmt.Errorf("neither byte-level (ByteLevel pre-tokenizer) nor SentencePiece-style (▁, byte_fallback): not supported")
	}
	t.setSpecials(sp)

	// Post-processor template: special tokens before $A are BOS, after it EOS.
	for _, c := range flatten(f.PostProcessor, nil) {
		if c.Type != "TemplateProcessing" {
			continue
		}
		seenA := false
		for _, p := range c.Single {
			switch {
			case p.Sequence != nil:
				seenA = true
			case p.SpecialToken != nil:
				id := -1
				if st, ok := c.SpecialTokens[p.SpecialToken.ID]; ok && len(st.IDs) > 0 {
					id = validID(st.IDs[0], n)
				} else if v, ok := t.idOf(p.SpecialToken.ID); ok {
					id = v
				}
				if id < 0 {
					continue
				}
				if seenA {
					t.eos, t.addEOS = id, true
				} else {
					t.bos, t.addBOS = id, true
				}
			}
		}
	}
	return t, nil
}

// idOf finds a token by its text (added tokens and vocab pieces).
func (t *Tokenizer) idOf(s string) (int, bool) {
	for _, sp := range t.specials {
		if sp.text == s {
			return sp.id, true
		}
	}
	for id, p := range t.pieces {
		if p == s && t.types[id] != typeUnused {
			return id, true
		}
	}
	return -1, false
}

func parseHFMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		out := make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("model.merges[%d] %q is not \"left right\"", i, clip([]byte(s)))
			}
			out[i] = [2]string{a, b}
		}
		return out, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges: want strings or pairs: %w", err)
	}
	out := make([][2]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("model.merges[%d] has %d parts, want 2", i, len(p))
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}

// buildMergesSPM ranks merges for a SentencePiece-style vocabulary.
func (t *Tokenizer) buildMergesSPM(merges [][2]string) {
	pieceID := make(map[string]int, len(t.pieces))
	for id, p := range t.pieces {
		if _, dup := pieceID[p]; !dup && t.types[id] != typeUnused {
			pieceID[p] = id
		}
	}
	t.merges = make(map[uint64]mergeResult, len(merges))
	for rank, mg := range merges {
		a, ok1 := pieceID[mg[0]]
		b, ok2 := pieceID[mg[1]]
		c, ok3 := pieceID[mg[0]+mg[1]]
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		k := pairKey(int32(a), int32(b))
		if _, dup := t.merges[k]; !dup {
			t.merges[k] = mergeResult{rank: int32(rank), merged: int32(c)}
		}
	}
}

// splitFromPattern turns an HF Split pre-tokenizer into a splitter: the
// GPT-2, Llama 3 and Qwen2 regexes use the hand-written splitters, anything
// else must compile with Go's regexp.
func splitFromPattern(c hfComp) (splitter, string, error) {
	if c.Invert || (c.Behavior != "" && c.Behavior != "Isolated") {
		return nil, "", fmt.Errorf("Split pre-tokenizer with behavior %q invert %v is not supported (only Isolated)", c.Behavior, c.Invert)
	}
	if c.Pattern == nil {
		return nil, "", fmt.Errorf("Split pre-tokenizer without a pattern")
	}
	var re string
	switch {
	case c.Pattern.Regex != nil:
		re = *c.Pattern.Regex
		switch re {
		case PatternGPT2:
			return splitGPT2, "gpt2", nil
		case PatternLlama3:
			return splitLlama3, "llama3", nil
		case PatternQwen2:
			return splitQwen2, "qwen2", nil
		}
	case c.Pattern.String != nil:
		re = regexp.QuoteMeta(*c.Pattern.String)
	default:
		return nil, "", fmt.Errorf("Split pre-tokenizer pattern is neither String nor Regex")
	}
	rx, err := regexp.Compile(re)
	if err != nil {
		// Go's message quotes the pattern raw; keep the error on one line.
		msg := strings.ReplaceAll(err.Error(), "\n", `\n`)
		return nil, "", fmt.Errorf("Split regex %q is not supported by Go's regexp: %s", clip([]byte(re)), msg)
	}
	return func(s string, ends []int) []int {
		last := 0
		for _, m := range rx.FindAllStringIndex(s, -1) {
			if m[0] == m[1] {
				continue
			}
			if m[0] > last {
				ends = append(ends, m[0])
			}
			ends = append(ends, m[1])
			last = m[1]
		}
		if last < len(s) {
			ends = append(ends, len(s))
		}
		return ends
	}, "regex", nil
}

// readHFConfig applies tokenizer_config.json if it exists.
func (t *Tokenizer) readHFConfig(path string) error {
	data, err := readBounded(path, 16<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tokenizer_config.json %s: %w", path, err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("tokenizer_config.json %s: bad JSON: %w", path, err)
	}
	tokenName := func(key string) (string, bool) {
		raw, ok := cfg[key]
		if !ok {
			return "", false
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s, true
		}
		var obj struct {
			Content string `json:"content"`
		}
		if json.Unmarshal(raw, &obj) == nil && obj.Content != "" {
			return obj.Content, true
		}
		return "", false
	}
	flag := func(key string, dst *bool) error {
		raw, ok := cfg[key]
		if !ok || string(raw) == "null" {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("tokenizer_config.json %s: %s is not a bool", path, key)
		}
		return nil
	}
	if s, ok := tokenName("bos_token"); ok {
		if id, ok := t.idOf(s); ok {
			t.bos = id
		}
	}
	if s, ok := tokenName("eos_token"); ok {
		if id, ok := t.idOf(s); ok {
			t.eos = id
		}
	}
	if err := flag("add_bos_token", &t.addBOS); err != nil {
		return err
	}
	return flag("add_eos_token", &t.addEOS)
}

// readGenerationConfig adds generation_config.json's eos_token_id(s) to the
// end-of-generation set.
func (t *Tokenizer) readGenerationConfig(path string) error {
	data, err := readBounded(path, 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("generation_config.json %s: %w", path, err)
	}
	var cfg struct {
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("generation_config.json %s: bad JSON: %w", path, err)
	}
	var one int
	var many []int
	switch {
	case len(cfg.EOS) == 0 || string(cfg.EOS) == "null":
	case json.Unmarshal(cfg.EOS, &one) == nil:
		many = []int{one}
	case json.Unmarshal(cfg.EOS, &many) == nil:
	default:
		return fmt.Errorf("generation_config.json %s: eos_token_id is neither an int nor a list", path)
	}
	for _, id := range many {
		if id >= 0 && id < len(t.pieces) {
			t.eog[id] = true
		}
	}
	return nil
}
