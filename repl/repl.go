// Package repl is an interactive chat with a model in a terminal: the
// conversation is formatted with the model's chat template and kept within
// its context (the oldest turns are dropped first), answers stream as they
// are generated, and an interrupt (Ctrl-C) stops the answer being written,
// not the program. It reads lines from any io.Reader, so the same loop runs
// on a terminal, a pipe or a test's pseudo-terminal.
package repl

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"offload/chat"
	"offload/server"
)

// Config configures a chat.
type Config struct {
	// System is the system prompt; "" sends none.
	System string
	// MaxTokens bounds each answer; default 512. The history is cut so
	// that an answer of this length (at most half the context) fits.
	MaxTokens int
	// Temperature and TopP set sampling; Temperature 0 is greedy. TopP 0
	// means 1.
	Temperature float64
	TopP        float64
	// Seed, when nonzero, makes answers reproducible: answer n uses Seed+n.
	Seed uint64
	// Prompt is printed before each line of input; default "> ".
	Prompt string
}

const help = `Type a message and press Enter. Commands:
  /reset   forget the conversation (the system prompt stays)
  /report  show the run report of the last answer
  /exit    quit (Ctrl-D too)
Ctrl-C stops the answer being written.
`

// Run chats on in and out until /exit, the end of in, or ctx is done
// (then it returns ctx's error). Each value received on interrupts stops
// the answer being generated; at the prompt it only prints a hint.
func Run(ctx context.Context, b server.Backend, cfg Config, in io.Reader, out io.Writer, interrupts <-chan os.Signal) error {
	tmpl := b.ChatTemplate()
	if tmpl == nil {
		return fmt.Errorf("chat: model %s has no chat template", b.ModelName())
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 512
	}
	if cfg.TopP <= 0 || cfg.TopP > 1 {
		cfg.TopP = 1
	}
	if cfg.Prompt == "" {
		cfg.Prompt = "> "
	}
	s := &session{b: b, tmpl: tmpl, cfg: cfg, out: out}
	if cfg.System != "" {
		s.history = []chat.Message{{Role: "system", Content: cfg.System}}
	}
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	for {
		fmt.Fprint(out, cfg.Prompt)
		var line string
	wait:
		for {
			select {
			case <-ctx.Done():
				fmt.Fprintln(out)
				return ctx.Err()
			case err := <-readErr:
				fmt.Fprintln(out)
				return err
			case <-interrupts:
				fmt.Fprint(out, "\n(Ctrl-C stops an answer; type /exit or press Ctrl-D to quit)\n"+cfg.Prompt)
			case line = <-lines:
				break wait
			}
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case line == "/exit" || line == "/quit" || line == "/bye":
			return nil
		case line == "/reset":
			s.history = s.history[:s.systemLen()]
			s.report = nil
			fmt.Fprintln(out, "(the conversation is forgotten)")
		case line == "/report":
			s.printReport()
		case line == "/help" || line == "/?":
			fmt.Fprint(out, help)
		case strings.HasPrefix(line, "/"):
			fmt.Fprintf(out, "unknown command %s; /help lists them\n", strings.Fields(line)[0])
		default:
			if err := s.answer(ctx, line, interrupts); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(out, "error: %v\n", err)
			}
		}
	}
}

type session struct {
	b       server.Backend
	tmpl    *chat.Template
	cfg     Config
	out     io.Writer
	history []chat.Message
	report  any
	turns   uint64
}

func (s *session) systemLen() int {
	if len(s.history) > 0 && s.history[0].Role == "system" {
		return 1
	}
	return 0
}

// fit drops the oldest turns until the conversation and an answer of
// reserve tokens fit in the context; it returns the prompt.
func (s *session) fit(reserve int) ([]int, error) {
	limit := s.b.ContextSize() - reserve
	for {
		prompt, err := s.tmpl.Encode(s.history, true)
		if err != nil {
			return nil, err
		}
		if len(prompt) <= limit {
			return prompt, nil
		}
		sys := s.systemLen()
		if len(s.history)-sys <= 1 {
			return nil, fmt.Errorf("the message is %d tokens with the template; the context holds %d, %d of which are kept for the answer", len(prompt), s.b.ContextSize(), reserve)
		}
		// Drop the oldest exchange: a user message and the answer after it.
		n := 1
		if len(s.history)-sys > 2 && s.history[sys+1].Role == "assistant" {
			n = 2
		}
		s.history = append(s.history[:sys], s.history[sys+n:]...)
	}
}

// answer adds the user's line and generates the reply.
func (s *session) answer(ctx context.Context, line string, interrupts <-chan os.Signal) error {
	s.history = append(s.history, chat.Message{Role: "user", Content: line})
	reserve := min(s.cfg.MaxTokens, s.b.ContextSize()/2)
	prompt, err := s.fit(reserve)
	if err != nil {
		s.history = s.history[:len(s.history)-1]
		return err
	}
	maxTokens := min(s.cfg.MaxTokens, s.b.ContextSize()-len(prompt))
	s.turns++
	seed := s.cfg.Seed + s.turns
	if s.cfg.Seed == 0 {
		var b [8]byte
		rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopped atomic.Bool
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		select {
		case <-interrupts:
			stopped.Store(true)
			cancel()
		case <-watchDone:
		}
	}()

	dec := chat.NewDecoder(s.tmpl.Tokenizer(), chat.DecoderOptions{Prev: prompt[len(prompt)-1], IsStop: s.tmpl.IsStop, TrimLeadingSpace: true})
	report, err := s.b.Generate(gctx, server.GenerateRequest{
		Prompt: prompt, MaxTokens: maxTokens, Temperature: s.cfg.Temperature, TopP: s.cfg.TopP, Seed: seed,
		StopTokens: s.tmpl.EndOfTurn(),
	}, func(tok int) bool {
		delta, done := dec.Next(tok)
		io.WriteString(s.out, delta)
		return !done && gctx.Err() == nil
	})
	io.WriteString(s.out, dec.Flush())
	switch {
	case stopped.Load() && ctx.Err() == nil:
		fmt.Fprintln(s.out, " [stopped]")
	case err != nil:
		fmt.Fprintln(s.out)
		s.history = s.history[:len(s.history)-1]
		return err
	default:
		fmt.Fprintln(s.out)
	}
	s.report = report
	// The answer stays in the history, cut short or not: it is what the
	// user saw.
	s.history = append(s.history, chat.Message{Role: "assistant", Content: dec.Text()})
	return nil
}

func (s *session) printReport() {
	switch r := s.report.(type) {
	case nil:
		fmt.Fprintln(s.out, "(no answer yet)")
	case fmt.Stringer:
		fmt.Fprintln(s.out, strings.TrimRight(r.String(), "\n"))
	default:
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			fmt.Fprintf(s.out, "%+v\n", r)
			return
		}
		fmt.Fprintln(s.out, string(data))
	}
}
