package repl

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"offload/server/servertest"
)

func backend(t testing.TB) *servertest.Backend {
	t.Helper()
	b, err := servertest.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run chats with the given input and returns the output.
func run(t *testing.T, b *servertest.Backend, cfg Config, input string) string {
	t.Helper()
	var out bytes.Buffer
	if err := Run(context.Background(), b, cfg, strings.NewReader(input), &out, nil); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestCommands(t *testing.T) {
	b := backend(t)
	b.StopAfter = 6
	out := run(t, b, Config{Seed: 1, Temperature: 0}, "/report\nhello there\n\n/report\n/frob\n/help\n/reset\nhello there\n/exit\nnot read\n")
	for _, want := range []string{
		"(no answer yet)",
		`"bytes_per_token": 1234.5`,
		"unknown command /frob; /help lists them",
		"/reset   forget the conversation",
		"(the conversation is forgotten)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b.Calls() != 2 {
		t.Errorf("%d generations, want 2", b.Calls())
	}
	// After /reset the second message is the whole conversation again: the
	// same prompt as the first gets the same greedy answer.
	answers := strings.Split(out, "> ")
	var replies []string
	for _, a := range answers {
		if a != "" && !strings.HasPrefix(a, "(") && !strings.HasPrefix(a, "{") && !strings.HasPrefix(a, "unknown") && !strings.HasPrefix(a, "Type") {
			replies = append(replies, a)
		}
	}
	if len(replies) != 2 || replies[0] != replies[1] || len(replies[0]) < 5 {
		t.Errorf("replies %q", replies)
	}
}

// TestHistoryBudget: a long chat never sends more than the context minus
// the room kept for the answer; the oldest turns go first, the system
// prompt stays.
func TestHistoryBudget(t *testing.T) {
	b := backend(t)
	b.Ctx = 200
	b.StopAfter = 8
	var in strings.Builder
	for i := range 12 {
		fmt.Fprintf(&in, "message number %d, with some words\n", i)
	}
	out := run(t, b, Config{System: "Be brief.", MaxTokens: 20}, in.String())
	if b.Calls() != 12 {
		t.Fatalf("%d answers:\n%s", b.Calls(), out)
	}
	last := b.LastRequest()
	text := b.Tok.Decode(last.Prompt)
	if len(last.Prompt) > 200-20 || last.MaxTokens != 20 {
		t.Errorf("last prompt %d tokens, max %d", len(last.Prompt), last.MaxTokens)
	}
	if !strings.Contains(text, "Be brief.") || !strings.Contains(text, "message number 11") || strings.Contains(text, "message number 0,") {
		t.Errorf("last prompt: %q", text)
	}
	// A message that cannot fit is refused, and the chat goes on.
	out = run(t, b, Config{MaxTokens: 20}, strings.Repeat("long ", 400)+"\nshort\n")
	if !strings.Contains(out, "error: the message is") || b.Calls() != 13 {
		t.Errorf("too long a message: %d calls\n%s", b.Calls(), out)
	}
}

// TestPseudoTerminal runs the chat in a child process on a pseudo-terminal,
// as a user would: Ctrl-C stops an answer (the process lives on and
// prompts again), /exit ends it with status 0.
func TestPseudoTerminal(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "OFFLOAD_REPL_CHILD="+t.TempDir())
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer tty.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	// waitFor waits until the output after position from holds s, and
	// returns the position after it.
	waitFor := func(from int, s string) int {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			o := out.String()
			mu.Unlock()
			if i := strings.Index(o[min(from, len(o)):], s); i >= 0 {
				return from + i + len(s)
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %q in the terminal after byte %d:\n%q", s, from, out.String())
		return 0
	}
	pos := waitFor(0, "> ")
	io.WriteString(tty, "tell me a story\r")
	pos = waitFor(pos, servertest.Words[3]) // the answer is being written
	io.WriteString(tty, "\x03")             // Ctrl-C
	pos = waitFor(pos, "[stopped]")
	pos = waitFor(pos, "> ")
	io.WriteString(tty, "\x03") // at the prompt: a hint, not an exit
	pos = waitFor(pos, "type /exit")
	io.WriteString(tty, "/exit\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("chat ended with %v:\n%q", err, out.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("chat did not exit:\n%q", out.String())
	}
}

// TestMain runs the chat of TestPseudoTerminal when started as its child.
func TestMain(m *testing.M) {
	if dir := os.Getenv("OFFLOAD_REPL_CHILD"); dir != "" {
		os.Exit(child(dir))
	}
	os.Exit(m.Run())
}

// child is the program TestPseudoTerminal drives: a chat with a slow model
// on the terminal, Ctrl-C delivered as SIGINT.
func child(dir string) int {
	b, err := servertest.New(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b.Delay = 20 * time.Millisecond
	b.Ctx = 100000
	ints := make(chan os.Signal, 1)
	signal.Notify(ints, os.Interrupt)
	if err := Run(context.Background(), b, Config{MaxTokens: 50000}, os.Stdin, os.Stdout, ints); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
