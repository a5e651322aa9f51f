package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"offload/internal/fixtures"
)

// TestServe starts `offload serve` on a loopback port and drives it with the
// official OpenAI client: a completion whose greedy text equals `offload run
// --mode dense`, a chat completion, a streamed chat completion whose deltas
// add up to the same text as the unstreamed one (same seed), the model list;
// SIGTERM then stops the server cleanly.
func TestServe(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	cmd := exec.Command(bin, "serve", "--model", model, "--device", "host", "--mode", "dense", "--port", "0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := make(chan string, 1)
	var logs bytes.Buffer
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`on (http://[0-9.:]+) `)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var base string
	select {
	case base = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not say where it listens")
	}
	client := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	want, errOut, code := runCLI(t, "run", "--model", model, "--device", "host", "--mode", "dense", "--prompt", "Once upon a time", "-n", "40")
	if code != 0 {
		t.Fatalf("run: %s", errOut)
	}
	comp, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: "stories260K.gguf",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")}, MaxTokens: openai.Int(40), Temperature: openai.Float(0)})
	if err != nil {
		t.Fatal(err)
	}
	if got := "Once upon a time" + comp.Choices[0].Text + "\n"; got != want {
		t.Errorf("greedy completion over HTTP differs from run --mode dense:\n http %q\n run  %q", got, want)
	}
	if comp.Usage.PromptTokens != 5 || comp.Usage.CompletionTokens != 40 {
		t.Errorf("usage %+v", comp.Usage)
	}
	params := openai.ChatCompletionNewParams{Model: "stories260K.gguf", Seed: openai.Int(7), MaxTokens: openai.Int(30), Temperature: openai.Float(0.8),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story about a cat.")}}
	full, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var deltas strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			deltas.WriteString(ch.Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if deltas.String() != full.Choices[0].Message.Content || deltas.Len() == 0 {
		t.Errorf("streamed deltas %q differ from the unstreamed answer %q", deltas.String(), full.Choices[0].Message.Content)
	}
	models, err := client.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "stories260K.gguf" {
		t.Errorf("models: %+v, %v", models, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			mu.Lock()
			t.Errorf("serve exited with %v after SIGTERM:\n%s", err, logs.String())
			mu.Unlock()
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}

// TestChatTerminal runs `offload chat` on a pseudo-terminal as a user would:
// it answers, Ctrl-C stops an answer without ending the program, /exit ends
// it with status 0.
func TestChatTerminal(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	cmd := exec.Command(bin, "chat", "--model", model, "--device", "host", "-n", "2000", "--temperature", "1")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer tty.Close()
	defer cmd.Process.Kill()
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
	waitFor := func(from int, s string) int {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			o := out.String()
			mu.Unlock()
			if i := strings.Index(o[min(from, len(o)):], s); i >= 0 {
				return from + i + len(s)
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %q in the terminal after byte %d:\n%q", s, from, out.String())
		return 0
	}
	pos := waitFor(0, "> ")
	io.WriteString(tty, "Tell me a long story\r")
	time.Sleep(300 * time.Millisecond) // let the answer start
	io.WriteString(tty, "\x03")        // Ctrl-C
	pos = waitFor(pos, "> ")
	io.WriteString(tty, "/report\r")
	pos = waitFor(pos, "tokens")
	io.WriteString(tty, "/exit\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("chat ended with %v:\n%q", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("chat did not exit:\n%q", out.String())
	}
}
