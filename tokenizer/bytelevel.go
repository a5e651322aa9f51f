package tokenizer

import "strings"

// GPT-2's bytes_to_unicode: every byte maps to a printable code point, so
// that byte-level vocabularies can be written as text (a space is "Ġ",
// U+0120; a newline "Ċ", U+010A). Printable Latin-1 bytes map to themselves,
// the other 68 to U+0100 onwards in byte order.
var (
	byteToRune [256]rune
	runeToByte = make(map[rune]byte, 256)
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// byteLevelEncode writes raw bytes in the GPT-2 mapping.
func byteLevelEncode(raw string) string {
	var b strings.Builder
	b.Grow(len(raw) * 2)
	for i := 0; i < len(raw); i++ {
		b.WriteRune(byteToRune[raw[i]])
	}
	return b.String()
}

// byteLevelDecode maps a GPT-2-mapped piece back to bytes. ok is false if a
// character is outside the mapping; Hugging Face's ByteLevel decoder then
// keeps the piece's UTF-8 as is, and so do the callers.
func byteLevelDecode(piece string) (raw string, ok bool) {
	b := make([]byte, 0, len(piece))
	for _, r := range piece {
		c, ok := runeToByte[r]
		if !ok {
			return piece, false
		}
		b = append(b, c)
	}
	return string(b), true
}
