package tokenizer

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"offload/internal/fixtures"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// exercise runs a freshly parsed tokenizer over a few strings: whatever the
// file said, encoding and decoding must not panic and ids stay in range.
func exercise(t *testing.T, tok *Tokenizer) {
	for _, s := range []string{"", "a b", "héllo 世界 🦙\n\n'll 123", "\xff"} {
		ids := tok.Encode(s, true)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("%q: id %d out of range [0,%d)", s, id, tok.VocabSize())
			}
		}
		_ = tok.Decode(ids)
		st := tok.NewStream()
		for _, id := range ids {
			if p := st.Next(id); !utf8.ValidString(p) {
				t.Fatalf("stream gave invalid UTF-8 %q", p)
			}
		}
		st.Flush()
	}
}

// checkErr requires a one-line error naming the file.
func checkErr(t *testing.T, err error, path string) {
	if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error does not name %s on one line: %v", path, err)
	}
}

// fuzzDir is where the fuzz targets write their inputs: a tmpfs when there
// is one. On a disk-backed temp dir every rewrite of the input file costs a
// millisecond or more (ext4 flushes a file truncated by a rewrite), which
// kept the llama2.c and tiktoken targets to a few thousand inputs a
// minute; the loaders read the file exactly the same way from either.
func fuzzDir(f *testing.F) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "tokfuzz"); err == nil {
			f.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return f.TempDir()
}

func llama2cBytes(pieces []string, scores []float32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 8)
	for i, p := range pieces {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(scores[i]))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

func FuzzLlama2CTokenizer(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join(fixtures.Shared(f), "models", "stories260K", "tok512.bin")); err == nil {
		f.Add(data, 512)
		f.Add(data[:len(data)/2], 0)
	}
	f.Add(llama2cBytes([]string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", " a"}, []float32{0, 0, 0, -1, -2, -0.5}), 0)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f}, 3)
	f.Add([]byte{}, -1)
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, data []byte, vocab int) {
		if len(data) > 1<<16 {
			return
		}
		vocab %= 4096
		path := filepath.Join(dir, "tokenizer.bin")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := LoadLlama2C(path, vocab)
		if err != nil {
			checkErr(t, err, path)
			return
		}
		exercise(t, tok)
	})
}

func FuzzHFJSON(f *testing.F) {
	f.Add(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel"}}`)
	f.Add(`{"model":{"type":"BPE","vocab":{"<unk>":0,"▁":1,"a":2,"▁a":3,"<0x62>":4},"merges":[["▁","a"]],"byte_fallback":true,"unk_token":"<unk>","fuse_unk":true},` +
		`"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},` +
		`"added_tokens":[{"id":5,"content":"<s>","special":true}],"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<s>":{"ids":[5]}}}}`)
	f.Add(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"` +
		strings.ReplaceAll(strings.ReplaceAll(PatternLlama3, `\`, `\\`), `"`, `\"`) + `"},"behavior":"Isolated"},{"type":"ByteLevel","use_regex":false}]}}`)
	f.Add(`{"model":{"type":"Unigram","vocab":[["a",0.0]]}}`)
	f.Add(`{"model":{"type":"BPE","vocab":{"a":99999999},"merges":[]}}`)
	f.Add(`[]`)
	if data, err := os.ReadFile(filepath.Join(fixtures.Shared(f), "tokenizers", "gpt2", "tokenizer_config.json")); err == nil {
		f.Add(string(data))
	}
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, data string) {
		if len(data) > 1<<16 {
			return
		}
		path := filepath.Join(dir, "tokenizer.json")
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := LoadHFJSON(path)
		if err != nil {
			checkErr(t, err, path)
			return
		}
		exercise(t, tok)
	})
}

func tiktokenSeed(extra string) string {
	var b strings.Builder
	for i := 0; i < 256; i++ {
		fmt.Fprintf(&b, "%s %d\n", base64.StdEncoding.EncodeToString([]byte{byte(i)}), i)
	}
	b.WriteString(extra)
	return b.String()
}

func FuzzTiktoken(f *testing.F) {
	f.Add(tiktokenSeed("aGU= 256\naGVs 257\n"), "")
	f.Add(tiktokenSeed("aGU= 256\n"), `{"<|x|>": 300}`)
	f.Add(tiktokenSeed("aGU= 5\n"), "")
	f.Add("IQ== 0\n", `{"<|x|>": 0}`)
	f.Add("not base64!! x\n", "")
	f.Add(tiktokenSeed(""), `{"<|x|>": -1}`)
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, data, specials string) {
		if len(data) > 1<<16 || len(specials) > 1<<12 {
			return
		}
		path := filepath.Join(dir, "tokenizer.model")
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		sp := ""
		if specials != "" {
			sp = filepath.Join(dir, "special_tokens.json")
			if err := os.WriteFile(sp, []byte(specials), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tok, err := LoadTiktoken(path, sp)
		if err != nil {
			if !strings.Contains(err.Error(), path) && (sp == "" || !strings.Contains(err.Error(), sp)) {
				t.Fatalf("error names neither file: %v", err)
			}
			return
		}
		exercise(t, tok)
	})
}

// FuzzRoundTrip: Decode(Encode(s)) == s for every kind, and Stream prints
// the same text as valid UTF-8.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add(s)
	}
	var toks []*Tokenizer
	for _, folder := range folders {
		for _, v := range vocabsFor(f, folder) {
			toks = append(toks, v.load(f))
		}
	}
	stories, err := LoadLlama2C(filepath.Join(fixtures.Shared(f), "models", "stories260K", "tok512.bin"), 512)
	if err != nil {
		f.Fatal(err)
	}
	toks = append(toks, stories)
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 1024 {
			s = s[:1024]
		}
		for _, tok := range toks {
			ids := tok.Encode(s, false)
			got := tok.Decode(ids)
			// SentencePiece kinds write spaces as ▁, so a literal ▁ comes
			// back as a space; everything else, invalid UTF-8 included,
			// must survive.
			if got != s && !(strings.Contains(s, metaSpace) && tok.Kind() == "spm") {
				t.Fatalf("%s %s: %q -> %v -> %q", tok.Kind(), tok.Source(), s, ids, got)
			}
			if !utf8.ValidString(s) || strings.Contains(s, metaSpace) {
				continue
			}
			// Streaming a prompt from BOS prints the text itself, unless the
			// text holds special tokens (not printed).
			ids = tok.Encode(s, tok.BOS() >= 0)
			st := tok.NewStream()
			var b strings.Builder
			special := false
			for i, id := range ids {
				b.WriteString(st.Next(id))
				special = special || (i > 0 && tok.IsSpecial(id))
			}
			b.WriteString(st.Flush())
			if !special && b.String() != s {
				t.Fatalf("%s %s: stream %q, want %q (ids %v)", tok.Kind(), tok.Source(), b.String(), s, ids)
			}
		}
	})
}

// FuzzGGUFMetadata feeds FromGGUFMetadata arbitrary tokenizer.ggml.* values
// (the pager has already parsed the file, so the values are typed but their
// contents are untrusted).
func FuzzGGUFMetadata(f *testing.F) {
	f.Add("llama", "", "<unk>\x00<s>\x00</s>\x00▁a\x00▁\x00a\x00<0x62>", []byte{2, 3, 3, 1, 1, 1, 6}, "", int64(1), true)
	f.Add("gpt2", "llama-bpe", "a\x00b\x00ab\x00Ġ\x00<|begin_of_text|>", []byte{1, 1, 1, 1, 3}, "a b\nĠ a\nab ab", int64(4), false)
	f.Add("gpt2", "gpt-2", "a", []byte{1}, "", int64(-1), false)
	f.Add("gpt2", "tekken", "a", []byte{1}, "a a", int64(0), false)
	f.Add("bert", "", "", []byte{}, "", int64(0), false)
	f.Fuzz(func(t *testing.T, model, pre, tokens string, types []byte, merges string, bos int64, addBOS bool) {
		if len(tokens) > 1<<12 || len(merges) > 1<<12 {
			return
		}
		toks := strings.Split(tokens, "\x00")
		scores := make([]float32, len(toks))
		tt := make([]int32, len(toks))
		for i := range toks {
			scores[i] = -float32(i)
			if i < len(types) {
				tt[i] = int32(types[i] % 8)
			}
		}
		meta := map[string]any{
			"tokenizer.ggml.model": model, "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": toks,
			"tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": tt,
			"tokenizer.ggml.merges": strings.Split(merges, "\n"), "tokenizer.ggml.bos_token_id": bos,
			"tokenizer.ggml.add_bos_token": addBOS,
		}
		tok, err := FromGGUFMetadata(meta, "fuzz.gguf")
		if err != nil {
			checkErr(t, err, "fuzz.gguf")
			return
		}
		exercise(t, tok)
	})
}
