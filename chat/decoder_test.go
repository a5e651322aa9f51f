package chat

import (
	"strings"
	"testing"
	"unicode/utf8"

	"offload/tokenizer"
)

// feed runs ids through a decoder and returns the deltas, Flush included
// when the decoder did not stop.
func feed(d *Decoder, ids []int) []string {
	var out []string
	for _, id := range ids {
		delta, done := d.Next(id)
		out = append(out, delta)
		if done {
			return out
		}
	}
	return append(out, d.Flush())
}

func TestDecoder(t *testing.T) {
	l3 := tok(t, "llama3")
	text := "Hello world. The answer is STOP here, or END.\nDone ✓ naïve"
	ids := l3.Encode(text, false)
	eot, _ := l3.TokenID("<|eot_id|>")
	tests := []struct {
		name    string
		ids     []int
		stops   []string
		trim    bool
		want    string
		stopped bool
	}{
		{"plain", ids, nil, false, text, false},
		{"stop string", ids, []string{"STOP"}, false, "Hello world. The answer is ", true},
		{"stop across tokens", ids, []string{"d. The"}, false, "Hello worl", true},
		{"earliest stop wins", ids, []string{"END", "answer"}, false, "Hello world. The ", true},
		{"unmatched prefix released", l3.Encode("it is ST", false), []string{"STOP"}, false, "it is ST", false},
		{"stop token", append(l3.Encode("short", false), eot, 15339), nil, false, "short", true},
		{"held text at stop token", append(l3.Encode("it is ST", false), eot), []string{"STOP"}, false, "it is ST", true},
		{"trim leading space", l3.Encode("  \n Hi there", false), nil, true, "Hi there", false},
		{"newline stop", ids, []string{"\n"}, false, "Hello world. The answer is STOP here, or END.", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(l3, DecoderOptions{Prev: -1, Stops: tt.stops, TrimLeadingSpace: tt.trim})
			deltas := feed(d, tt.ids)
			joined := strings.Join(deltas, "")
			if joined != tt.want || d.Text() != tt.want {
				t.Errorf("deltas %q joined %q, Text %q; want %q", deltas, joined, d.Text(), tt.want)
			}
			if d.Stopped() != tt.stopped || !d.Done() {
				t.Errorf("stopped %v done %v", d.Stopped(), d.Done())
			}
			for _, s := range tt.stops {
				for _, delta := range deltas {
					if strings.Contains(delta, s) {
						t.Errorf("delta %q holds stop %q", delta, s)
					}
				}
			}
			if d2, done := d.Next(15339); d2 != "" || !done {
				t.Errorf("Next after done: %q %v", d2, done)
			}
		})
	}
}

// TestDecoderSpacing: a SentencePiece answer's first piece keeps its space
// after a prompt that does not end in BOS, as in the whole sequence's text;
// a chat answer drops it. Byte-fallback pieces come out as whole runes.
func TestDecoderSpacing(t *testing.T) {
	l2 := tok(t, "llama2")
	prompt := l2.EncodeWith("<s>[INST] Capital? [/INST]", tokOpts)
	answer := l2.EncodeWith(" Paris 😀 is big", tokOpts)
	whole := l2.Decode(append(append([]int{}, prompt...), answer...))
	for _, trim := range []bool{false, true} {
		d := NewDecoder(l2, DecoderOptions{Prev: prompt[len(prompt)-1], TrimLeadingSpace: trim})
		deltas := feed(d, answer)
		for _, s := range deltas {
			if !utf8.ValidString(s) {
				t.Errorf("delta %q is not valid UTF-8", s)
			}
		}
		want := strings.TrimPrefix(whole, l2.Decode(prompt))
		if trim {
			want = strings.TrimLeft(want, " ")
		}
		if got := d.Text(); got != want || !strings.Contains(got, "😀") {
			t.Errorf("trim=%v: got %q, want %q", trim, got, want)
		}
	}
	// After BOS, as llama2.c prints it: no leading space.
	st := tok(t, "stories")
	ids := st.Encode("Once upon a time", true)
	d := NewDecoder(st, DecoderOptions{Prev: ids[0]})
	if got := strings.Join(feed(d, ids[1:]), ""); got != "Once upon a time" {
		t.Errorf("after BOS: %q", got)
	}
}

var tokOpts = tokenizer.Options{ParseSpecial: true}
