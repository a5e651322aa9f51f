package tokenizer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// LoadTiktoken reads a tiktoken BPE rank file (one "base64 rank" line per
// token; Meta ships Llama 3 this way as tokenizer.model) and the special
// tokens: a JSON object {"<|name|>": id, ...} at specialsPath, or, when it is
// "", Llama 3's 256 standard ones numbered from the first id after the ranks
// (<|begin_of_text|>=128000, <|end_of_text|>=128001,
// <|reserved_special_token_0..3|>, <|start_header_id|>, <|end_header_id|>,
// <|reserved_special_token_4|>, <|eot_id|>=128009, then reserved 5..250).
//
// Encoding is tiktoken's: the Llama 3 split regex, a piece that is itself a
// token is emitted whole, otherwise bytes merge by lowest rank. Special-token
// strings in the text encode as their ids (tiktoken's allowed_special="all",
// which is what Hugging Face does by default).
func LoadTiktoken(path string, specialsPath string) (*Tokenizer, error) {
	data, err := readBounded(path, maxListBytes)
	if err != nil {
		return nil, fmt.Errorf("tiktoken %s: %w", path, err)
	}
	var specials map[string]int
	if specialsPath != "" {
		sdata, err := readBounded(specialsPath, 16<<20)
		if err != nil {
			return nil, fmt.Errorf("tiktoken specials %s: %w", specialsPath, err)
		}
		if err := json.Unmarshal(sdata, &specials); err != nil {
			return nil, fmt.Errorf("tiktoken specials %s: want a JSON object of name to id: %w", specialsPath, err)
		}
		if len(specials) > maxTokens {
			return nil, fmt.Errorf("tiktoken specials %s: %d entries", specialsPath, len(specials))
		}
	}
	t, err := parseTiktoken(data, specials)
	if err != nil {
		return nil, fmt.Errorf("tiktoken %s: %w", path, err)
	}
	t.source = path
	return t, nil
}

// Llama3Specials returns Llama 3's 256 special tokens numbered from base.
func Llama3Specials(base int) map[string]int {
	names := []string{
		"<|begin_of_text|>", "<|end_of_text|>",
		"<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
		"<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
		"<|start_header_id|>", "<|end_header_id|>",
		"<|reserved_special_token_4|>", "<|eot_id|>",
	}
	for i := 5; i < 256-5; i++ {
		names = append(names, fmt.Sprintf("<|reserved_special_token_%d|>", i))
	}
	m := make(map[string]int, len(names))
	for i, n := range names {
		m[n] = base + i
	}
	return m
}

func parseTiktoken(data []byte, specials map[string]int) (*Tokenizer, error) {
	byRank := map[int]string{}
	maxRank := -1
	seen := map[string]bool{}
	for lineNo := 1; len(data) > 0; lineNo++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("line %d: want \"base64 rank\", got %q", lineNo, clip(line))
		}
		tok, err := base64.StdEncoding.DecodeString(string(line[:sp]))
		if err != nil || len(tok) == 0 {
			return nil, fmt.Errorf("line %d: bad base64 token %q", lineNo, clip(line[:sp]))
		}
		rank, err := strconv.Atoi(string(bytes.TrimSpace(line[sp+1:])))
		if err != nil || rank < 0 || rank >= maxTokens {
			return nil, fmt.Errorf("line %d: bad rank %q", lineNo, clip(line[sp+1:]))
		}
		if _, dup := byRank[rank]; dup {
			return nil, fmt.Errorf("line %d: rank %d given twice", lineNo, rank)
		}
		if seen[string(tok)] {
			return nil, fmt.Errorf("line %d: token %q given twice", lineNo, tok)
		}
		seen[string(tok)] = true
		byRank[rank] = string(tok)
		maxRank = max(maxRank, rank)
	}
	if len(byRank) == 0 {
		return nil, fmt.Errorf("no tokens")
	}
	nBase := maxRank + 1
	if specials == nil {
		specials = Llama3Specials(nBase)
	}
	n := nBase
	for name, id := range specials {
		if id < 0 || id >= maxTokens {
			return nil, fmt.Errorf("special token %q has id %d out of range", name, id)
		}
		if _, clash := byRank[id]; clash {
			return nil, fmt.Errorf("special token %q has id %d, which is also a rank", name, id)
		}
		if name == "" {
			return nil, fmt.Errorf("special token with empty name (id %d)", id)
		}
		n = max(n, id+1)
	}
	if n > 2*(len(byRank)+len(specials))+1024 {
		return nil, fmt.Errorf("ids up to %d for %d tokens: too sparse", n-1, len(byRank)+len(specials))
	}
	t := &Tokenizer{kind: "tiktoken", mode: mergeByConcatRank,
		pieces: make([]string, n), raw: make([]string, n), key: make([]string, n), types: make([]uint8, n),
		lookup: make(map[string]int, len(byRank)), bos: -1, eos: -1, unk: -1, addBOS: true}
	for id := range t.types {
		t.types[id] = typeUnused
	}
	for rank, tok := range byRank {
		t.pieces[rank] = byteLevelEncode(tok)
		t.raw[rank], t.key[rank] = tok, tok
		t.types[rank] = typeNormal
		t.lookup[tok] = rank
	}
	for b := range t.byteID {
		id, ok := t.lookup[string([]byte{byte(b)})]
		if !ok {
			return nil, fmt.Errorf("byte 0x%02X has no rank; every single byte must be a token", b)
		}
		t.byteID[b] = int32(id)
	}
	var sp []special
	for name, id := range specials {
		if t.types[id] == typeControl {
			return nil, fmt.Errorf("special id %d given twice", id)
		}
		t.pieces[id], t.raw[id], t.key[id] = name, name, name
		t.types[id] = typeControl
		sp = append(sp, special{text: name, id: id})
		switch name {
		case "<|begin_of_text|>":
			t.bos = id
		case "<|end_of_text|>":
			t.eos = id
		}
	}
	t.setSpecials(sp)
	t.setPre("llama3")
	t.finish()
	return t, nil
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}
