// Package chat turns a conversation into the prompt a chat model was trained
// on, and the tokens it generates back into the text of its answer.
//
// Instruct models are trained on one exact layout of roles and special
// tokens; given plain text they answer poorly. That layout is published with
// each model as a Jinja template (GGUF metadata tokenizer.chat_template, or
// chat_template in a Hugging Face tokenizer_config.json), and Hugging Face
// transformers' apply_chat_template is the reference renderer. Template
// renders such a template the way transformers does (jinja2 with
// trim_blocks, lstrip_blocks, loop controls, a raise_exception global and the
// tokenizer's special tokens as variables) using github.com/ardanlabs/jinja,
// so a model's own template works unchanged; Llama 2 and Llama 3 templates
// are built in for model files that carry none.
//
// The rendering holds special tokens as text ("<|eot_id|>", "<s>"): Encode
// hands it to the tokenizer with special-token parsing on, which turns each
// into its single id, and adds no BOS of its own (the template writes
// bos_token where the model expects it, as apply_chat_template does).
// EndOfTurn gives the ids that end an assistant turn, where generation stops.
package chat

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/ardanlabs/jinja"

	"offload/tokenizer"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"` // "system", "user" or "assistant"
	Content string `json:"content"`
}

// MaxTemplateBytes bounds a template's source: the largest published chat
// templates are a few tens of KB; templates come from model files, which are
// untrusted input.
const MaxTemplateBytes = 256 << 10

// maxRange bounds range() in a template, so that a hostile template cannot
// allocate without limit through it.
const maxRange = 1 << 20

// Config describes a template to compile.
type Config struct {
	// Name says where the template came from, for errors and display
	// ("gguf tokenizer.chat_template", a file name, "built-in llama3").
	Name string
	// Source is the Jinja text.
	Source string
	// Tokens are extra variables such as bos_token and eos_token, as a
	// tokenizer_config.json gives them. bos_token, eos_token and unk_token
	// default to the tokenizer's own special tokens.
	Tokens map[string]string
}

// Template is a compiled chat template bound to a tokenizer. It is safe for
// concurrent use.
type Template struct {
	name   string
	src    string
	tmpl   *jinja.Template
	tok    *tokenizer.Tokenizer
	tokens map[string]string
	texts  jinja.Value // the literal text, see prepare
	eot    []int
}

// New compiles a template for tok. It refuses sources over
// MaxTemplateBytes and templates whose macros call themselves (directly or
// through each other), since rendering one could exhaust the stack.
func New(c Config, tok *tokenizer.Tokenizer) (*Template, error) {
	if tok == nil {
		return nil, fmt.Errorf("chat template %s: no tokenizer", c.Name)
	}
	if len(c.Source) > MaxTemplateBytes {
		return nil, fmt.Errorf("chat template %s: %d bytes, over the limit of %d", c.Name, len(c.Source), MaxTemplateBytes)
	}
	if strings.TrimSpace(c.Source) == "" {
		return nil, fmt.Errorf("chat template %s: empty", c.Name)
	}
	if m := recursiveMacro(c.Source); m != "" {
		return nil, fmt.Errorf("chat template %s: macro %q calls itself; recursive templates are refused", c.Name, m)
	}
	prepared, texts, err := prepare(c.Source)
	if err != nil {
		return nil, fmt.Errorf("chat template %s: %w", c.Name, err)
	}
	tmpl, err := jinja.Compile(prepared)
	if err != nil {
		return nil, fmt.Errorf("chat template %s: %w", c.Name, err)
	}
	t := &Template{name: c.Name, src: c.Source, tmpl: tmpl, tok: tok, tokens: map[string]string{}}
	list := make([]jinja.Value, len(texts))
	for i, s := range texts {
		list[i] = jinja.NewString(s)
	}
	t.texts = jinja.NewList(list)
	for k, id := range map[string]int{"bos_token": tok.BOS(), "eos_token": tok.EOS()} {
		if s := tokenText(tok, id); s != "" {
			t.tokens[k] = s
		}
	}
	for k, v := range c.Tokens {
		t.tokens[k] = v
	}
	t.eot = t.endOfTurn()
	return t, nil
}

// jinjaSource applies what jinja2's lexer does to a template source before
// parsing it (with keep_trailing_newline off, as transformers leaves it):
// every line ending becomes "\n" and one final newline is dropped.
func jinjaSource(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.TrimSuffix(s, "\n")
}

// tokenText is the text a special token id is written as in a template
// rendering, or "" if there is none.
func tokenText(tok *tokenizer.Tokenizer, id int) string {
	if id < 0 {
		return ""
	}
	if s := tok.SpecialText(id); s != "" {
		return s
	}
	return tok.Piece(id)
}

// Name says where the template came from.
func (t *Template) Name() string { return t.name }

// Source is the template's Jinja text.
func (t *Template) Source() string { return t.src }

// Tokenizer is the tokenizer the template encodes with.
func (t *Template) Tokenizer() *tokenizer.Tokenizer { return t.tok }

// ErrRender marks an error the template raised for a conversation it does
// not accept (raise_exception, a missing field): the caller's input is at
// fault, not the model.
var ErrRender = errors.New("chat template refused the conversation")

// Render formats msgs as the model expects. addGenerationPrompt appends the
// header that opens the assistant's answer (templates without one ignore
// it).
func (t *Template) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		list[i] = d
	}
	data := map[string]jinja.Value{
		"messages":              jinja.NewList(list),
		"add_generation_prompt": jinja.NewBool(addGenerationPrompt),
		"range":                 jinja.NewCallable("range", boundedRange),
		textVar:                 t.texts,
	}
	for k, v := range t.tokens {
		data[k] = jinja.NewString(v)
	}
	out, err := t.render(data)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrRender, t.name, err)
	}
	return out, nil
}

func (t *Template) render(data map[string]jinja.Value) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("template failed: %v", r)
		}
	}()
	return t.tmpl.RenderValues(data)
}

// Encode renders msgs and encodes the rendering, special tokens written in
// it becoming their ids. No BOS is added: the template writes bos_token
// where the model expects one.
func (t *Template) Encode(msgs []Message, addGenerationPrompt bool) ([]int, error) {
	s, err := t.Render(msgs, addGenerationPrompt)
	if err != nil {
		return nil, err
	}
	return t.tok.EncodeWith(s, tokenizer.Options{ParseSpecial: true}), nil
}

// EndOfTurn returns the ids that end an assistant turn in this template
// (e.g. <|eot_id|> for Llama 3, </s> for Llama 2): generation stops at any
// of them, as at any end-of-generation id of the tokenizer.
func (t *Template) EndOfTurn() []int { return append([]int(nil), t.eot...) }

// IsStop reports whether id ends an answer: an end-of-turn id of the
// template or an end-of-generation id of the tokenizer.
func (t *Template) IsStop(id int) bool {
	if t.tok.IsEOG(id) {
		return true
	}
	for _, e := range t.eot {
		if e == id {
			return true
		}
	}
	return false
}

// endOfTurn finds the template's end-of-turn marker by rendering a probe
// conversation and taking the special token that directly follows the
// assistant's content; the tokenizer's EOS is always included.
func (t *Template) endOfTurn() []int {
	var ids []int
	if e := t.tok.EOS(); e >= 0 {
		ids = append(ids, e)
	}
	const answer = "Xq7Zw"
	probe := []Message{{Role: "user", Content: "Hello"}, {Role: "assistant", Content: answer}}
	s, err := t.Render(probe, false)
	if err != nil {
		return ids
	}
	i := strings.LastIndex(s, answer)
	if i < 0 {
		return ids
	}
	rest := strings.TrimLeft(s[i+len(answer):], " \t\r\n")
	enc := t.tok.EncodeWith(rest, tokenizer.Options{ParseSpecial: true})
	if len(enc) > 0 && t.tok.IsSpecial(enc[0]) && enc[0] != t.tok.BOS() {
		if !containsInt(ids, enc[0]) {
			ids = append(ids, enc[0])
		}
	}
	return ids
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func boundedRange(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	var a [3]int64
	for i, v := range args {
		if i >= 3 || !v.IsInt() {
			return jinja.Value{}, fmt.Errorf("range() takes one to three integers")
		}
		a[i] = v.AsInt()
	}
	start, stop, step := int64(0), int64(0), int64(1)
	switch len(args) {
	case 1:
		stop = a[0]
	case 2:
		start, stop = a[0], a[1]
	case 3:
		start, stop, step = a[0], a[1], a[2]
	default:
		return jinja.Value{}, fmt.Errorf("range() takes one to three integers")
	}
	if step == 0 {
		return jinja.Value{}, fmt.Errorf("range() step must not be zero")
	}
	var n int64
	if step > 0 && stop > start {
		n = (stop - start + step - 1) / step
	} else if step < 0 && stop < start {
		n = (start - stop - step - 1) / -step
	}
	if n > maxRange {
		return jinja.Value{}, fmt.Errorf("range() of %d items is over the limit of %d", n, maxRange)
	}
	items := make([]jinja.Value, n)
	for i := range items {
		items[i] = jinja.NewInt(start + int64(i)*step)
	}
	return jinja.NewList(items), nil
}

var (
	macroDef = regexp.MustCompile(`\{%-?\s*macro\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(`)
	macroEnd = regexp.MustCompile(`\{%-?\s*endmacro\b`)
)

// recursiveMacro returns the name of a macro that can call itself (directly
// or through other macros), or "". It reads the source lexically: a macro's
// body runs to its endmacro, and a call is the name followed by "(".
func recursiveMacro(src string) string {
	defs := macroDef.FindAllStringSubmatchIndex(src, -1)
	if len(defs) == 0 {
		return ""
	}
	bodies := map[string]string{}
	var names []string
	for _, d := range defs {
		name := src[d[2]:d[3]]
		body := src[d[1]:]
		if e := macroEnd.FindStringIndex(body); e != nil {
			body = body[:e[0]]
		}
		bodies[name] += body
		names = append(names, name)
	}
	calls := map[string][]string{}
	for _, a := range names {
		for _, b := range names {
			if regexp.MustCompile(`\b` + regexp.QuoteMeta(b) + `\s*\(`).MatchString(bodies[a]) {
				calls[a] = append(calls[a], b)
			}
		}
	}
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	var visit func(string) string
	visit = func(n string) string {
		switch state[n] {
		case active:
			return n
		case done:
			return ""
		}
		state[n] = active
		for _, m := range calls[n] {
			if r := visit(m); r != "" {
				return r
			}
		}
		state[n] = done
		return ""
	}
	for _, n := range names {
		if r := visit(n); r != "" {
			return r
		}
	}
	return ""
}
