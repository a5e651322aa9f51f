package chat

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"offload/tokenizer"
)

//go:embed templates/*.jinja
var builtins embed.FS

// Builtins are the names Builtin accepts.
var Builtins = []string{"llama2", "llama3"}

// Builtin returns a built-in template: "llama2" (Llama-2-7b-chat-hf's) or
// "llama3" (Meta-Llama-3-8B-Instruct's), as their Hugging Face
// tokenizer_config.json publish them.
func Builtin(name string, tok *tokenizer.Tokenizer) (*Template, error) {
	src, err := builtins.ReadFile("templates/" + name + ".jinja")
	if err != nil {
		return nil, fmt.Errorf("chat template: no built-in template %q (have %s)", name, strings.Join(Builtins, ", "))
	}
	return New(Config{Name: "built-in " + name, Source: string(src)}, tok)
}

// Guess names the built-in template that fits a vocabulary: "llama3" when
// it has Llama 3's header and end-of-turn tokens, else "llama2".
func Guess(tok *tokenizer.Tokenizer) string {
	_, h := tok.TokenID("<|start_header_id|>")
	_, e := tok.TokenID("<|eot_id|>")
	if h && e {
		return "llama3"
	}
	return "llama2"
}

// FromGGUF returns the template in GGUF metadata (tokenizer.chat_template),
// or nil and no error when the file has none.
func FromGGUF(meta map[string]any, tok *tokenizer.Tokenizer) (*Template, error) {
	v, ok := meta["tokenizer.chat_template"]
	if !ok {
		return nil, nil
	}
	src, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("chat template: GGUF tokenizer.chat_template is a %T, not a string", v)
	}
	return New(Config{Name: "gguf tokenizer.chat_template", Source: src}, tok)
}

// maxConfigBytes bounds a tokenizer_config.json read for its template (Llama
// 3's, with 256 added tokens, is about 50 KB).
const maxConfigBytes = 16 << 20

// FromHFConfig returns the chat_template of a Hugging Face
// tokenizer_config.json (a string, or a list of {name, template} from which
// "default" is taken), with the file's bos_token, eos_token, unk_token and
// pad_token as variables; nil and no error when it has none.
func FromHFConfig(path string, tok *tokenizer.Tokenizer) (*Template, error) {
	data, err := readBounded(path, maxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("chat template: %s: bad JSON: %w", path, err)
	}
	raw, ok := cfg["chat_template"]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	src, err := templateField(raw)
	if err != nil {
		return nil, fmt.Errorf("chat template: %s: chat_template %w", path, err)
	}
	tokens := map[string]string{}
	for _, k := range []string{"bos_token", "eos_token", "unk_token", "pad_token"} {
		if s, ok := tokenField(cfg[k]); ok {
			tokens[k] = s
		}
	}
	return New(Config{Name: path, Source: src, Tokens: tokens}, tok)
}

// templateField decodes chat_template: a string, or named templates.
func templateField(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", fmt.Errorf("is neither a string nor a list of {name, template}")
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	return "", fmt.Errorf("has no template named \"default\"")
}

// tokenField decodes a special token of tokenizer_config.json: a string or
// an AddedToken object {"content": ...}.
func tokenField(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err == nil && obj.Content != nil {
		return *obj.Content, true
	}
	return "", false
}

// FromFile reads a template file: a tokenizer_config.json (JSON with
// chat_template) or a bare Jinja file such as chat_template.jinja.
func FromFile(path string, tok *tokenizer.Tokenizer) (*Template, error) {
	data, err := readBounded(path, maxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	if t := bytes.TrimLeft(data, " \t\r\n\xef\xbb\xbf"); len(t) > 0 && t[0] == '{' && json.Valid(data) {
		tmpl, err := FromHFConfig(path, tok)
		if err == nil && tmpl == nil {
			err = fmt.Errorf("chat template: %s has no chat_template", path)
		}
		return tmpl, err
	}
	return New(Config{Name: path, Source: string(data)}, tok)
}

// ForModel finds a model's template the way tokenizer.ForModel finds its
// tokenizer (format is the pager's Model.Format, meta its metadata):
//   - gguf: tokenizer.chat_template;
//   - safetensors (a Hugging Face directory): chat_template.jinja, else
//     tokenizer_config.json's chat_template;
//   - llama2c: none.
//
// A model without one gets the built-in template Guess picks; its Name
// says so.
func ForModel(modelPath string, meta map[string]any, format string, tok *tokenizer.Tokenizer) (*Template, error) {
	var t *Template
	var err error
	switch format {
	case "gguf":
		t, err = FromGGUF(meta, tok)
	case "safetensors", "hf":
		dir := modelPath
		if st, e := os.Stat(modelPath); e != nil || !st.IsDir() {
			dir = filepath.Dir(modelPath)
		}
		if p := filepath.Join(dir, "chat_template.jinja"); isFile(p) {
			t, err = FromFile(p, tok)
		} else if p := filepath.Join(dir, "tokenizer_config.json"); isFile(p) {
			t, err = FromHFConfig(p, tok)
		}
	}
	if err != nil || t != nil {
		return t, err
	}
	name := Guess(tok)
	t, err = Builtin(name, tok)
	if err != nil {
		return nil, err
	}
	t.name = fmt.Sprintf("built-in %s (the model has no chat template)", name)
	return t, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// readBounded reads a whole file, refusing files over limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: over the limit of %d bytes", path, limit)
	}
	return data, nil
}
