package tokenizer

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"unicode/utf8"
)

// A slow, obviously-correct reference for the hand-written splitters: a tiny
// backtracking regex engine (ordered alternation, greedy quantifiers,
// negative lookahead, (?i:...)) that parses the pattern strings themselves
// and finds matches the way Oniguruma / fancy-regex do (leftmost start, then
// the first alternative that succeeds).

type rxNode interface{}

type (
	rxAlt []rxNode
	rxSeq []rxNode
	rxRep struct {
		n        rxNode
		min, max int // max < 0: unbounded
	}
	rxClass struct {
		neg   bool
		preds []func(rune) bool
	}
	rxLit struct {
		r    rune
		fold bool
	}
	rxNotAhead struct{ n rxNode }
)

type rxParser struct {
	src  []rune
	pos  int
	fold bool
}

func parseRx(pattern string) rxNode {
	p := &rxParser{src: []rune(pattern)}
	n := p.alt()
	if p.pos != len(p.src) {
		panic(fmt.Sprintf("regex %q: unexpected %q at %d", pattern, p.src[p.pos], p.pos))
	}
	return n
}

func (p *rxParser) peek(s string) bool {
	r := []rune(s)
	if p.pos+len(r) > len(p.src) {
		return false
	}
	return string(p.src[p.pos:p.pos+len(r)]) == s
}

func (p *rxParser) alt() rxNode {
	alts := rxAlt{p.seq()}
	for p.pos < len(p.src) && p.src[p.pos] == '|' {
		p.pos++
		alts = append(alts, p.seq())
	}
	return alts
}

func (p *rxParser) seq() rxNode {
	var s rxSeq
	for p.pos < len(p.src) && p.src[p.pos] != '|' && p.src[p.pos] != ')' {
		s = append(s, p.quant(p.atom()))
	}
	return s
}

func (p *rxParser) quant(n rxNode) rxNode {
	if p.pos >= len(p.src) {
		return n
	}
	switch p.src[p.pos] {
	case '?':
		p.pos++
		return rxRep{n, 0, 1}
	case '*':
		p.pos++
		return rxRep{n, 0, -1}
	case '+':
		p.pos++
		return rxRep{n, 1, -1}
	case '{':
		end := p.pos
		for p.src[end] != '}' {
			end++
		}
		body := string(p.src[p.pos+1 : end])
		p.pos = end + 1
		var lo, hi int
		if _, err := fmt.Sscanf(body, "%d,%d", &lo, &hi); err != nil {
			lo, _ = strconv.Atoi(body)
			hi = lo
		}
		return rxRep{n, lo, hi}
	}
	return n
}

func (p *rxParser) atom() rxNode {
	switch {
	case p.peek("(?i:"):
		p.pos += 4
		old := p.fold
		p.fold = true
		n := p.alt()
		p.fold = old
		p.pos++ // ')'
		return n
	case p.peek("(?!"):
		p.pos += 3
		n := p.alt()
		p.pos++
		return rxNotAhead{n}
	case p.peek("(?:"):
		p.pos += 3
		n := p.alt()
		p.pos++
		return n
	case p.peek("("):
		p.pos++
		n := p.alt()
		p.pos++
		return n
	case p.peek("["):
		p.pos++
		c := rxClass{}
		if p.peek("^") {
			c.neg = true
			p.pos++
		}
		for !p.peek("]") {
			c.preds = append(c.preds, p.classItem())
		}
		p.pos++
		return c
	case p.peek(`\`):
		pred, neg := p.escape()
		return rxClass{neg: neg, preds: []func(rune) bool{pred}}
	}
	r := p.src[p.pos]
	p.pos++
	return rxLit{r, p.fold}
}

func (p *rxParser) classItem() func(rune) bool {
	if p.peek(`\`) {
		pred, neg := p.escape()
		if neg {
			return func(r rune) bool { return !pred(r) }
		}
		return pred
	}
	r := p.src[p.pos]
	p.pos++
	return func(x rune) bool { return x == r }
}

// escape parses \s \S \p{L} \p{N} \r \n \t and escaped literals.
func (p *rxParser) escape() (func(rune) bool, bool) {
	p.pos++
	c := p.src[p.pos]
	p.pos++
	switch c {
	case 's':
		return isS, false
	case 'S':
		return isS, true
	case 'r':
		return func(r rune) bool { return r == '\r' }, false
	case 'n':
		return func(r rune) bool { return r == '\n' }, false
	case 't':
		return func(r rune) bool { return r == '\t' }, false
	case 'p', 'P':
		end := p.pos
		for p.src[end] != '}' {
			end++
		}
		name := string(p.src[p.pos+1 : end])
		p.pos = end + 1
		var pred func(rune) bool
		switch name {
		case "L":
			pred = isL
		case "N":
			pred = isN
		default:
			panic("unsupported class " + name)
		}
		return pred, c == 'P'
	}
	return func(r rune) bool { return r == c }, false
}

type rxMatcher struct{ s string }

func (m *rxMatcher) at(i int) (rune, int, bool) {
	if i >= len(m.s) {
		return 0, 0, false
	}
	r, w := utf8.DecodeRuneInString(m.s[i:])
	return r, w, true
}

// match runs n at i and calls k with each end position in priority order
// until k accepts.
func (m *rxMatcher) match(n rxNode, i int, k func(int) bool) bool {
	switch n := n.(type) {
	case rxAlt:
		for _, a := range n {
			if m.match(a, i, k) {
				return true
			}
		}
		return false
	case rxSeq:
		if len(n) == 0 {
			return k(i)
		}
		return m.match(n[0], i, func(j int) bool { return m.match(n[1:], j, k) })
	case rxRep:
		var rec func(count, i int) bool
		rec = func(count, i int) bool {
			if n.max < 0 || count < n.max {
				if m.match(n.n, i, func(j int) bool { return j > i && rec(count+1, j) }) {
					return true
				}
			}
			return count >= n.min && k(i)
		}
		return rec(0, i)
	case rxClass:
		r, w, ok := m.at(i)
		if !ok {
			return false
		}
		in := false
		for _, p := range n.preds {
			if p(r) {
				in = true
				break
			}
		}
		if in != n.neg {
			return k(i + w)
		}
		return false
	case rxLit:
		r, w, ok := m.at(i)
		if !ok {
			return false
		}
		if r == n.r || (n.fold && foldEq(r, n.r)) || (n.fold && foldEq(n.r, r)) {
			return k(i + w)
		}
		return false
	case rxNotAhead:
		if m.match(n.n, i, func(int) bool { return true }) {
			return false
		}
		return k(i)
	}
	panic(fmt.Sprintf("unknown node %T", n))
}

// refSplit cuts s like an HF Split pre-tokenizer with behavior Isolated:
// every match is a piece and so is every gap between matches.
func refSplit(re rxNode, s string) []string {
	m := &rxMatcher{s}
	var out []string
	gap := 0
	for i := 0; i < len(s); {
		end := -1
		m.match(re, i, func(j int) bool {
			if j == i {
				return false // empty matches are skipped
			}
			end = j
			return true
		})
		if end < 0 {
			_, w := utf8.DecodeRuneInString(s[i:])
			i += w
			continue
		}
		if gap < i {
			out = append(out, s[gap:i])
		}
		out = append(out, s[i:end])
		i, gap = end, end
	}
	if gap < len(s) {
		out = append(out, s[gap:])
	}
	return out
}

var (
	refGPT2   = parseRx(PatternGPT2)
	refLlama3 = parseRx(PatternLlama3)
	refQwen2  = parseRx(PatternQwen2)
)

var splitSeeds = []string{
	"", "Hello world", "  leading", "trailing   ", "a  b", "a\n\nb", "a \n b", "x\r\n\r\ny",
	"I'm you'RE he'LL we'Ve 'S 'ſ", "don't  'tis", "123456789 1234", "$1.00!!", "hello\t\tworld\n",
	"生活的真谛是", "you…\u00a0\u00a0you…\u00a0\u00a0", " \u00a0x", "🦙🦙 ❤️", "\xff\xfe bad \x80",
	"ﬁ Ⅻ ½ ٣ ३", "    \n    ", "a'", "''d", "!!!\n\n\nfoo", " ?? ", "\u2028x\u3000y", "'\u017fx",
}

func TestSplitMatchesReference(t *testing.T) {
	cases := []struct {
		name string
		fn   splitter
		ref  rxNode
	}{{"gpt2", splitGPT2, refGPT2}, {"llama3", splitLlama3, refLlama3}, {"qwen2", splitQwen2, refQwen2}}
	texts := append([]string(nil), splitSeeds...)
	for _, c := range loadAllExpected(t) {
		texts = append(texts, c.Text)
	}
	for _, c := range cases {
		for _, s := range texts {
			got, want := cut(s, c.fn(s, nil)), refSplit(c.ref, s)
			if !slices.Equal(got, want) {
				t.Errorf("%s %q:\n got %q\nwant %q", c.name, s, got, want)
			}
		}
	}
}

func TestSplitExamples(t *testing.T) {
	tests := []struct {
		fn   func(string) []string
		in   string
		want []string
	}{
		{SplitGPT2, "Hello  world!", []string{"Hello", " ", " world", "!"}},
		{SplitGPT2, "I'm 12345", []string{"I", "'m", " 12345"}},
		{SplitGPT2, "x   ", []string{"x", "   "}},
		{SplitLlama3, "I'M 12345", []string{"I", "'M", " ", "123", "45"}},
		{SplitLlama3, "a\n\n  b", []string{"a", "\n\n", " ", " b"}},
		{SplitLlama3, "$hello...\n\nx", []string{"$hello", "...\n\n", "x"}},
	}
	for _, tt := range tests {
		if got := tt.fn(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func fuzzSplit(f *testing.F, fn splitter, ref rxNode) {
	for _, s := range splitSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 256 {
			s = s[:256]
		}
		got, want := cut(s, fn(s, nil)), refSplit(ref, s)
		if !slices.Equal(got, want) {
			t.Fatalf("%q:\n got %q\nwant %q", s, got, want)
		}
	})
}

func FuzzSplitGPT2(f *testing.F)   { fuzzSplit(f, splitGPT2, refGPT2) }
func FuzzSplitLlama3(f *testing.F) { fuzzSplit(f, splitLlama3, refLlama3) }
func FuzzSplitQwen2(f *testing.F)  { fuzzSplit(f, splitQwen2, refQwen2) }
