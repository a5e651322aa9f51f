package chat

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// textVar is the render variable that holds a template's literal text.
const textVar = "__offload_chat_text__"

// prepare applies jinja2's whitespace rules to a template source the way
// transformers configures them (trim_blocks, lstrip_blocks, "-" and "+"
// markers, keep_trailing_newline off) and returns an equivalent template
// whose literal text is all moved into expressions {{ textVar[i] }}, with
// texts holding the text after those rules.
//
// github.com/ardanlabs/jinja applies trim_blocks and lstrip_blocks itself,
// but to the nearest text segment even when an expression lies between it
// and the tag ("{% for %}{{ x }}\n" loses its newline; "a {{ x }}{%- if %}"
// its space). With no literal text left, its trimming has nothing to act on,
// and the rendering matches jinja2's (TestWhitespace holds it to jinja2 on
// generated templates).
func prepare(src string) (string, []string, error) {
	src = jinjaSource(src)
	pieces, err := scanTemplate(src)
	if err != nil {
		return "", nil, err
	}
	var out strings.Builder
	var texts []string
	for k, p := range pieces {
		if p.kind != kindText {
			out.WriteString(p.tag(src))
			continue
		}
		var prev, next *piece
		if k > 0 {
			prev = &pieces[k-1]
		}
		if k+1 < len(pieces) {
			next = &pieces[k+1]
		}
		s := src[p.start:p.end]
		if next != nil {
			switch {
			case next.lMinus:
				s = strings.TrimRightFunc(s, isJinjaSpace)
			case next.kind != kindVar && !next.lPlus:
				// lstrip_blocks: the indentation before a tag that begins its line.
				t := strings.TrimRight(s, " \t")
				if (t == "" && prev == nil) || strings.HasSuffix(t, "\n") {
					s = t
				}
			}
		}
		if prev != nil {
			switch {
			case prev.rMinus:
				s = strings.TrimLeftFunc(s, isJinjaSpace)
			case prev.kind != kindVar && !prev.rPlus && !prev.rawOpen:
				// trim_blocks (jinja2 does not apply it to a raw block's content)
				s = strings.TrimPrefix(s, "\n")
			}
		}
		if s != "" {
			fmt.Fprintf(&out, "{{ %s[%d] }}", textVar, len(texts))
			texts = append(texts, s)
		}
	}
	return out.String(), texts, nil
}

// isJinjaSpace is Python's str.isspace, what jinja2's "-" markers strip.
func isJinjaSpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }

type pieceKind uint8

const (
	kindText    pieceKind = iota
	kindVar               // {{ }}
	kindBlock             // {% %}
	kindComment           // {# #}
	kindRaw               // {% raw %} or {% endraw %}: a block tag that is not passed on
)

type piece struct {
	kind           pieceKind
	start, end     int // the text, or the whole tag with its delimiters
	lMinus, rMinus bool
	lPlus, rPlus   bool
	rawOpen        bool // {% raw %}
}

// tag is the tag's source as passed on: "+" markers, which the renderer
// does not know, are dropped (their effect is applied here); raw tags are
// dropped (their content became text).
func (p piece) tag(src string) string {
	if p.kind == kindRaw {
		return ""
	}
	s := src[p.start:p.end]
	if p.lPlus {
		s = s[:2] + s[3:]
	}
	if p.rPlus {
		s = s[:len(s)-3] + s[len(s)-2:]
	}
	return s
}

var (
	rawStart = regexp.MustCompile(`^\{%[-+]?\s*raw\s*[-+]?%\}`)
	rawEnd   = regexp.MustCompile(`\{%[-+]?\s*endraw\s*[-+]?%\}`)
)

// scanTemplate splits a template into text and tags. Like jinja2's lexer, a
// tag runs to its closer outside quoted strings; a comment to the first #}.
func scanTemplate(src string) ([]piece, error) {
	var out []piece
	text := 0
	for i := 0; i+1 < len(src); {
		if src[i] != '{' || (src[i+1] != '{' && src[i+1] != '%' && src[i+1] != '#') {
			i++
			continue
		}
		if i > text {
			out = append(out, piece{kind: kindText, start: text, end: i})
		}
		p, err := scanTag(src, i)
		if err != nil {
			return nil, err
		}
		if p.kind == kindBlock && rawStart.MatchString(src[i:]) {
			// {% raw %}...{% endraw %}: the content is text.
			p.kind, p.rawOpen = kindRaw, true
			out = append(out, p)
			loc := rawEnd.FindStringIndex(src[p.end:])
			if loc == nil {
				return nil, fmt.Errorf("line %s: {%% raw %%} without {%% endraw %%}", lineOf(src, i))
			}
			out = append(out, piece{kind: kindText, start: p.end, end: p.end + loc[0]})
			end, err := scanTag(src, p.end+loc[0])
			if err != nil {
				return nil, err
			}
			end.kind = kindRaw
			out = append(out, end)
			p = end
		} else {
			out = append(out, p)
		}
		i, text = p.end, p.end
	}
	if text < len(src) {
		out = append(out, piece{kind: kindText, start: text, end: len(src)})
	}
	return out, nil
}

// scanTag reads the tag that opens at src[i:].
func scanTag(src string, i int) (piece, error) {
	p := piece{start: i}
	var closer byte
	switch src[i+1] {
	case '{':
		p.kind, closer = kindVar, '}'
	case '%':
		p.kind, closer = kindBlock, '%'
	default:
		p.kind, closer = kindComment, '#'
	}
	j := i + 2
	if j < len(src) {
		switch {
		case src[j] == '-':
			p.lMinus = true
		case src[j] == '+' && p.kind != kindVar:
			p.lPlus = true
		}
	}
	for ; j+1 < len(src); j++ {
		c := src[j]
		if p.kind != kindComment && (c == '\'' || c == '"') {
			for j++; j < len(src) && src[j] != c; j++ {
				if src[j] == '\\' {
					j++
				}
			}
			continue
		}
		if c == closer && src[j+1] == '}' {
			if k := j - 1; k >= i+2 && !(k == i+2 && (p.lMinus || p.lPlus)) {
				switch src[k] {
				case '-':
					p.rMinus = true
				case '+':
					p.rPlus = p.kind != kindVar
				}
			}
			p.end = j + 2
			return p, nil
		}
	}
	what := map[pieceKind]string{kindVar: "{{", kindBlock: "{%", kindComment: "{#"}[p.kind]
	return piece{}, fmt.Errorf("line %s: %s is not closed", lineOf(src, i), what)
}

func lineOf(src string, i int) string { return strconv.Itoa(strings.Count(src[:i], "\n") + 1) }
