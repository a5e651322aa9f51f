package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"offload/pager"
)

// readBounded reads a whole file, refusing files over limit bytes.
// Only regular files are read (pager.OpenRegular): a FIFO would block.
func readBounded(path string, limit int64) ([]byte, error) {
	f, st, err := pager.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > limit {
		return nil, fmt.Errorf("file is %d bytes, over the limit of %d", st.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("file is over the limit of %d bytes", limit)
	}
	return data, nil
}

func exists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

// Load opens a tokenizer file, choosing the parser by content and name:
//   - a directory: its tokenizer.json, else tokenizer.model, else tokenizer.bin;
//   - JSON (starts with '{'): Hugging Face tokenizer.json (LoadHFJSON);
//   - "base64 rank" lines: a tiktoken rank file such as Llama 3's
//     tokenizer.model (LoadTiktoken), with special_tokens.json beside it if
//     present, else Llama 3's standard specials;
//   - a SentencePiece protobuf tokenizer.model: an error, convert it to
//     tokenizer.json;
//   - a GGUF file (a vocab-only one or a whole model): its embedded
//     tokenizer (FromGGUFMetadata);
//   - anything else: a llama2.c tokenizer.bin, read to the end of the file.
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if st.IsDir() {
		for _, name := range []string{"tokenizer.json", "tokenizer.model", "tokenizer.bin"} {
			if p := filepath.Join(path, name); exists(p) {
				return Load(p)
			}
		}
		return nil, fmt.Errorf("tokenizer: no tokenizer.json, tokenizer.model or tokenizer.bin in %s", path)
	}
	head, err := readHead(path, 512)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	trimmed := bytes.TrimLeft(head, " \t\r\n\xef\xbb\xbf")
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		return LoadHFJSON(path)
	case bytes.HasPrefix(head, []byte("GGUF")):
		m, err := pager.Open(path)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		defer m.Close()
		return FromGGUFMetadata(m.Meta, path)
	case looksTiktoken(head):
		specials := filepath.Join(filepath.Dir(path), "special_tokens.json")
		if !exists(specials) {
			specials = ""
		}
		return LoadTiktoken(path, specials)
	case strings.HasSuffix(strings.ToLower(path), ".model") || (len(head) > 0 && head[0] == 0x0A):
		return nil, fmt.Errorf("tokenizer %s: SentencePiece .model protobuf is not supported; use tokenizer.json", path)
	}
	return LoadLlama2C(path, 0)
}

func readHead(path string, n int) ([]byte, error) {
	f, _, err := pager.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	k, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:k], nil
}

// looksTiktoken checks that the first line is "base64 digits".
func looksTiktoken(head []byte) bool {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	line = bytes.TrimRight(line, "\r")
	b64, num, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(b64) == 0 || len(num) == 0 {
		return false
	}
	for _, c := range b64 {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ForModel finds the tokenizer of a model opened by pager.Open: format is
// the pager's Model.Format ("gguf", "safetensors", "llama2c"; "" guesses)
// and meta its Meta.
//   - gguf: the embedded tokenizer (FromGGUFMetadata);
//   - safetensors (a Hugging Face directory, or a file in one): the
//     directory's tokenizer.json, else tokenizer.model or
//     original/tokenizer.model (Meta's Llama 3 rank file);
//   - llama2c: the one tokenizer.bin or tok*.bin beside the checkpoint,
//     read with the checkpoint's vocab_size.
//
// When none or several fit, the error says to pass --tokenizer.
func ForModel(modelPath string, meta map[string]any, format string) (*Tokenizer, error) {
	if format == "" {
		st, err := os.Stat(modelPath)
		switch {
		case meta["tokenizer.ggml.model"] != nil:
			format = "gguf"
		case err == nil && st.IsDir():
			format = "safetensors"
		case strings.HasSuffix(strings.ToLower(modelPath), ".gguf"):
			format = "gguf"
		default:
			format = "llama2c"
		}
	}
	switch format {
	case "gguf":
		return FromGGUFMetadata(meta, modelPath)
	case "safetensors", "hf":
		dir := modelPath
		if st, err := os.Stat(modelPath); err != nil || !st.IsDir() {
			dir = filepath.Dir(modelPath)
		}
		for _, name := range []string{"tokenizer.json", "tokenizer.model", filepath.Join("original", "tokenizer.model")} {
			if p := filepath.Join(dir, name); exists(p) {
				return Load(p)
			}
		}
		return nil, fmt.Errorf("tokenizer: no tokenizer.json in %s; pass --tokenizer", dir)
	case "llama2c":
		return forLlama2C(modelPath, meta)
	}
	return nil, fmt.Errorf("tokenizer: unknown model format %q for %s; pass --tokenizer", format, modelPath)
}

func forLlama2C(modelPath string, meta map[string]any) (*Tokenizer, error) {
	dir := filepath.Dir(modelPath)
	matches, err := filepath.Glob(filepath.Join(dir, "tok*.bin"))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	mst, _ := os.Stat(modelPath)
	var cands []string
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil || st.IsDir() || (mst != nil && os.SameFile(st, mst)) {
			continue
		}
		cands = append(cands, m)
	}
	sort.Strings(cands)
	switch len(cands) {
	case 0:
		return nil, fmt.Errorf("tokenizer: no tokenizer.bin or tok*.bin beside llama2.c model %s; pass --tokenizer", modelPath)
	case 1:
	default:
		names := make([]string, len(cands))
		for i, c := range cands {
			names[i] = filepath.Base(c)
		}
		return nil, fmt.Errorf("tokenizer: several tokenizers beside %s (%s); pass --tokenizer", modelPath, strings.Join(names, ", "))
	}
	vocab := 0
	if v, ok, err := metaInt(meta, "vocab_size"); err == nil && ok {
		vocab = int(v)
		if vocab < 0 {
			vocab = -vocab // a negative vocab_size means an unshared classifier
		}
	}
	return LoadLlama2C(cands[0], vocab)
}
