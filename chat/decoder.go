package chat

import (
	"strings"

	"offload/tokenizer"
)

// Decoder turns the tokens a model generates into the text to show, and
// says when the answer is over: at a stop token (an end-of-turn or
// end-of-generation id) or at a stop string. Text that could be the start
// of a stop string is held back until it is known not to be one, so the
// text returned never contains a stop string, streamed or not.
type Decoder struct {
	stream  *tokenizer.Stream
	isStop  func(id int) bool
	stops   []string
	trim    bool // drop leading whitespace of the answer
	started bool // some text was returned
	pending string
	text    strings.Builder
	tokens  int
	done    bool
	stopped bool
}

// DecoderOptions configure a Decoder.
type DecoderOptions struct {
	// Prev is the prompt's last token (-1 for none): it decides the spacing
	// of the first generated piece, as in the text the whole sequence
	// decodes to.
	Prev int
	// IsStop reports whether a token ends the answer; nil means the
	// tokenizer's IsEOG. Use Template.IsStop for chat answers.
	IsStop func(id int) bool
	// Stops are strings that end the answer where they first appear; they
	// are not part of it.
	Stops []string
	// TrimLeadingSpace drops whitespace at the start of the answer (a chat
	// reply's content; a completion keeps it).
	TrimLeadingSpace bool
}

// NewDecoder starts decoding an answer generated after a prompt.
func NewDecoder(tok *tokenizer.Tokenizer, o DecoderOptions) *Decoder {
	d := &Decoder{stream: tok.NewStream(), isStop: o.IsStop, trim: o.TrimLeadingSpace}
	if d.isStop == nil {
		d.isStop = tok.IsEOG
	}
	for _, s := range o.Stops {
		if s != "" {
			d.stops = append(d.stops, s)
		}
	}
	if o.Prev >= 0 {
		d.stream.Next(o.Prev)
		d.stream.Flush() // the prompt's text is not part of the answer
	}
	return d
}

// Next takes the next generated token and returns the text it adds to the
// answer (possibly ""), and whether the answer is over. A stop token adds
// no text. After done, Next returns "", true.
func (d *Decoder) Next(id int) (delta string, done bool) {
	if d.done {
		return "", true
	}
	if d.isStop(id) {
		d.done, d.stopped = true, true
		return d.emit(d.pending + d.stream.Flush()), true
	}
	d.tokens++
	return d.push(d.stream.Next(id))
}

// Flush ends the answer when generation stopped without a stop token (a
// token limit, the end of the context) and returns the text held back.
func (d *Decoder) Flush() string {
	if d.done {
		return ""
	}
	delta, _ := d.push(d.stream.Flush())
	d.done = true
	return delta + d.emit(d.takePending())
}

func (d *Decoder) takePending() string {
	s := d.pending
	d.pending = ""
	return s
}

// push adds decoded text and returns what can be shown.
func (d *Decoder) push(s string) (string, bool) {
	d.pending += s
	if d.trim && !d.started {
		d.pending = strings.TrimLeft(d.pending, " \t\r\n")
	}
	if cut := d.firstStop(); cut >= 0 {
		out := d.pending[:cut]
		d.pending = ""
		d.done, d.stopped = true, true
		return d.emit(out), true
	}
	keep := d.heldBack()
	out := d.pending[:len(d.pending)-keep]
	d.pending = d.pending[len(d.pending)-keep:]
	return d.emit(out), false
}

func (d *Decoder) emit(s string) string {
	if d.trim && !d.started {
		s = strings.TrimLeft(s, " \t\r\n")
	}
	if s != "" {
		d.started = true
		d.text.WriteString(s)
	}
	return s
}

// firstStop is the position in pending of the earliest stop string, or -1.
func (d *Decoder) firstStop() int {
	cut := -1
	for _, s := range d.stops {
		if i := strings.Index(d.pending, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	return cut
}

// heldBack is the length of the longest end of pending that begins some
// stop string.
func (d *Decoder) heldBack() int {
	keep := 0
	for _, s := range d.stops {
		for n := min(len(s)-1, len(d.pending)); n > keep; n-- {
			if strings.HasSuffix(d.pending, s[:n]) {
				keep = n
				break
			}
		}
	}
	return keep
}

// Text is the answer so far.
func (d *Decoder) Text() string { return d.text.String() }

// Tokens is the number of generated tokens taken, stop token excluded.
func (d *Decoder) Tokens() int { return d.tokens }

// Stopped reports whether the answer ended at a stop token or string (the
// OpenAI finish_reason "stop"), rather than at a limit.
func (d *Decoder) Stopped() bool { return d.stopped }

// Done reports whether the answer is over.
func (d *Decoder) Done() bool { return d.done }
