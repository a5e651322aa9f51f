package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"offload"
	"offload/engine"
	"offload/internal/atomicfile"
)

func runCommand() *cli.Command {
	flags := []cli.Flag{
		modelFlag(),
		&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer `FILE` (default: the one in or beside the model)"},
		&cli.StringFlag{Name: "prompt", Aliases: []string{"i"}, Usage: "the prompt `TEXT` (BOS is added); - reads it from stdin, as does a pipe when neither --prompt nor --file is given"},
		&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the prompt from `FILE` (up to 64 MiB; one trailing newline is dropped)"},
		&cli.IntFlag{Name: "n", Value: 256, Usage: "generate `N` tokens (fewer if the text ends or the context is full)"},
		&cli.StringSliceFlag{Name: "stop", Usage: "stop when the output contains `TEXT` (repeatable)"},
		&cli.BoolFlag{Name: "json", Usage: "print the text and the report as one JSON object on stdout instead"},
		&cli.BoolFlag{Name: "plan", Usage: "print the residency plan (what stays on the device, what streams) to stderr"},
		&cli.StringFlag{Name: "trace", Usage: "write a Chrome trace-event JSON timeline (copy and compute streams) to `FILE`; open it in Perfetto"},
	}
	flags = append(flags, decodeFlags()...)
	flags = append(flags, deviceFlags()...)
	return &cli.Command{
		Name:  "run",
		Usage: "generate text, streaming it to stdout, then report speed and transfers to stderr",
		Description: `Generates -n tokens after --prompt and prints the prompt and the continuation as they are produced.
The report on stderr gives prompt and generated tokens, prefill and decode speed, bytes moved per
generated token, Sirius statistics (AAL, corrections, effective density) and a per-phase table of
bytes, copy/compute/stall time and overlap.

The default is the product: Sirius with a Griffin sparse model (keep 0.5, window 16, threshold 0.1).
--mode dense is plain greedy/sampled decoding with the full model.

Examples:
  offload run --prompt "Once upon a time" -n 64
  offload run --mode dense --prompt "Once upon a time" -n 64 --temperature 1 --top-p 0.9 --seed 7
  offload run --model llama-70b/ --window 16 --device-mem 22GiB --trace trace.json
  echo "Once upon a time" | offload run -n 64
  offload run --file prompt.txt -n 64

Ctrl-C (or SIGTERM) stops the generation at the next layer boundary and still prints the report and
writes --trace and --json; the exit code is then 130 (143). A second Ctrl-C quits at once.

` + engine.Glossary,
		Flags:  flags,
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (the prompt goes in --prompt, --file, or on stdin)", c.Args().First())
	}
	// Until the generation is about to start, SIGINT and SIGTERM end the
	// process at once (there is nothing to report yet); from then on they
	// stop the generation at the next layer boundary, the report and the
	// --trace and --json files are still written, and the exit code still
	// says it was interrupted.
	ctx, intr := catchInterrupts(context.Background())
	// Every flag is checked here, before the model is opened.
	n := c.Int("n")
	dec, err := readDecoding(c, c.String("mode"))
	if err != nil {
		return err
	}
	req, err := readSampling(c, n)
	if err != nil {
		return err
	}
	req.Stop = c.StringSlice("stop")
	for _, s := range req.Stop {
		if s == "" {
			return fmt.Errorf(`--stop "": an empty stop string would match at once; give the text to stop at`)
		}
	}
	ds, err := readDevice(c)
	if err != nil {
		return err
	}
	if tr := c.String("trace"); tr != "" {
		if err := checkWritableDir(tr); err != nil {
			return fmt.Errorf("--trace %s: %w", tr, err)
		}
	}
	promptText, err := readPrompt(c)
	if err != nil {
		return err
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	req.Tokens = m.Encode(promptText)
	if len(req.Tokens) == 0 {
		return fmt.Errorf("the prompt is empty and this tokenizer has no BOS token to start from: pass --prompt")
	}
	if dec.Window >= m.Config.MaxSeq {
		return fmt.Errorf("--window %d: %s holds %d positions; a window must be shorter than the context", dec.Window, m.Name, m.Config.MaxSeq)
	}
	if room := m.Config.MaxSeq - dec.Window - 1; len(req.Tokens) > room {
		return fmt.Errorf("the prompt has %d tokens; %s holds %d positions, so with --window %d a prompt can have at most %d: shorten it",
			len(req.Tokens), m.Name, m.Config.MaxSeq, dec.Window, room)
	}
	dev, note, err := ds.open()
	if err != nil {
		return err
	}
	defer dev.Close()
	opt, ctxNote := engineOptions(c, m, dec, n, len(req.Tokens))
	if len(req.Tokens) > opt.MaxBatch && stderrIsTerminal() {
		bar := progressbar.NewOptions(len(req.Tokens), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("prefill"), progressbar.OptionClearOnFinish())
		opt.PrefillProgress = func(done, _ int) { bar.Set(done) }
	}
	s, err := m.NewSession(dev, opt)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Path, flagErr(err))
	}
	defer s.Close()
	s.DeviceNote = note
	intr.arm()
	if c.Bool("plan") {
		fmt.Fprint(os.Stderr, s.Engine.Prof.Plan.String())
	}
	jsonOut := c.Bool("json")
	out := bufio.NewWriter(os.Stdout)
	// Echo the prompt as llama2.c's run does.
	stream := m.Tok.NewStream()
	var prompt strings.Builder
	for _, id := range req.Tokens {
		prompt.WriteString(stream.Next(id))
	}
	if !jsonOut {
		out.WriteString(prompt.String())
		out.Flush()
	}
	res, genErr := s.Generate(ctx, req, func(piece string) error {
		if jsonOut {
			return nil
		}
		out.WriteString(piece)
		return out.Flush()
	})
	if !jsonOut {
		out.WriteString("\n")
		out.Flush()
	}
	sig := intr.signal()
	if res == nil {
		if sig != nil {
			return cli.Exit("", exitCode(sig))
		}
		return flagErr(genErr)
	}
	rep := s.Report(res)
	if ctxNote != "" {
		rep.Notes = append(rep.Notes, ctxNote)
	}
	switch {
	case sig != nil && res.Finish == offload.FinishCancelled:
		rep.Notes = append(rep.Notes, fmt.Sprintf("interrupted by %s: stopped at a layer boundary after %d of %d tokens; the figures cover what was generated",
			signalName(sig), res.Stats.Generated, n))
		genErr = nil
	case sig != nil:
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s arrived after the generation had finished", signalName(sig)))
	case genErr != nil:
		rep.Notes = append(rep.Notes, "generation stopped early: "+flagErr(genErr).Error())
	}
	if tr := c.String("trace"); tr != "" {
		if err := writeFileAtomic(tr, func(f *os.File) error { return s.Engine.Prof.WriteTrace(f) }); err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
	}
	if jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Text   string `json:"text"`
			Tokens []int  `json:"tokens"`
			Finish string `json:"finish"`
			*engine.Report
		}{prompt.String() + res.Text + "\n", res.Tokens, res.Finish, rep}); err != nil {
			return err
		}
	} else {
		fmt.Fprint(os.Stderr, "\n"+rep.String())
	}
	if sig != nil {
		return cli.Exit("", exitCode(sig))
	}
	return flagErr(genErr)
}

// maxPromptBytes bounds a prompt read from a file or stdin.
const maxPromptBytes = 64 << 20

// readPrompt is the prompt text: --prompt, --file, or stdin (with --prompt
// -, or when stdin is a pipe or a file and neither flag is given). One
// trailing newline is dropped, so `echo text | offload run` equals
// `offload run --prompt text`.
func readPrompt(c *cli.Context) (string, error) {
	p, f := c.String("prompt"), c.String("file")
	switch {
	case c.IsSet("prompt") && c.IsSet("file"):
		return "", fmt.Errorf("--prompt and --file: give one of them")
	case p == "-" || f == "-":
		return readPromptFrom(os.Stdin, "stdin")
	case c.IsSet("file"):
		r, err := os.Open(f)
		if err != nil {
			return "", fmt.Errorf("--file: %w", err)
		}
		defer r.Close()
		return readPromptFrom(r, f)
	case c.IsSet("prompt"):
		return p, nil
	case stdinIsData():
		return readPromptFrom(os.Stdin, "stdin")
	}
	return "", nil
}

func readPromptFrom(r io.Reader, name string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxPromptBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading the prompt from %s: %w", name, err)
	}
	if len(b) > maxPromptBytes {
		return "", fmt.Errorf("the prompt in %s is over %d MiB", name, maxPromptBytes>>20)
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// stdinIsData says whether stdin is a pipe or a file (not a terminal, not
// /dev/null), so a prompt piped in is read without asking for it.
func stdinIsData() bool {
	fi, err := os.Stdin.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeNamedPipe != 0 || fi.Mode().IsRegular()
}

// checkWritableDir says whether a file could be created at path, so a long
// run does not end with an output it cannot write.
func checkWritableDir(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory, not a file", path)
	}
	fi, err := os.Stat(dirOf(path))
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dirOf(path))
	}
	return nil
}

// interrupts handles SIGINT and SIGTERM until the process exits: before
// arm, the first ends the process at once; after it, the first cancels the
// context (so a generation stops at the next layer boundary) and a second
// ends the process at once. The handler is never removed: a signal that
// arrives while the report is written must not kill the process with the
// shell's code for an unhandled signal instead of ours.
type interrupts struct {
	armed atomic.Bool
	mu    sync.Mutex
	got   os.Signal
}

func catchInterrupts(parent context.Context) (context.Context, *interrupts) {
	ctx, cancel := context.WithCancel(parent)
	in := &interrupts{}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-ch
		if !in.armed.Load() {
			os.Exit(exitCode(s))
		}
		in.mu.Lock()
		in.got = s
		in.mu.Unlock()
		fmt.Fprintf(os.Stderr, "\n%s: stopping at the next layer boundary (press Ctrl-C again to quit now)\n", signalName(s))
		cancel()
		os.Exit(exitCode(<-ch))
	}()
	return ctx, in
}

// arm makes the next signal stop the generation instead of the process.
func (in *interrupts) arm() { in.armed.Store(true) }

// signal is the signal received, or nil.
func (in *interrupts) signal() os.Signal {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.got
}

// exitCode is the shell's code for death by signal s: 128 + its number.
func exitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}

func signalName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// writeFileAtomic writes through a registered temp file in the same
// directory and renames it into place (internal/atomicfile), so a failure or
// a signal never leaves a partial file, and a path that is a directory is
// refused before anything is written.
func writeFileAtomic(path string, write func(f *os.File) error) error {
	return atomicfile.Write(path, write)
}
