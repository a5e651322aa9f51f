package tokenizer

import (
	"encoding/json"
	"offload/internal/fixtures"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"offload/pager"
)

type expectedCase struct {
	Text    string `json:"text"`
	IDs     []int  `json:"ids"`
	AddBOS  bool   `json:"add_bos"`
	AddEOS  bool   `json:"add_eos"`
	Special bool   `json:"special_in_text"`
	Source  string `json:"source"`
}

func loadExpected(t testing.TB, folder string) []expectedCase {
	t.Helper()
	path := filepath.Join(fixtures.Shared(t), "tokenizers", folder, "expected.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []expectedCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return cases
}

func loadAllExpected(t testing.TB) []expectedCase {
	var all []expectedCase
	for _, f := range []string{"gpt2", "llama2-spm", "llama3-tiktoken"} {
		all = append(all, loadExpected(t, f)...)
	}
	return all
}

// vocab is one way of loading a fixture folder's tokenizer.
type vocab struct {
	name string
	load func(t testing.TB) *Tokenizer
}

var tokCache sync.Map // path -> *Tokenizer: the big vocabularies load once per test binary

func cached(t testing.TB, key string, load func() (*Tokenizer, error)) *Tokenizer {
	t.Helper()
	if v, ok := tokCache.Load(key); ok {
		return v.(*Tokenizer)
	}
	tok, err := load()
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	tokCache.Store(key, tok)
	return tok
}

func loadGGUF(t testing.TB, path string) *Tokenizer {
	return cached(t, path, func() (*Tokenizer, error) {
		m, err := pager.Open(path)
		if err != nil {
			return nil, err
		}
		defer m.Close()
		return FromGGUFMetadata(m.Meta, path)
	})
}

// vocabsFor lists every vocabulary file format present in a fixture folder.
func vocabsFor(t testing.TB, folder string) []vocab {
	dir := filepath.Join(fixtures.Shared(t), "tokenizers", folder)
	var out []vocab
	if p := filepath.Join(dir, "tokenizer.json"); exists(p) {
		out = append(out, vocab{"tokenizer.json", func(t testing.TB) *Tokenizer {
			return cached(t, p, func() (*Tokenizer, error) { return LoadHFJSON(p) })
		}})
	}
	ggufs, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	for _, p := range ggufs {
		out = append(out, vocab{filepath.Base(p), func(t testing.TB) *Tokenizer { return loadGGUF(t, p) }})
	}
	if p := filepath.Join(dir, "tokenizer.model"); exists(p) {
		out = append(out, vocab{"tokenizer.model", func(t testing.TB) *Tokenizer {
			return cached(t, p, func() (*Tokenizer, error) { return Load(p) })
		}})
	}
	if folder == "llama2-spm" {
		p := filepath.Join(fixtures.Shared(t), "models", "llama2-tokenizer-32k", "tokenizer.bin")
		out = append(out, vocab{"llama2.c tokenizer.bin", func(t testing.TB) *Tokenizer {
			return cached(t, p, func() (*Tokenizer, error) { return LoadLlama2C(p, 32000) })
		}})
	}
	return out
}

var folders = []string{"gpt2", "llama2-spm", "llama3-tiktoken"}

// TestExpected checks every case of every expected.json against every
// vocabulary format in its folder, and the round trip of each text.
func TestExpected(t *testing.T) {
	for _, folder := range folders {
		cases := loadExpected(t, folder)
		vs := vocabsFor(t, folder)
		if len(vs) == 0 {
			t.Fatalf("%s: no vocabulary file", folder)
		}
		for _, v := range vs {
			t.Run(folder+"/"+v.name, func(t *testing.T) {
				tok := v.load(t)
				pass := 0
				for _, c := range cases {
					if tok.Kind() == "llama2c" && c.Special {
						continue // llama2.c has no special tokens in text
					}
					got := tok.EncodeWith(c.Text, Options{AddBOS: c.AddBOS, AddEOS: c.AddEOS, ParseSpecial: tok.Kind() != "llama2c"})
					if !reflect.DeepEqual(got, c.IDs) {
						t.Errorf("%s %q:\n got %v\nwant %v", c.Source, c.Text, got, c.IDs)
						continue
					}
					if c.AddBOS == tok.AddsBOS() {
						if got := tok.Encode(c.Text, tok.AddsBOS()); !c.AddEOS && !reflect.DeepEqual(got, c.IDs) {
							t.Errorf("Encode(%q, AddsBOS) = %v, want %v", c.Text, got, c.IDs)
						}
					}
					if d := tok.Decode(tok.Encode(c.Text, false)); d != c.Text {
						t.Errorf("round trip %q -> %q", c.Text, d)
						continue
					}
					pass++
				}
				t.Logf("%d/%d cases pass", pass, len(cases))
			})
		}
	}
}

// readLlamaCppPair reads llama.cpp's test-tokenizer-0 .inp/.out files.
func readLlamaCppPair(t testing.TB, inp string) ([]string, [][]int) {
	t.Helper()
	in, err := os.ReadFile(inp)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(strings.TrimSuffix(inp, ".inp") + ".out")
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(in), "\n__ggml_vocab_test__\n")
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d inputs, %d output lines", inp, len(texts), len(lines))
	}
	ids := make([][]int, len(lines))
	for i, l := range lines {
		ids[i] = []int{}
		for _, f := range strings.Fields(l) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s line %d: %v", inp, i+1, err)
			}
			ids[i] = append(ids[i], n)
		}
	}
	return texts, ids
}

func TestLlamaCppPairs(t *testing.T) {
	for _, folder := range folders {
		inps, _ := filepath.Glob(filepath.Join(fixtures.Shared(t), "tokenizers", folder, "*.inp"))
		if len(inps) != 1 {
			t.Fatalf("%s: %d .inp files", folder, len(inps))
		}
		texts, want := readLlamaCppPair(t, inps[0])
		for _, v := range vocabsFor(t, folder) {
			t.Run(folder+"/"+v.name, func(t *testing.T) {
				tok := v.load(t)
				for i, s := range texts {
					got := tok.EncodeWith(s, Options{})
					if !reflect.DeepEqual(got, want[i]) {
						t.Errorf("%q:\n got %v\nwant %v", s, got, want[i])
					}
				}
				t.Logf("%d inputs", len(texts))
			})
		}
	}
}

func TestStories260K(t *testing.T) {
	dir := filepath.Join(fixtures.Shared(t), "models", "stories260K")
	bin, err := LoadLlama2C(filepath.Join(dir, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	gguf := loadGGUF(t, filepath.Join(dir, "stories260K.gguf"))
	want := []int{1, 403, 407, 261, 378}
	texts := []string{"Once upon a time", "", "The cat sat. Lily's dog!\n\"Hi\" 😀 naïve", "  two spaces", "tab\there"}
	for _, tok := range []*Tokenizer{bin, gguf} {
		if got := tok.Encode("Once upon a time", true); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", tok.Kind(), got, want)
		}
		if tok.VocabSize() != 512 || tok.BOS() != 1 || tok.EOS() != 2 || !tok.IsEOG(2) || tok.IsEOG(1) || !tok.AddsBOS() {
			t.Errorf("%s: vocab %d bos %d eos %d", tok.Kind(), tok.VocabSize(), tok.BOS(), tok.EOS())
		}
	}
	for _, s := range texts {
		a, b := bin.Encode(s, true), gguf.Encode(s, true)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%q: tok512.bin %v, gguf %v", s, a, b)
		}
		if d := bin.Decode(a[1:]); d != s {
			t.Errorf("llama2c round trip %q -> %q", s, d)
		}
	}
	// Unknown code points fall back to bytes, id = byte + 3.
	if got := bin.Encode("😀", false); !reflect.DeepEqual(got[1:], []int{0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3}) {
		t.Errorf("byte fallback: got %v", got)
	}
	if p := bin.Piece(403); p != " Once" && p != "Once" {
		t.Errorf("Piece(403) = %q", p)
	}
}

// TestLlama2C32k is the encoder oracle of llama2.c test.c, listed in
// models/llama2-tokenizer-32k/SOURCE.md.
func TestLlama2C32k(t *testing.T) {
	p := filepath.Join(fixtures.Shared(t), "models", "llama2-tokenizer-32k", "tokenizer.bin")
	tok, err := LoadLlama2C(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 32000 {
		t.Fatalf("vocab %d", tok.VocabSize())
	}
	tests := []struct {
		text string
		ids  []int
	}{
		{"", []int{1}},
		{"I believe the meaning of life is", []int{1, 306, 4658, 278, 6593, 310, 2834, 338}},
		{"Simply put, the theory of relativity states that ", []int{1, 3439, 17632, 1925, 29892, 278, 6368, 310, 14215, 537, 5922, 393, 29871}},
		{"A brief message congratulating the team on the launch:\n\n        Hi everyone,\n\n        I just ",
			[]int{1, 319, 11473, 2643, 378, 629, 271, 18099, 278, 3815, 373, 278, 6826, 29901, 13, 13, 4706, 6324, 14332, 29892, 13, 13, 4706, 306, 925, 29871}},
		{"Translate English to French:\n\n        sea otter => loutre de mer\n        peppermint => menthe poivrée\n        plush girafe => girafe peluche\n        cheese =>",
			[]int{1, 4103, 9632, 4223, 304, 5176, 29901, 13, 13, 4706, 7205, 4932, 357, 1149, 301, 449, 276, 316, 2778, 13, 4706, 1236, 407, 837, 524, 1149, 6042, 354, 772, 440, 29878, 1318, 13, 4706, 715, 1878, 330, 3055, 1725, 1149, 330, 3055, 1725, 4639, 28754, 13, 4706, 923, 968, 1149}},
	}
	for _, tt := range tests {
		if got := tok.Encode(tt.text, true); !reflect.DeepEqual(got, tt.ids) {
			t.Errorf("%q:\n got %v\nwant %v", tt.text, got, tt.ids)
		}
	}
	// Streaming after BOS drops the dummy-prefix space, as run.c prints.
	if got := tok.DecodeNext(1, 306); got != "I" {
		t.Errorf("DecodeNext(BOS, 306) = %q", got)
	}
	if got := tok.DecodeNext(306, 4658); got != " believe" {
		t.Errorf("DecodeNext(306, 4658) = %q", got)
	}
	if got := tok.DecodeNext(29871, 13); got != "\n" {
		t.Errorf("DecodeNext(<0x0A>) = %q", got)
	}
}

func TestSpecialTokens(t *testing.T) {
	l3 := vocabsFor(t, "llama3-tiktoken")[0].load(t)
	tests := []struct {
		text string
		want []int
	}{
		{"hello <|end_of_text|>", []int{15339, 220, 128001}},
		{"<|begin_of_text|>A B!", []int{128000, 32, 426, 0}},
		{"<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", []int{128006, 882, 128007, 271, 6151, 128009}},
	}
	for _, tt := range tests {
		if got := l3.Encode(tt.text, false); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %v, want %v", tt.text, got, tt.want)
		}
		if d := l3.Decode(l3.Encode(tt.text, false)); d != tt.text {
			t.Errorf("round trip %q -> %q", tt.text, d)
		}
	}
	plain := l3.EncodeWith("<|eot_id|>", Options{})
	if len(plain) < 2 {
		t.Errorf("ParseSpecial=false still gave one token: %v", plain)
	}
	for _, id := range []int{128001, 128009} {
		if !l3.IsEOG(id) {
			t.Errorf("IsEOG(%d) = false", id)
		}
	}
	if l3.IsEOG(128000) || l3.BOS() != 128000 || l3.EOS() != 128001 || l3.VocabSize() != 128256 || !l3.AddsBOS() {
		t.Errorf("llama3: bos %d eos %d vocab %d", l3.BOS(), l3.EOS(), l3.VocabSize())
	}
	if l3.Piece(220) != "Ġ" || l3.Piece(128009) != "<|eot_id|>" || l3.Piece(-1) != "" {
		t.Errorf("pieces %q %q", l3.Piece(220), l3.Piece(128009))
	}
	// The default specials (no special_tokens.json) are the same.
	dir := filepath.Join(fixtures.Shared(t), "tokenizers", "llama3-tiktoken")
	def, err := LoadTiktoken(filepath.Join(dir, "tokenizer.model"), "")
	if err != nil {
		t.Fatal(err)
	}
	for name, id := range Llama3Specials(128000) {
		if def.Piece(id) != name || l3.Piece(id) != name {
			t.Errorf("special %d: default %q, file %q, want %q", id, def.Piece(id), l3.Piece(id), name)
		}
	}

	for _, v := range vocabsFor(t, "gpt2") {
		g := v.load(t)
		if got := g.Encode("a<|endoftext|>b", false); !reflect.DeepEqual(got, []int{64, 50256, 65}) {
			t.Errorf("gpt2 %s: %v", v.name, got)
		}
		if !g.IsEOG(50256) || g.Kind() != "bpe" || g.AddsBOS() {
			t.Errorf("gpt2 %s: eog/kind/addsBOS wrong", v.name)
		}
	}
	for _, v := range vocabsFor(t, "llama2-spm") {
		s := v.load(t)
		want := []int{1, 15043, 2}
		if s.Kind() == "llama2c" {
			continue
		}
		if got := s.Encode("<s>Hello</s>", false); !reflect.DeepEqual(got, want) {
			t.Errorf("spm %s: %v, want %v", v.name, got, want)
		}
		if s.Decode([]int{1, 15043}) != "<s>Hello" || s.Decode([]int{15043}) != "Hello" {
			t.Errorf("spm %s: Decode %q %q", v.name, s.Decode([]int{1, 15043}), s.Decode([]int{15043}))
		}
	}
}

// TestStream checks that streaming prints valid UTF-8 at every step and
// the same text as Decode.
func TestStream(t *testing.T) {
	texts := []string{"Hello 世界! 🦙 naïve café ☕️👩‍👩‍👧", "生活的真谛是", "x\u00a0y"}
	for _, folder := range folders {
		for _, v := range vocabsFor(t, folder) {
			tok := v.load(t)
			for _, s := range texts {
				ids := tok.Encode(s, tok.BOS() >= 0)
				st := tok.NewStream()
				var b strings.Builder
				for _, id := range ids {
					piece := st.Next(id)
					if !utf8.ValidString(piece) {
						t.Errorf("%s/%s: invalid UTF-8 %q", folder, v.name, piece)
					}
					b.WriteString(piece)
				}
				b.WriteString(st.Flush())
				if b.String() != s {
					t.Errorf("%s/%s: stream %q, want %q", folder, v.name, b.String(), s)
				}
			}
		}
	}
	// An unfinished sequence is flushed as U+FFFD.
	spm := vocabsFor(t, "llama2-spm")[0].load(t)
	st := spm.NewStream()
	if got := st.Next(0xE4 + 3); got != "" {
		t.Errorf("partial byte printed %q", got)
	}
	if got := st.Flush(); got != "\uFFFD" {
		t.Errorf("Flush = %q", got)
	}
}

func TestLoadDetection(t *testing.T) {
	sh := fixtures.Shared(t)
	tests := []struct {
		path, kind, errPart string
	}{
		{filepath.Join(sh, "tokenizers", "gpt2", "tokenizer.json"), "bpe", ""},
		{filepath.Join(sh, "tokenizers", "gpt2"), "bpe", ""},
		{filepath.Join(sh, "tokenizers", "llama2-spm", "tokenizer.json"), "spm", ""},
		{filepath.Join(sh, "tokenizers", "llama3-tiktoken", "tokenizer.model"), "tiktoken", ""},
		{filepath.Join(sh, "models", "stories260K", "tok512.bin"), "llama2c", ""},
		{filepath.Join(sh, "models", "stories260K", "stories260K.gguf"), "spm", ""},
		{filepath.Join(sh, "tokenizers", "gpt2", "ggml-vocab-gpt-2.gguf"), "bpe", ""},
		{filepath.Join(sh, "models", "stories260K", "missing.bin"), "", "missing.bin"},
	}
	spDir := t.TempDir()
	sp := filepath.Join(spDir, "tokenizer.model")
	if err := os.WriteFile(sp, []byte{0x0A, 0x0B, 0x0A, 0x05, '<', 'u', 'n', 'k', '>'}, 0o644); err != nil {
		t.Fatal(err)
	}
	tests = append(tests, struct{ path, kind, errPart string }{sp, "", "SentencePiece .model protobuf is not supported; use tokenizer.json"})
	for _, tt := range tests {
		tok, err := Load(tt.path)
		switch {
		case tt.errPart != "":
			if err == nil || !strings.Contains(err.Error(), tt.errPart) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Load(%s): err %v, want one line containing %q", tt.path, err, tt.errPart)
			}
		case err != nil:
			t.Errorf("Load(%s): %v", tt.path, err)
		case tok.Kind() != tt.kind:
			t.Errorf("Load(%s): kind %s, want %s", tt.path, tok.Kind(), tt.kind)
		}
	}
}

func TestForModel(t *testing.T) {
	sh := fixtures.Shared(t)
	stories := filepath.Join(sh, "models", "stories260K")
	for _, p := range []string{filepath.Join(stories, "stories260K.bin"), filepath.Join(stories, "stories260K.gguf")} {
		m, err := pager.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := ForModel(p, m.Meta, m.Format)
		m.Close()
		if err != nil {
			t.Fatalf("ForModel(%s): %v", p, err)
		}
		if got := tok.Encode("Once upon a time", true); !reflect.DeepEqual(got, []int{1, 403, 407, 261, 378}) {
			t.Errorf("%s: %v", p, got)
		}
	}
	hf := filepath.Join(sh, "tokenizers", "gpt2")
	if tok, err := ForModel(hf, map[string]any{}, "safetensors"); err != nil || tok.Kind() != "bpe" {
		t.Errorf("ForModel(hf dir): %v", err)
	}
	// None or several tokenizers beside a llama2.c checkpoint: ask for --tokenizer.
	dir := t.TempDir()
	model := filepath.Join(dir, "model.bin")
	os.WriteFile(model, []byte("x"), 0o644)
	if _, err := ForModel(model, nil, "llama2c"); err == nil || !strings.Contains(err.Error(), "--tokenizer") {
		t.Errorf("no tokenizer: %v", err)
	}
	tb, _ := os.ReadFile(filepath.Join(stories, "tok512.bin"))
	os.WriteFile(filepath.Join(dir, "tok512.bin"), tb, 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer.bin"), tb, 0o644)
	if _, err := ForModel(model, nil, "llama2c"); err == nil || !strings.Contains(err.Error(), "several") {
		t.Errorf("several tokenizers: %v", err)
	}
	if _, err := ForModel(t.TempDir(), nil, "safetensors"); err == nil || !strings.Contains(err.Error(), "--tokenizer") {
		t.Errorf("empty HF dir: %v", err)
	}
}

func TestGGUFIntWidths(t *testing.T) {
	base := map[string]any{
		"tokenizer.ggml.model":      "llama",
		"tokenizer.ggml.tokens":     []any{"<unk>", "<s>", "</s>", "▁a", "▁", "a"},
		"tokenizer.ggml.scores":     []float64{0, 0, 0, -1, -2, -3},
		"tokenizer.ggml.token_type": []uint8{2, 3, 3, 1, 1, 1},
	}
	for _, v := range []any{int8(2), uint8(2), int16(2), uint16(2), int32(2), uint32(2), int64(2), uint64(2), 2} {
		m := map[string]any{"tokenizer.ggml.eos_token_id": v}
		for k, x := range base {
			m[k] = x
		}
		tok, err := FromGGUFMetadata(m, "test.gguf")
		if err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		if tok.EOS() != 2 || !reflect.DeepEqual(tok.Encode("a", true), []int{1, 3}) {
			t.Errorf("%T: eos %d, ids %v", v, tok.EOS(), tok.Encode("a", true))
		}
	}
	bad := map[string]any{"tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": []string{"a"}}
	if _, err := FromGGUFMetadata(bad, "x.gguf"); err == nil || !strings.Contains(err.Error(), "x.gguf") {
		t.Errorf("unsupported model: %v", err)
	}
	if _, err := FromGGUFMetadata(map[string]any{}, "y.gguf"); err == nil || !strings.Contains(err.Error(), "y.gguf") {
		t.Errorf("no tokenizer: %v", err)
	}
}

// benchText is ~100 KB of mixed English prose, code and non-Latin text.
func benchText(n int) string {
	unit := "Once upon a time, in a land far away, there lived a little llama named Lily. " +
		"She liked to run(); and jump += 42 times!\n\t生活的真谛是 — naïve café, 🦙 ok?\n"
	return strings.Repeat(unit, n/len(unit)+1)[:n]
}

func BenchmarkEncode100KB(b *testing.B) {
	text := benchText(100 << 10)
	sh := fixtures.Shared(b)
	for _, c := range []struct{ name, path string }{
		{"llama2c", filepath.Join(sh, "models", "llama2-tokenizer-32k", "tokenizer.bin")},
		{"spm-json", filepath.Join(sh, "tokenizers", "llama2-spm", "tokenizer.json")},
		{"gpt2-json", filepath.Join(sh, "tokenizers", "gpt2", "tokenizer.json")},
		{"llama3-tiktoken", filepath.Join(sh, "tokenizers", "llama3-tiktoken", "tokenizer.model")},
	} {
		tok, err := Load(c.path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			var n int
			for i := 0; i < b.N; i++ {
				n = len(tok.Encode(text, true))
			}
			b.ReportMetric(float64(len(text))/float64(n), "bytes/token")
		})
	}
}

// BenchmarkEncodeScaling encodes 10 KB, 100 KB and 1 MB as one SentencePiece
// word (no pre-tokenizer splits it), the worst case for merge loops: with
// the heap, ns/byte grows only with log n.
func BenchmarkEncodeScaling(b *testing.B) {
	tok, err := Load(filepath.Join(fixtures.Shared(b), "models", "llama2-tokenizer-32k", "tokenizer.bin"))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10 << 10, 100 << 10, 1 << 20} {
		text := benchText(n)
		b.Run(strconv.Itoa(n>>10)+"KB", func(b *testing.B) {
			b.SetBytes(int64(n))
			for i := 0; i < b.N; i++ {
				tok.Encode(text, true)
			}
		})
	}
}

// llama3Merges derives a merges list from the Llama 3 ranks the way
// transformers' TikTokenConverter does (every split of a token into two
// tokens, ordered by the token's rank), which is how Llama 3's
// tokenizer.json and GGUF files are made.
func llama3Merges(tik *Tokenizer) (vocab []string, merges [][2]string) {
	nBase := 0
	for nBase < len(tik.types) && tik.types[nBase] == typeNormal {
		nBase++
	}
	vocab = tik.pieces
	for rank := 0; rank < nBase; rank++ {
		tok := tik.raw[rank]
		type m struct{ l, r string }
		var local []m
		for i := 1; i < len(tok); i++ {
			l, r := tok[:i], tok[i:]
			if _, ok := tik.lookup[l]; !ok {
				continue
			}
			if _, ok := tik.lookup[r]; ok {
				local = append(local, m{l, r})
			}
		}
		sort.Slice(local, func(i, j int) bool {
			li, lj := tik.lookup[local[i].l], tik.lookup[local[j].l]
			if li != lj {
				return li < lj
			}
			return tik.lookup[local[i].r] < tik.lookup[local[j].r]
		})
		for _, x := range local {
			merges = append(merges, [2]string{byteLevelEncode(x.l), byteLevelEncode(x.r)})
		}
	}
	return vocab, merges
}

// TestLlama3Merges checks the merge-rank forms of Llama 3 (a tokenizer.json
// with the Split regex + ByteLevel and ignore_merges, and GGUF "gpt2" with
// pre "llama-bpe"), built from the rank file, against the same cases.
func TestLlama3Merges(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 128K-token tokenizer.json")
	}
	tik := vocabsFor(t, "llama3-tiktoken")[0].load(t)
	vocab, merges := llama3Merges(tik)

	types := make([]int32, len(vocab))
	mergeStrs := make([]string, len(merges))
	for i := range types {
		types[i] = typeNormal
		if tik.types[i] == typeControl {
			types[i] = typeControl
		}
	}
	for i, m := range merges {
		mergeStrs[i] = m[0] + " " + m[1]
	}
	gguf, err := FromGGUFMetadata(map[string]any{
		"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
		"tokenizer.ggml.tokens": vocab, "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": mergeStrs,
		"tokenizer.ggml.bos_token_id": uint32(128000), "tokenizer.ggml.eos_token_id": uint32(128001),
	}, "synthetic-llama3.gguf")
	if err != nil {
		t.Fatal(err)
	}

	jv := make(map[string]int, 128000)
	var added []map[string]any
	for id, p := range vocab {
		if types[id] == typeControl {
			added = append(added, map[string]any{"id": id, "content": p, "special": true})
		} else {
			jv[p] = id
		}
	}
	doc := map[string]any{
		"added_tokens": added,
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": PatternLlama3}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel"},
			map[string]any{"type": "TemplateProcessing",
				"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
				"special_tokens": map[string]any{"<|begin_of_text|>": map[string]any{"id": "<|begin_of_text|>", "ids": []int{128000}, "tokens": []string{"<|begin_of_text|>"}}}},
		}},
		"decoder": map[string]any{"type": "ByteLevel"},
		"model": map[string]any{"type": "BPE", "vocab": jv, "merges": merges, "ignore_merges": true,
			"byte_fallback": false, "fuse_unk": false, "unk_token": nil},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"bos_token":"<|begin_of_text|>","eos_token":"<|eot_id|>"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id":[128001,128008,128009]}`), 0o644)
	hf, err := LoadHFJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if hf.EOS() != 128009 || !hf.IsEOG(128001) || !hf.IsEOG(128008) || !hf.AddsBOS() || hf.BOS() != 128000 || hf.PreTokenizer() != "llama3" {
		t.Errorf("hf config: bos %d eos %d pre %s", hf.BOS(), hf.EOS(), hf.PreTokenizer())
	}

	cases := loadExpected(t, "llama3-tiktoken")
	texts, want := readLlamaCppPair(t, filepath.Join(fixtures.Shared(t), "tokenizers", "llama3-tiktoken", "ggml-vocab-llama-bpe.gguf.inp"))
	for _, tok := range []*Tokenizer{gguf, hf} {
		pass := 0
		for _, c := range cases {
			got := tok.EncodeWith(c.Text, Options{AddBOS: c.AddBOS, AddEOS: c.AddEOS, ParseSpecial: true})
			if c.AddEOS {
				got[len(got)-1] = c.IDs[len(c.IDs)-1] // hf's EOS is <|eot_id|> here
			}
			if !reflect.DeepEqual(got, c.IDs) {
				t.Errorf("%s %q:\n got %v\nwant %v", tok.Source(), c.Text, got, c.IDs)
				continue
			}
			if d := tok.Decode(tok.Encode(c.Text, false)); d != c.Text {
				t.Errorf("%s round trip %q -> %q", tok.Source(), c.Text, d)
				continue
			}
			pass++
		}
		for i, s := range texts {
			if got := tok.EncodeWith(s, Options{}); !reflect.DeepEqual(got, want[i]) {
				t.Errorf("%s llama.cpp %q:\n got %v\nwant %v", tok.Source(), s, got, want[i])
			}
		}
		t.Logf("%s: %d/%d cases, %d llama.cpp inputs", filepath.Base(tok.Source()), pass, len(cases), len(texts))
	}
}

// TestSPMMetaspaceLayout rewrites the Llama 2 tokenizer.json into the newer
// layout (no normalizer; a Metaspace pre-tokenizer with prepend_scheme
// "first" and split false; a Metaspace decoder), which TinyLlama and Mistral
// ship, and checks it encodes the same.
func TestSPMMetaspaceLayout(t *testing.T) {
	src := filepath.Join(fixtures.Shared(t), "tokenizers", "llama2-spm", "tokenizer.json")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	doc["normalizer"] = nil
	doc["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	doc["decoder"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	// Newer files write merges as pairs.
	ms := doc["model"].(map[string]any)["merges"].([]any)
	for i, m := range ms {
		l, r, _ := strings.Cut(m.(string), " ")
		ms[i] = []string{l, r}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadHFJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range loadExpected(t, "llama2-spm") {
		if got := tok.Encode(c.Text, c.AddBOS); !reflect.DeepEqual(got, c.IDs) {
			t.Errorf("%q:\n got %v\nwant %v", c.Text, got, c.IDs)
		}
		if d := tok.Decode(tok.Encode(c.Text, false)); d != c.Text {
			t.Errorf("round trip %q -> %q", c.Text, d)
		}
	}
	// "first": only the start of the text gets the dummy prefix.
	if got, want := tok.Encode("<s>Hello", false), []int{1, 10994}; !reflect.DeepEqual(got, want) {
		t.Errorf("prefix after special: got %v, want %v", got, want)
	}
	// ("<s> Hello" is ambiguous here: it encodes like Encode("Hello", true).)
	for _, s := range []string{"<s>Hello", "a</s> b", "a<s> b"} {
		if d := tok.Decode(tok.Encode(s, false)); d != s {
			t.Errorf("round trip %q -> %q", s, d)
		}
	}
}

// TestChatSpecials checks what a chat template's rendering needs: the
// llama2.c vocabulary encodes "<s>" and "</s>" as BOS and EOS when asked to,
// exactly as the same vocabulary in GGUF form does, and the special tokens
// can be looked up by their text.
func TestChatSpecials(t *testing.T) {
	dir := filepath.Join(fixtures.Shared(t), "models", "stories260K")
	bin, err := LoadLlama2C(filepath.Join(dir, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	gguf := loadGGUF(t, filepath.Join(dir, "stories260K.gguf"))
	chat := "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Once upon a time </s><s>[INST] More [/INST]"
	opt := Options{ParseSpecial: true}
	a, b := bin.EncodeWith(chat, opt), gguf.EncodeWith(chat, opt)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("chat rendering: tok512.bin %v\n gguf %v", a, b)
	}
	if a[0] != 1 || slices.Index(a, 2) < 0 || slices.Index(a[1:], 1) < 0 {
		t.Errorf("chat rendering: BOS/EOS not matched: %v", a)
	}
	if got := bin.Encode("<s>", false); slices.Contains(got, 1) {
		t.Errorf("llama2c Encode parsed <s> without being asked: %v", got)
	}
	for _, tok := range []*Tokenizer{bin, gguf} {
		if tok.SpecialText(tok.BOS()) != "<s>" || tok.SpecialText(tok.EOS()) != "</s>" || tok.SpecialText(403) != "" {
			t.Errorf("%s: SpecialText bos %q eos %q", tok.Kind(), tok.SpecialText(tok.BOS()), tok.SpecialText(tok.EOS()))
		}
		if id, ok := tok.TokenID("</s>"); !ok || id != 2 {
			t.Errorf("%s: TokenID(</s>) = %d, %v", tok.Kind(), id, ok)
		}
	}
	l3 := vocabsFor(t, "llama3-tiktoken")[0].load(t)
	for text, want := range map[string]int{"<|eot_id|>": 128009, "<|start_header_id|>": 128006, "<|begin_of_text|>": 128000} {
		if id, ok := l3.TokenID(text); !ok || id != want || l3.SpecialText(id) != text {
			t.Errorf("llama3 TokenID(%q) = %d, %v; SpecialText %q", text, id, ok, l3.SpecialText(id))
		}
	}
	if _, ok := l3.TokenID("<|no_such_token|>"); ok {
		t.Error("TokenID found a token that does not exist")
	}
}
