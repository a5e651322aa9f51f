package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"offload/internal/fixtures"
	"offload/tokenizer"
)

var (
	tokMu    sync.Mutex
	tokCache = map[string]*tokenizer.Tokenizer{}
)

// tok loads a shared fixture tokenizer once: "llama3" (Meta's rank file),
// "llama2" (the HF tokenizer.json of Llama 2) or "stories" (llama2.c
// tok512.bin).
func tok(t testing.TB, name string) *tokenizer.Tokenizer {
	t.Helper()
	sh := fixtures.Shared(t)
	path := map[string]string{
		"llama3":  filepath.Join(sh, "tokenizers", "llama3-tiktoken", "tokenizer.model"),
		"llama2":  filepath.Join(sh, "tokenizers", "llama2-spm", "tokenizer.json"),
		"stories": filepath.Join(sh, "models", "stories260K", "tok512.bin"),
	}[name]
	tokMu.Lock()
	defer tokMu.Unlock()
	if tk := tokCache[name]; tk != nil {
		return tk
	}
	tk, err := tokenizer.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tokCache[name] = tk
	return tk
}

func conversation(t testing.TB) []Message {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "conversation.json"))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	if err := json.Unmarshal(data, &msgs); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// TestPublishedTemplates renders the 3-turn conversation (system, user,
// assistant, user) with the Llama 3 and Llama 2 templates as their Hugging
// Face tokenizer_config.json publish them, and with the built-in copies, and
// compares with jinja2's rendering byte for byte (testdata/README.md).
func TestPublishedTemplates(t *testing.T) {
	msgs := conversation(t)
	for _, c := range []struct{ model, builtin, tok string }{
		{"Meta-Llama-3-8B-Instruct", "llama3", "llama3"},
		{"Llama-2-7b-chat-hf", "llama2", "llama2"},
	} {
		tk := tok(t, c.tok)
		cfgPath := filepath.Join("testdata", c.model+".tokenizer_config.json")
		published, err := FromHFConfig(cfgPath, tk)
		if err != nil {
			t.Fatal(err)
		}
		builtin, err := Builtin(c.builtin, tk)
		if err != nil {
			t.Fatal(err)
		}
		if builtin.Source() != published.Source() {
			t.Errorf("built-in %s differs from the template %s publishes", c.builtin, c.model)
		}
		for _, agp := range []bool{false, true} {
			want, err := os.ReadFile(filepath.Join("testdata", c.model+map[bool]string{false: ".agp0.txt", true: ".agp1.txt"}[agp]))
			if err != nil {
				t.Fatal(err)
			}
			for _, tmpl := range []*Template{published, builtin} {
				got, err := tmpl.Render(msgs, agp)
				if err != nil {
					t.Fatalf("%s: %v", tmpl.Name(), err)
				}
				if got != string(want) {
					t.Errorf("%s add_generation_prompt=%v:\n got %q\nwant %q", tmpl.Name(), agp, got, want)
				}
			}
		}
	}
}

// TestFeatures holds the renderer to jinja2 on the template features
// published chat templates use (testdata/features.json, from render.py).
func TestFeatures(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "features.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
		AGP      bool   `json:"add_generation_prompt"`
		BOS      string `json:"bos_token"`
		EOS      string `json:"eos_token"`
		Want     *string
		Error    *string
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	msgs := conversation(t)
	tk := tok(t, "llama2")
	for _, c := range cases {
		tmpl, err := New(Config{Name: c.Name, Source: c.Template, Tokens: map[string]string{"bos_token": c.BOS, "eos_token": c.EOS}}, tk)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		got, err := tmpl.Render(msgs, c.AGP)
		switch {
		case c.Error != nil:
			if err == nil || !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), *c.Error) {
				t.Errorf("%s: got %q, %v; want error %q", c.Name, got, err, *c.Error)
			}
		case err != nil:
			t.Errorf("%s agp=%v: %v", c.Name, c.AGP, err)
		case got != *c.Want:
			t.Errorf("%s agp=%v:\n got %q\nwant %q", c.Name, c.AGP, got, *c.Want)
		}
	}
	if len(cases) < 20 {
		t.Errorf("only %d cases in features.json", len(cases))
	}
}

// TestRaiseException: the Llama 2 template refuses roles that do not
// alternate, with its own message.
func TestRaiseException(t *testing.T) {
	tmpl, err := Builtin("llama2", tok(t, "llama2"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmpl.Render([]Message{{"user", "a"}, {"user", "b"}}, true)
	if !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), "Conversation roles must alternate user/assistant/user/assistant/...") {
		t.Errorf("got %v", err)
	}
}

// TestLlama3Tokens: the rendering's special tokens become their ids. The
// expected ids are Meta's own test of its chat formatter
// (meta-llama/llama3 llama/test_tokenizer.py, quoted in the fixture's
// SOURCE.md): a system and a user message, then the assistant header.
func TestLlama3Tokens(t *testing.T) {
	tk := tok(t, "llama3")
	tmpl, err := Builtin("llama3", tk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tmpl.Encode([]Message{{"system", "This is a test sentence."}, {"user", "This is a response."}}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{128000, 128006, 9125, 128007, 271, 2028, 374, 264, 1296, 11914, 13, 128009, 128006, 882, 128007, 271, 2028, 374, 264, 2077, 13, 128009, 128006, 78191, 128007, 271}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if eot := tmpl.EndOfTurn(); !reflect.DeepEqual(eot, []int{128001, 128009}) {
		t.Errorf("EndOfTurn = %v, want [128001 128009]", eot)
	}
	if !tmpl.IsStop(128009) || !tmpl.IsStop(128001) || tmpl.IsStop(128006) {
		t.Error("IsStop")
	}
	if Guess(tk) != "llama3" {
		t.Errorf("Guess = %s", Guess(tk))
	}
}

// TestLlama2Tokens: BOS before each [INST], EOS after each answer, and the
// ids decode back to the rendering, for the HF vocabulary and the llama2.c
// one (whose BOS/EOS pieces are not "<s>"/"</s>").
func TestLlama2Tokens(t *testing.T) {
	msgs := conversation(t)
	for _, name := range []string{"llama2", "stories"} {
		tk := tok(t, name)
		tmpl, err := Builtin(Guess(tk), tk)
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.Name() != "built-in llama2" {
			t.Errorf("%s: guessed %s", name, tmpl.Name())
		}
		s, err := tmpl.Render(msgs, true)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := tmpl.Encode(msgs, true)
		if err != nil {
			t.Fatal(err)
		}
		count := func(id int) (n int) {
			for _, x := range ids {
				if x == id {
					n++
				}
			}
			return n
		}
		if ids[0] != 1 || count(1) != 2 || count(2) != 1 {
			t.Errorf("%s: %d BOS, %d EOS in %v", name, count(1), count(2), ids)
		}
		if name == "llama2" {
			if d := tk.Decode(ids); d != s {
				t.Errorf("decode:\n got %q\nwant %q", d, s)
			}
		}
		if eot := tmpl.EndOfTurn(); !reflect.DeepEqual(eot, []int{2}) {
			t.Errorf("%s: EndOfTurn = %v", name, eot)
		}
	}
}

func TestRefused(t *testing.T) {
	tk := tok(t, "llama2")
	for name, src := range map[string]string{
		"recursive":        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
		"mutual recursion": "{%- macro a() %}{{ b() }}{% endmacro %}{% macro b() -%}{{ a() }}{% endmacro %}{{ a() }}",
		"empty":            " \n",
		"too big":          strings.Repeat("x", MaxTemplateBytes+1),
		"syntax":           "{% for m in messages %}",
	} {
		if _, err := New(Config{Name: name, Source: src}, tk); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	if _, err := New(Config{Name: "macro", Source: "{% macro f() %}x{% endmacro %}{% macro g() %}{{ f() }}{% endmacro %}{{ g() }}"}, tk); err != nil {
		t.Errorf("non-recursive macros refused: %v", err)
	}
	big, err := New(Config{Name: "range", Source: "{% for i in range(100000000) %}x{% endfor %}"}, tk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Render(nil, false); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("huge range: %v", err)
	}
	small, _ := New(Config{Name: "range", Source: "{{ range(3)|list }}{{ range(5, 1, -2)|list }}{{ range(1, 4)|list }}"}, tk)
	if s, err := small.Render(nil, false); err != nil || s != "[0, 1, 2][5, 3][1, 2, 3]" {
		t.Errorf("range: %q, %v", s, err)
	}
}

func TestLoad(t *testing.T) {
	tk := tok(t, "llama3")
	dir := t.TempDir()

	// GGUF metadata: present, absent, wrong type.
	src, _ := builtins.ReadFile("templates/llama3.jinja")
	g, err := FromGGUF(map[string]any{"tokenizer.chat_template": string(src)}, tk)
	if err != nil || g == nil || g.Source() != string(src) {
		t.Fatalf("FromGGUF: %v", err)
	}
	if g, err := FromGGUF(map[string]any{}, tk); g != nil || err != nil {
		t.Errorf("FromGGUF without a template: %v, %v", g, err)
	}
	if _, err := FromGGUF(map[string]any{"tokenizer.chat_template": 3}, tk); err == nil {
		t.Error("FromGGUF accepted an int")
	}
	m, err := ForModel("x.gguf", map[string]any{}, "gguf", tk)
	if err != nil || !strings.HasPrefix(m.Name(), "built-in llama3") {
		t.Errorf("ForModel gguf without template: %v %v", m, err)
	}

	// A Hugging Face directory with named templates and AddedToken objects.
	cfg := `{"bos_token": {"__type": "AddedToken", "content": "<|begin_of_text|>"}, "eos_token": "<|eot_id|>",
	  "chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}\n"}]}`
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644)
	m, err = ForModel(dir, nil, "safetensors", tk)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := m.Render([]Message{{"user", "hi"}}, true); s != "<|begin_of_text|>hi<|eot_id|>" {
		t.Errorf("named template rendered %q", s)
	}
	// chat_template.jinja wins over tokenizer_config.json.
	os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("J{{ messages|length }}"), 0o644)
	if m, err := ForModel(filepath.Join(dir, "model.safetensors"), nil, "safetensors", tk); err != nil || m.Source() != "J{{ messages|length }}" {
		t.Errorf("chat_template.jinja: %v", err)
	}
	if m, err := FromFile(filepath.Join(dir, "tokenizer_config.json"), tk); err != nil || !strings.Contains(m.Source(), "default") && !strings.Contains(m.Source(), "bos_token") {
		t.Errorf("FromFile config: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"chat_template": 5}`), 0o644)
	if _, err := FromHFConfig(bad, tk); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("bad chat_template: %v", err)
	}
	if _, err := Builtin("llama9", tk); err == nil {
		t.Error("Builtin(llama9)")
	}
}

func TestConcurrentRender(t *testing.T) {
	tmpl, err := Builtin("llama3", tok(t, "llama3"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := conversation(t)
	want, _ := tmpl.Render(msgs, true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if got, err := tmpl.Render(msgs, true); err != nil || got != want {
					t.Errorf("concurrent render: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestWhitespace holds the whitespace rules to jinja2's on 400 generated
// templates (testdata/whitespace.json, from render.py): text with spaces,
// tabs and newlines around expressions, blocks, comments and loops, with
// every "-" and "+" marker.
func TestWhitespace(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "whitespace.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct{ Template, Want string }
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	tk := tok(t, "llama2")
	fails := 0
	for i, c := range cases {
		tmpl, err := New(Config{Name: fmt.Sprint("case ", i), Source: c.Template}, tk)
		if err != nil {
			t.Errorf("%q: %v", c.Template, err)
			continue
		}
		got, err := tmpl.Render(nil, false)
		if err != nil || got != c.Want {
			if fails++; fails <= 10 {
				t.Errorf("%q:\n got %q, %v\nwant %q", c.Template, got, err, c.Want)
			}
		}
	}
	if fails > 0 {
		t.Errorf("%d of %d cases differ from jinja2", fails, len(cases))
	}
}
