package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The pre-tokenizer regexes of GPT-2 and Llama 3 (as published by OpenAI,
// Meta and Hugging Face). Both end in `\s+(?!\S)`, a negative lookahead that
// Go's RE2-based regexp cannot express, so the splitters below are written by
// hand. They are checked against a backtracking matcher of these exact
// strings in split_test.go (FuzzSplitGPT2, FuzzSplitLlama3).
const (
	PatternGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	PatternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// PatternQwen2 is Llama 3's pattern with single digits; Qwen2 and
	// DeepSeek-R1-Qwen distills use it.
	PatternQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// Character classes as the reference engines (Rust regex / Oniguruma) define
// them in Unicode mode: \p{L} letters, \p{N} numbers (Nd, Nl, No), \s the
// White_Space property. An invalid UTF-8 byte decodes as U+FFFD, which is
// none of them ("other"), so it stays in the piece and the byte-level BPE
// still sees the raw byte.
func isL(r rune) bool     { return unicode.IsLetter(r) }
func isN(r rune) bool     { return unicode.IsNumber(r) }
func isS(r rune) bool     { return unicode.IsSpace(r) }
func isOther(r rune) bool { return !isS(r) && !isL(r) && !isN(r) }
func isCRLF(r rune) bool  { return r == '\r' || r == '\n' }

// decodeAt decodes the rune at byte offset i (i < len(s)).
func decodeAt(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// runEnd returns the end of the run of runes satisfying pred starting at i.
func runEnd(s string, i int, pred func(rune) bool) int {
	for i < len(s) {
		r, w := decodeAt(s, i)
		if !pred(r) {
			break
		}
		i += w
	}
	return i
}

// foldEq reports whether r equals the lower-case ASCII letter c under
// Unicode simple case folding, as (?i) does in Rust regex: 's' also matches
// 'S' and U+017F LATIN SMALL LETTER LONG S.
func foldEq(r, c rune) bool {
	if r == c {
		return true
	}
	for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
		if f == r {
			return true
		}
	}
	return false
}

var contractions = []string{"s", "t", "re", "ve", "m", "ll", "d"}

// contraction matches one of the suffixes of 's|'t|'re|'ve|'m|'ll|'d at i
// (just after the apostrophe), in alternation order, and returns its length
// in bytes or 0.
func contraction(s string, i int, fold bool) int {
	for _, c := range contractions {
		j := i
		ok := true
		for _, want := range c {
			if j >= len(s) {
				ok = false
				break
			}
			r, w := decodeAt(s, j)
			if r != want && !(fold && foldEq(r, want)) {
				ok = false
				break
			}
			j += w
		}
		if ok {
			return j - i
		}
	}
	return 0
}

// wsTail handles the last alternatives shared by both patterns,
// `\s+(?!\S)|\s+`, at i where s[i] is whitespace: the whole run if it ends the
// text, else the run minus its last rune (which then joins the next word), or
// the single whitespace rune when the run has only one.
func wsTail(s string, i int) int {
	e := runEnd(s, i, isS)
	if e == len(s) {
		return e - i
	}
	_, w := utf8.DecodeLastRuneInString(s[i:e])
	if e-w > i {
		return e - w - i
	}
	return e - i
}

// matchGPT2 returns the length of the match of PatternGPT2 at i (always > 0).
func matchGPT2(s string, i int) int {
	r, w := decodeAt(s, i)
	if r == '\'' {
		if n := contraction(s, i+1, false); n > 0 {
			return 1 + n
		}
	}
	p := i // ` ?X+`: the optional space is taken only if X+ follows it
	if r == ' ' {
		p = i + 1
	}
	for _, class := range [...]func(rune) bool{isL, isN, isOther} {
		if e := runEnd(s, p, class); e > p {
			return e - i
		}
	}
	if isS(r) {
		return wsTail(s, i)
	}
	return w // unreachable: every rune is L, N, S or other
}

// matchLlama3 returns the length of the match of PatternLlama3 (maxDigits 3)
// or PatternQwen2 (maxDigits 1) at i (always > 0).
func matchLlama3(s string, i int, maxDigits int) int {
	r, w := decodeAt(s, i)
	if r == '\'' {
		if n := contraction(s, i+1, true); n > 0 {
			return 1 + n
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isL(r) {
		return runEnd(s, i, isL) - i
	}
	if !isCRLF(r) && !isN(r) {
		if e := runEnd(s, i+w, isL); e > i+w {
			return e - i
		}
	}
	// \p{N}{1,3}
	if isN(r) {
		e := i
		for k := 0; k < maxDigits && e < len(s); k++ {
			rr, ww := decodeAt(s, e)
			if !isN(rr) {
				break
			}
			e += ww
		}
		return e - i
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	p := i
	if r == ' ' {
		p = i + 1
	}
	if e := runEnd(s, p, isOther); e > p {
		return runEnd(s, e, isCRLF) - i
	}
	// \s*[\r\n]+ : up to and including the last CR/LF of the whitespace run.
	if isS(r) {
		e := runEnd(s, i, isS)
		last := -1
		for j := i; j < e; {
			rr, ww := decodeAt(s, j)
			j += ww
			if isCRLF(rr) {
				last = j
			}
		}
		if last > 0 {
			return last - i
		}
		return wsTail(s, i)
	}
	return w // unreachable
}

// splitter cuts text into pre-tokens; it appends the end offset of each piece
// to ends (pieces are contiguous and cover s).
type splitter func(s string, ends []int) []int

func splitGPT2(s string, ends []int) []int {
	for i := 0; i < len(s); {
		i += matchGPT2(s, i)
		ends = append(ends, i)
	}
	return ends
}

func splitLlama3(s string, ends []int) []int {
	for i := 0; i < len(s); {
		i += matchLlama3(s, i, 3)
		ends = append(ends, i)
	}
	return ends
}

func splitQwen2(s string, ends []int) []int {
	for i := 0; i < len(s); {
		i += matchLlama3(s, i, 1)
		ends = append(ends, i)
	}
	return ends
}

// SplitGPT2 returns the pieces PatternGPT2 cuts s into.
func SplitGPT2(s string) []string { return cut(s, splitGPT2(s, nil)) }

// SplitLlama3 returns the pieces PatternLlama3 cuts s into.
func SplitLlama3(s string) []string { return cut(s, splitLlama3(s, nil)) }

func cut(s string, ends []int) []string {
	out := make([]string, 0, len(ends))
	start := 0
	for _, e := range ends {
		out = append(out, s[start:e])
		start = e
	}
	return out
}
