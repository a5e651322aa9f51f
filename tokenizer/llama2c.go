package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
)

const (
	maxFileBytes = 256 << 20 // largest tokenizer.json read (Gemma 3's is ~33 MB)
	// maxListBytes bounds the binary and line formats (llama2.c's
	// tokenizer.bin, tiktoken rank files): 32k-token vocabularies are
	// ~0.5 MB, Llama 3's 128k ranks 2 MB, o200k 3.6 MB.
	maxListBytes    = 32 << 20
	maxTokens       = 1 << 22 // largest vocabulary accepted
	maxPieceBytes   = 1 << 16 // longest single token
	llama2cMaxToken = 1 << 16 // plausible max_token_length header
)

// LoadLlama2C reads a llama2.c tokenizer.bin: a uint32 max_token_length,
// then per token a float32 score, an int32 length and that many bytes.
// vocabSize is the model's vocabulary size (the file does not store it); if
// it is <= 0, tokens are read until the end of the file (at most 4M).
// Ids 0, 1, 2 are <unk>, BOS, EOS and 3..258 the byte tokens <0x00>..<0xFF>.
func LoadLlama2C(path string, vocabSize int) (*Tokenizer, error) {
	data, err := readBounded(path, maxListBytes)
	if err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer %s: %w", path, err)
	}
	t, err := parseLlama2C(data, vocabSize)
	if err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer %s: %w", path, err)
	}
	t.source = path
	return t, nil
}

func parseLlama2C(data []byte, vocabSize int) (*Tokenizer, error) {
	if vocabSize > maxTokens {
		return nil, fmt.Errorf("vocab size %d is over the limit of %d", vocabSize, maxTokens)
	}
	if len(data) < 4 {
		return nil, fmt.Errorf("file is %d bytes, too short for the header", len(data))
	}
	if mtl := binary.LittleEndian.Uint32(data); mtl == 0 || mtl > llama2cMaxToken {
		return nil, fmt.Errorf("max_token_length %d is implausible (not a llama2.c tokenizer?)", mtl)
	}
	off := 4
	var pieces []string
	var scores []float32
	for i := 0; vocabSize <= 0 || i < vocabSize; i++ {
		if off == len(data) && vocabSize <= 0 {
			break
		}
		if len(data)-off < 8 {
			if vocabSize > 0 {
				return nil, fmt.Errorf("truncated at token %d of %d (offset %d)", i, vocabSize, off)
			}
			return nil, fmt.Errorf("%d trailing bytes after token %d at offset %d", len(data)-off, i, off)
		}
		if i >= maxTokens {
			return nil, fmt.Errorf("more than %d tokens", maxTokens)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || n > maxPieceBytes || int(n) > len(data)-off {
			return nil, fmt.Errorf("token %d at offset %d: length %d out of range", i, off-4, n)
		}
		if score != score {
			return nil, fmt.Errorf("token %d: score is NaN", i)
		}
		pieces = append(pieces, string(data[off:off+int(n)]))
		scores = append(scores, score)
		off += int(n)
	}
	if len(pieces) < 3 {
		return nil, fmt.Errorf("%d tokens; need at least <unk>, BOS and EOS", len(pieces))
	}
	t := &Tokenizer{
		kind: "llama2c", pieces: pieces, key: pieces, scores: scores,
		types: make([]uint8, len(pieces)), raw: make([]string, len(pieces)),
		lookup: make(map[string]int, len(pieces)), mode: mergeByScore,
		unk: 0, bos: 1, eos: 2, addBOS: true,
		prefix: prefixAlways, stripLeading: true,
	}
	for i := range t.byteID {
		t.byteID[i] = -1
		if i+3 < len(pieces) {
			t.byteID[i] = int32(i + 3)
		}
	}
	for id, p := range pieces {
		t.types[id] = typeNormal
		t.raw[id] = p
		if b, ok := parseByteToken(p); ok {
			t.raw[id] = string([]byte{b})
		}
		// run.c looks tokens up in a sorted copy; on duplicates the first id wins here.
		if _, dup := t.lookup[p]; !dup {
			t.lookup[p] = id
		}
	}
	t.types[0] = typeUnknown
	t.types[1], t.types[2] = typeControl, typeControl
	// Matched only when EncodeWith is asked to (Encode does not for llama2c).
	t.setSpecials([]special{{text: "<s>", id: 1}, {text: "</s>", id: 2}})
	t.finish()
	return t, nil
}

// parseByteToken recognises "<0xNN>" (hex, either case).
func parseByteToken(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexVal(p[3])
	lo, ok2 := hexVal(p[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
