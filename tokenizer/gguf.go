package tokenizer

import (
	"fmt"
	"math"
	"reflect"
	"strings"
)

// FromGGUFMetadata builds the tokenizer stored in GGUF metadata (the
// tokenizer.ggml.* keys; source names the file in errors).
//
// tokenizer.ggml.model "llama" is SentencePiece-style BPE: a dummy-prefix
// space unless add_space_prefix is false, spaces as ▁, merges by highest
// score, byte fallback to <0xNN> tokens (llama.cpp's SPM tokenizer).
// "gpt2" is byte-level BPE by merge rank; tokenizer.ggml.pre picks the split:
// "llama-bpe"/"llama3" the Llama 3 regex (and whole-piece lookup, as
// llama.cpp's ignore_merges), "default"/"gpt-2" (or absent) the GPT-2 regex,
// except that a vocabulary holding <|begin_of_text|> with no pre key is taken
// to be Llama 3 (files converted before the key existed), "qwen2" single-digit
// Llama 3, "smollm" GPT-2 with single digits. Special-token strings
// (control, user-defined and unknown types) are matched in Encode's text.
//
// Values may be any integer width; arrays are typed slices or []any.
func FromGGUFMetadata(meta map[string]any, source string) (*Tokenizer, error) {
	t, err := fromGGUF(meta)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: tokenizer: %w", source, err)
	}
	t.source = source
	return t, nil
}

func fromGGUF(meta map[string]any) (*Tokenizer, error) {
	model, ok := meta["tokenizer.ggml.model"].(string)
	if !ok {
		if _, present := meta["tokenizer.ggml.model"]; present {
			return nil, fmt.Errorf("tokenizer.ggml.model is %T, not a string", meta["tokenizer.ggml.model"])
		}
		return nil, fmt.Errorf("no tokenizer.ggml.model key (the file has no embedded tokenizer)")
	}
	tokens, err := metaStrings(meta, "tokenizer.ggml.tokens")
	if err != nil {
		return nil, err
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("tokenizer.ggml.tokens is missing or empty")
	}
	if len(tokens) > maxTokens {
		return nil, fmt.Errorf("%d tokens is over the limit of %d", len(tokens), maxTokens)
	}
	n := len(tokens)
	types := make([]uint8, n)
	for i := range types {
		types[i] = typeNormal
	}
	if _, ok := meta["tokenizer.ggml.token_type"]; ok {
		tt, err := metaInts(meta, "tokenizer.ggml.token_type")
		if err != nil {
			return nil, err
		}
		if len(tt) != n {
			return nil, fmt.Errorf("tokenizer.ggml.token_type has %d entries for %d tokens", len(tt), n)
		}
		for i, v := range tt {
			if v >= typeNormal && v <= typeByte {
				types[i] = uint8(v)
			}
		}
	}
	id := func(key string, def int) (int, error) {
		v, ok, err := metaInt(meta, key)
		if err != nil || !ok {
			return def, err
		}
		if v < 0 || v >= int64(n) {
			return -1, nil // llama.cpp tolerates e.g. -1 for "none"
		}
		return int(v), nil
	}
	flag := func(key string, def bool) (bool, error) {
		v, ok := meta[key]
		if !ok {
			return def, nil
		}
		b, ok := v.(bool)
		if !ok {
			return def, fmt.Errorf("%s is %T, not a bool", key, v)
		}
		return b, nil
	}

	t := &Tokenizer{pieces: tokens, types: types, raw: make([]string, n), key: make([]string, n),
		lookup: make(map[string]int, n), eog: map[int]bool{}}
	switch model {
	case "llama":
		t.kind, t.mode, t.meta, t.byteFallback = "spm", mergeByScore, true, true
		t.scores = make([]float32, n)
		if _, ok := meta["tokenizer.ggml.scores"]; ok {
			sc, err := metaFloats(meta, "tokenizer.ggml.scores")
			if err != nil {
				return nil, err
			}
			if len(sc) != n {
				return nil, fmt.Errorf("tokenizer.ggml.scores has %d entries for %d tokens", len(sc), n)
			}
			for i, s := range sc {
				if s != s {
					return nil, fmt.Errorf("tokenizer.ggml.scores[%d] is NaN", i)
				}
				t.scores[i] = float32(s)
			}
		}
		if t.bos, err = id("tokenizer.ggml.bos_token_id", validID(1, n)); err != nil {
			return nil, err
		}
		if t.eos, err = id("tokenizer.ggml.eos_token_id", validID(2, n)); err != nil {
			return nil, err
		}
		if t.unk, err = id("tokenizer.ggml.unknown_token_id", validID(0, n)); err != nil {
			return nil, err
		}
		if t.addBOS, err = flag("tokenizer.ggml.add_bos_token", true); err != nil {
			return nil, err
		}
		space, err := flag("tokenizer.ggml.add_space_prefix", true)
		if err != nil {
			return nil, err
		}
		if space {
			t.prefix, t.stripLeading = prefixAlways, true
		}
		t.initSPM()
	case "gpt2":
		t.kind, t.mode = "bpe", mergeByRank
		if t.bos, err = id("tokenizer.ggml.bos_token_id", -1); err != nil {
			return nil, err
		}
		if t.eos, err = id("tokenizer.ggml.eos_token_id", -1); err != nil {
			return nil, err
		}
		if t.unk, err = id("tokenizer.ggml.unknown_token_id", -1); err != nil {
			return nil, err
		}
		merges, err := metaStrings(meta, "tokenizer.ggml.merges")
		if err != nil {
			return nil, err
		}
		if len(merges) == 0 {
			return nil, fmt.Errorf("tokenizer.ggml.merges is missing or empty (needed for model \"gpt2\")")
		}
		pre, _ := meta["tokenizer.ggml.pre"].(string)
		if err := t.setGGUFPre(pre); err != nil {
			return nil, err
		}
		if t.addBOS, err = flag("tokenizer.ggml.add_bos_token", t.pre == "llama3"); err != nil {
			return nil, err
		}
		t.initByteLevel(func(p string) [2]string { a, b, _ := strings.Cut(p, " "); return [2]string{a, b} }, merges)
	default:
		return nil, fmt.Errorf("tokenizer.ggml.model %q is not supported (supported: \"llama\", \"gpt2\")", model)
	}
	if t.addEOS, err = flag("tokenizer.ggml.add_eos_token", false); err != nil {
		return nil, err
	}
	for _, k := range []string{"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"} {
		if v, err := id(k, -1); err != nil {
			return nil, err
		} else if v >= 0 {
			t.eog[v] = true
		}
	}
	var sp []special
	for i, p := range tokens {
		if types[i] == typeControl || types[i] == typeUserDefined || types[i] == typeUnknown {
			sp = append(sp, special{text: p, id: i})
		}
	}
	t.setSpecials(sp)
	t.finish()
	return t, nil
}

// setGGUFPre chooses the byte-level split from tokenizer.ggml.pre.
func (t *Tokenizer) setGGUFPre(pre string) error {
	switch pre {
	case "llama3", "llama-bpe", "llama-v3":
		t.setPre("llama3")
	case "", "default":
		t.setPre("gpt2")
		for _, p := range t.pieces {
			if p == "<|begin_of_text|>" {
				t.setPre("llama3")
				break
			}
		}
	case "gpt-2", "gpt2":
		t.setPre("gpt2")
	case "qwen2", "deepseek-r1-qwen":
		t.setPre("qwen2")
	case "smollm":
		t.setPre("smollm")
	default:
		return fmt.Errorf("tokenizer.ggml.pre %q is not supported (supported: llama-bpe, llama3, default, gpt-2, qwen2, smollm)", pre)
	}
	return nil
}

// setPre installs a named pre-tokenizer.
func (t *Tokenizer) setPre(name string) {
	t.pre = name
	switch name {
	case "llama3":
		t.steps, t.ignoreMerges = []splitter{splitLlama3}, true
	case "qwen2":
		t.steps = []splitter{splitQwen2}
	case "smollm":
		t.steps = []splitter{splitDigits(true), splitGPT2}
	default:
		t.steps = []splitter{splitGPT2}
	}
}

// splitDigits is HF's Digits pre-tokenizer: digits are isolated, one by one
// (individual) or as runs.
func splitDigits(individual bool) splitter {
	isD := func(r rune) bool { return r >= '0' && r <= '9' }
	return func(s string, ends []int) []int {
		for i := 0; i < len(s); {
			r, w := decodeAt(s, i)
			switch {
			case isD(r) && individual:
				i += w
			case isD(r):
				i = runEnd(s, i, isD)
			default:
				i = runEnd(s, i, func(r rune) bool { return !isD(r) })
			}
			ends = append(ends, i)
		}
		return ends
	}
}

// initSPM fills raw/key/lookup/byte tables for a SentencePiece vocabulary
// whose pieces use ▁ for spaces.
func (t *Tokenizer) initSPM() {
	t.noMerge = make([]bool, len(t.pieces))
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	for id, p := range t.pieces {
		t.key[id] = p
		t.raw[id] = strings.ReplaceAll(p, metaSpace, " ")
		if b, ok := parseByteToken(p); ok && (t.types[id] == typeByte || t.types[id] == typeNormal) {
			t.raw[id] = string([]byte{b})
			if t.byteID[b] < 0 {
				t.byteID[b] = int32(id)
			}
			t.noMerge[id] = true
			continue
		}
		if t.types[id] == typeControl || t.types[id] == typeUnknown {
			t.raw[id] = p
		}
		if t.types[id] == typeNormal || t.types[id] == typeUserDefined {
			if _, dup := t.lookup[p]; !dup && p != "" {
				t.lookup[p] = id
			}
		}
	}
}

// initByteLevel fills the tables of a byte-level vocabulary written in the
// GPT-2 mapping, and the merge ranks (index in merges).
func (t *Tokenizer) initByteLevel(split func(string) [2]string, merges []string) {
	pieceID := make(map[string]int, len(t.pieces))
	for id, p := range t.pieces {
		if _, dup := pieceID[p]; !dup {
			pieceID[p] = id
		}
		t.raw[id] = p
		if t.types[id] != typeControl && t.types[id] != typeUserDefined {
			t.raw[id], _ = byteLevelDecode(p)
		}
		t.key[id] = t.raw[id]
		if (t.types[id] == typeNormal || t.types[id] == typeUserDefined || t.types[id] == typeByte) && t.raw[id] != "" {
			if _, dup := t.lookup[t.raw[id]]; !dup {
				t.lookup[t.raw[id]] = id
			}
		}
	}
	for b := range t.byteID {
		t.byteID[b] = -1
		if id, ok := pieceID[string(byteToRune[b])]; ok {
			t.byteID[b] = int32(id)
		}
	}
	t.merges = make(map[uint64]mergeResult, len(merges))
	for rank, m := range merges {
		ab := split(m)
		a, ok1 := pieceID[ab[0]]
		b, ok2 := pieceID[ab[1]]
		c, ok3 := pieceID[ab[0]+ab[1]]
		if !ok1 || !ok2 || !ok3 {
			continue // a merge whose parts are not tokens can never apply
		}
		k := pairKey(int32(a), int32(b))
		if _, dup := t.merges[k]; !dup {
			t.merges[k] = mergeResult{rank: int32(rank), merged: int32(c)}
		}
	}
}

// metaInt reads an integer of any width; ok is false if the key is absent.
func metaInt(meta map[string]any, key string) (int64, bool, error) {
	v, present := meta[key]
	if !present {
		return 0, false, nil
	}
	n, ok := toInt64(reflect.ValueOf(v))
	if !ok {
		return 0, false, fmt.Errorf("%s is %T, not an integer", key, v)
	}
	return n, true, nil
}

func toInt64(v reflect.Value) (int64, bool) {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := v.Uint()
		if u > math.MaxInt64 {
			return -1, true
		}
		return int64(u), true
	case reflect.Interface:
		if v.IsNil() {
			return 0, false
		}
		return toInt64(v.Elem())
	}
	return 0, false
}

func toFloat64(v reflect.Value) (float64, bool) {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		return v.Float(), true
	case reflect.Interface:
		if v.IsNil() {
			return 0, false
		}
		return toFloat64(v.Elem())
	}
	if n, ok := toInt64(v); ok {
		return float64(n), true
	}
	return 0, false
}

func metaSlice(meta map[string]any, key string) (reflect.Value, bool, error) {
	v, present := meta[key]
	if !present || v == nil {
		return reflect.Value{}, false, nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return reflect.Value{}, false, fmt.Errorf("%s is %T, not an array", key, v)
	}
	if rv.Len() > maxTokens {
		return reflect.Value{}, false, fmt.Errorf("%s has %d entries, over the limit of %d", key, rv.Len(), maxTokens)
	}
	return rv, true, nil
}

func metaStrings(meta map[string]any, key string) ([]string, error) {
	if s, ok := meta[key].([]string); ok {
		if len(s) > maxTokens {
			return nil, fmt.Errorf("%s has %d entries, over the limit of %d", key, len(s), maxTokens)
		}
		return s, nil
	}
	rv, ok, err := metaSlice(meta, key)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]string, rv.Len())
	for i := range out {
		e := rv.Index(i)
		if e.Kind() == reflect.Interface {
			e = e.Elem()
		}
		if e.Kind() != reflect.String {
			return nil, fmt.Errorf("%s[%d] is not a string", key, i)
		}
		out[i] = e.String()
	}
	return out, nil
}

func metaInts(meta map[string]any, key string) ([]int64, error) {
	rv, ok, err := metaSlice(meta, key)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]int64, rv.Len())
	for i := range out {
		n, ok := toInt64(rv.Index(i))
		if !ok {
			return nil, fmt.Errorf("%s[%d] is not an integer", key, i)
		}
		out[i] = n
	}
	return out, nil
}

func metaFloats(meta map[string]any, key string) ([]float64, error) {
	rv, ok, err := metaSlice(meta, key)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]float64, rv.Len())
	for i := range out {
		f, ok := toFloat64(rv.Index(i))
		if !ok {
			return nil, fmt.Errorf("%s[%d] is not a number", key, i)
		}
		out[i] = f
	}
	return out, nil
}
