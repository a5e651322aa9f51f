package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"offload/engine"
	"offload/internal/fixtures"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "offload-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "offload")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestRunMatchesOracle: `offload run` prints exactly llama2.c's stdout.
func TestRunMatchesOracle(t *testing.T) {
	s := fixtures.Stories(t)
	cases := []struct {
		name, oracle string
		args         []string
	}{
		{"gguf-greedy", "oracle_stdout_once_upon_a_time_t0_n64.txt", []string{"--model", filepath.Join(s, "stories260K.gguf"), "--prompt", "Once upon a time", "-n", "60"}},
		{"bin-greedy", "oracle_stdout_once_upon_a_time_t0_n64.txt", []string{"--model", filepath.Join(s, "stories260K.bin"), "--prompt", "Once upon a time", "-n", "60"}},
		{"gguf-noprompt", "oracle_stdout_noprompt_t0_n256.txt", []string{"--model", filepath.Join(s, "stories260K.gguf"), "-n", "256"}},
		{"bin-sampled", "oracle_stdout_noprompt_t1_p0.9_s133742.txt", []string{"--model", filepath.Join(s, "stories260K.bin"), "-n", "256", "-t", "1.0", "-p", "0.9", "-s", "133742"}},
		{"gguf-streamed", "oracle_stdout_once_upon_a_time_t0_n64.txt", []string{"--model", filepath.Join(s, "stories260K.gguf"), "--prompt", "Once upon a time", "-n", "60", "--device-mem", "1MiB"}},
	}
	for _, c := range cases {
		// Strict Sirius under each window policy (adaptive is the default).
		for _, mode := range []string{"--mode=dense", "--accept=strict", "--accept=strict --window-policy=fixed"} {
			if strings.Contains(c.name, "sampled") && mode != "--mode=dense" {
				continue // sampled Sirius follows the distribution, not the same draws
			}
			t.Run(c.name+strings.ReplaceAll(mode, " ", ""), func(t *testing.T) {
				want, err := os.ReadFile(filepath.Join(s, c.oracle))
				if err != nil {
					t.Fatal(err)
				}
				out, errOut, code := runCLI(t, append(append([]string{"run", "--device", "host"}, strings.Fields(mode)...), c.args...)...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				if out != string(want) {
					t.Fatalf("stdout differs from llama2.c\n got: %q\nwant: %q", out, want)
				}
				for _, w := range []string{"prompt", "generated", "prefill", "decode", "tok/s", "peak RSS"} {
					if !strings.Contains(errOut, w) {
						t.Fatalf("report lacks %q:\n%s", w, errOut)
					}
				}
			})
		}
	}
}

func TestRunJSON(t *testing.T) {
	s := fixtures.Stories(t)
	out, errOut, code := runCLI(t, "run", "--model", filepath.Join(s, "stories260K.gguf"), "--prompt", "Once upon a time", "-n", "20", "--json", "--window", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r struct {
		Text            string `json:"text"`
		PromptTokens    int    `json:"prompt_tokens"`
		GeneratedTokens int    `json:"generated_tokens"`
		DecodeTokPerS   float64
		Sirius          *struct {
			AAL float64 `json:"aal"`
		} `json:"sirius"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if r.PromptTokens != 5 || r.GeneratedTokens != 20 || r.Sirius == nil || r.Sirius.AAL < 1 || !strings.HasPrefix(r.Text, "Once upon a time") {
		t.Fatalf("unexpected report %+v", r)
	}
}

func TestDeviceSelection(t *testing.T) {
	s := fixtures.Stories(t)
	model := filepath.Join(s, "stories260K.gguf")
	_, errOut, code := runCLI(t, "run", "--model", model, "-n", "4", "--device", "cuda", "--prompt", "Hi")
	if code == 0 {
		t.Skip("a CUDA GPU is present")
	}
	if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.Contains(errOut, "cuda") {
		t.Fatalf("--device cuda without a GPU should fail with one line, got:\n%s", errOut)
	}
	_, errOut, code = runCLI(t, "run", "--model", model, "-n", "4", "--device", "auto", "--prompt", "Hi")
	if code != 0 || !strings.Contains(errOut, "running on the host backend") {
		t.Fatalf("--device auto should fall back to host and say so (exit %d):\n%s", code, errOut)
	}
}

// TestBadInput: every kind of broken model ends in one clear line naming the
// file, a non-zero exit, and no panic.
func TestBadInput(t *testing.T) {
	s := fixtures.Stories(t)
	good, err := os.ReadFile(filepath.Join(s, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	huge := append([]byte{}, good...)
	binary.LittleEndian.PutUint64(huge[8:], 1<<60)    // tensor count
	st := append([]byte{}, 0, 0, 0, 0, 0, 0, 0x10, 0) // safetensors header length 2^60
	hfDir := filepath.Join(dir, "hf")
	os.Mkdir(hfDir, 0o755)
	hdr := `{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`
	sb := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	sb = append(append(sb, hdr...), make([]byte, 16)...)
	os.WriteFile(filepath.Join(hfDir, "model.safetensors"), sb, 0o644)
	os.WriteFile(filepath.Join(hfDir, "config.json"), []byte(`{"hidden_size": 64}`), 0o644)
	badShape := filepath.Join(dir, "badshape")
	os.Mkdir(badShape, 0o755)
	hdr2 := `{"a":{"dtype":"F32","shape":[4,4],"data_offsets":[0,16]}}`
	sb2 := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr2)))
	sb2 = append(append(sb2, hdr2...), make([]byte, 16)...)
	os.WriteFile(filepath.Join(badShape, "model.safetensors"), sb2, 0o644)
	os.WriteFile(filepath.Join(badShape, "config.json"), []byte(`{"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2}`), 0o644)
	dtype := filepath.Join(dir, "dtype")
	os.Mkdir(dtype, 0o755)
	hdr3 := `{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,2]}}`
	sb3 := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr3)))
	sb3 = append(append(sb3, hdr3...), 0, 0)
	os.WriteFile(filepath.Join(dtype, "model.safetensors"), sb3, 0o644)
	os.WriteFile(filepath.Join(dtype, "config.json"), []byte(`{}`), 0o644)
	cases := map[string]string{
		"truncated gguf":          write("trunc.gguf", good[:len(good)/2]),
		"tiny file":               write("tiny.gguf", good[:10]),
		"2^60 tensors":            write("huge.gguf", huge),
		"2^60 safetensors header": write("huge.safetensors", st),
		"missing config key":      hfDir,
		"shape mismatch":          badShape,
		"unknown dtype":           dtype,
		"missing file":            filepath.Join(dir, "nope.gguf"),
		"garbage llama2c":         write("garbage.bin", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}),
	}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			for _, cmd := range [][]string{{"run", "--model", path, "-n", "2", "--device", "host", "--tokenizer", filepath.Join(s, "tok512.bin")}, {"inspect", path}} {
				_, errOut, code := runCLI(t, cmd...)
				if code == 0 && cmd[0] == "run" {
					t.Fatalf("%s: exit 0", cmd[0])
				}
				if strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine") {
					t.Fatalf("%s panicked:\n%s", cmd[0], errOut)
				}
				if code != 0 {
					lines := strings.Split(strings.TrimSpace(errOut), "\n")
					if len(lines) != 1 || !strings.Contains(errOut, filepath.Base(path)) {
						t.Fatalf("%s: want one line naming %s, got:\n%s", cmd[0], filepath.Base(path), errOut)
					}
				}
			}
		})
	}
}

// TestLinkUnits: --link reads b as bits and B as bytes, and says what it read.
func TestLinkUnits(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	for in, want := range map[string]string{"4Gb/s": "500 MB/s", "4GB/s": "4 GB/s", "pcie4": "25 GB/s"} {
		_, errOut, code := runCLI(t, "run", "--model", model, "-n", "2", "--device", "host", "--link", in, "--prompt", "Hi")
		if code != 0 {
			t.Fatalf("--link %s: exit %d: %s", in, code, errOut)
		}
		if !strings.Contains(errOut, "pacing host->device copies at "+want+" (--link "+in+")") {
			t.Errorf("--link %s: stderr does not say %s:\n%s", in, want, errOut)
		}
	}
	_, errOut, code := runCLI(t, "run", "--model", model, "-n", "2", "--device", "host", "--link", "1B/s", "--prompt", "Hi")
	if code == 0 || !strings.Contains(errOut, "--link") {
		t.Fatalf("--link 1B/s should be refused at parse time (exit %d):\n%s", code, errOut)
	}
}

// TestPeakRSSDense: on the host backend resident weights are read in place
// from the mapping, so a dense run holds each weight once: peak RSS stays
// within 1.15 x (weight bytes + KV cache + 64 MiB).
func TestPeakRSSDense(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tl2")
	if _, errOut, code := runCLI(t, "synth", "--shape", "tinyllama-1.1b", "--layers", "2", "--vocab", "2000", "--dtype", "f16", "-o", dir); code != 0 {
		t.Fatalf("synth: %s", errOut)
	}
	st, err := os.Stat(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "run", "--model", dir, "--tokenizer", filepath.Join(fixtures.Stories(t), "tok512.bin"),
		"--device", "host", "--mode", "dense", "-n", "8", "--prompt", "Once", "--json")
	if code != 0 {
		t.Fatalf("run: %s", errOut)
	}
	var r struct {
		PeakRSS  int64 `json:"peak_rss_bytes"`
		Resident int64 `json:"resident_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	// KV cache: 2 layers x (k, v) x (prompt + 8 + window + 1) positions x 256 x 4 bytes.
	kv := int64(2 * 2 * 32 * 256 * 4)
	limit := int64(1.15 * float64(st.Size()+kv+64<<20))
	if r.PeakRSS == 0 || r.PeakRSS > limit {
		t.Fatalf("peak RSS %d, limit 1.15 x (weights %d + KV %d + 64 MiB) = %d", r.PeakRSS, st.Size(), kv, limit)
	}
	t.Logf("peak RSS %.1f MiB for %.1f MiB of weights (limit %.1f MiB)", float64(r.PeakRSS)/(1<<20), float64(st.Size())/(1<<20), float64(limit)/(1<<20))
}

// runIn is runCLI with stdin.
func runIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestPromptSources: a piped stdin, --prompt - and --file give what
// --prompt gives; a 1 MB prompt is read whole (far past the 128 KiB limit of
// one argument) and refused only for the model's context, in one line.
func TestPromptSources(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	base := []string{"run", "--model", model, "--device", "host", "-n", "24", "--mode", "dense"}
	want, errOut, code := runCLI(t, append(base, "--prompt", "Once upon a time")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "prompt.txt")
	if err := os.WriteFile(file, []byte("Once upon a time\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		stdin string
		args  []string
	}{
		"pipe":     {"Once upon a time\n", nil},
		"prompt -": {"Once upon a time", []string{"--prompt", "-"}},
		"file":     {"", []string{"--file", file}},
		"file -":   {"Once upon a time\r\n", []string{"-f", "-"}},
	} {
		got, errOut, code := runIn(t, c.stdin, append(base, c.args...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errOut)
		}
		if got != want {
			t.Errorf("%s: stdout %q, want %q (as with --prompt)", name, got, want)
		}
	}
	// Piped text does not override --prompt.
	if got, _, _ := runIn(t, "Lily", append(base, "--prompt", "Once upon a time")...); got != want {
		t.Errorf("--prompt with a pipe: %q, want %q", got, want)
	}
	if _, errOut, code := runCLI(t, append(base, "--prompt", "x", "--file", file)...); code == 0 || !strings.Contains(errOut, "--file") {
		t.Errorf("--prompt with --file should be refused (exit %d): %s", code, errOut)
	}
	big := bytes.Repeat([]byte("Once upon a time, there was a little girl named Lily. "), (1<<20)/55+1)
	bigFile := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(bigFile, big, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func() (string, string, int){
		"file":  func() (string, string, int) { return runCLI(t, append(base, "--file", bigFile)...) },
		"stdin": func() (string, string, int) { return runIn(t, string(big), base...) },
	} {
		out, errOut, code := run()
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code == 0 || out != "" || len(lines) != 1 || !strings.Contains(errOut, "the prompt has") || !strings.Contains(errOut, "2048 positions") {
			t.Fatalf("1 MB prompt via %s: want one line saying it exceeds the context (exit %d, stdout %d bytes):\n%s", name, code, len(out), errOut)
		}
		var n int
		if _, err := fmt.Sscanf(errOut[strings.Index(errOut, "the prompt has"):], "the prompt has %d tokens", &n); err != nil || n < 200000 {
			t.Fatalf("1 MB prompt via %s: %d tokens read (%v), want the whole megabyte:\n%s", name, n, err, errOut)
		}
	}
	// A long prompt that fits is prefilled in several chunks and generates.
	long := strings.Repeat("Lily saw a big red ball. ", 150) // over 512 tokens: several prefill chunks
	if err := os.WriteFile(file, []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, append(base, "--file", file)...)
	if code != 0 || !strings.HasPrefix(out, strings.TrimSpace(long)) || !strings.Contains(errOut, "generated 24") {
		t.Fatalf("long prompt from --file: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestFlagsCheckedFirst: a bad value is refused in one line naming its flag
// before the model is opened (the model path here does not exist, so a
// check that came later would fail on the model instead).
func TestFlagsCheckedFirst(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-model.gguf")
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"-t", "-1"}, "--temperature"},
		{[]string{"--temperature", "NaN"}, "--temperature"},
		{[]string{"--threshold", "2"}, "--threshold"},
		{[]string{"-p", "1.5"}, "--top-p"},
		{[]string{"-p", "-1"}, "--top-p"},
		{[]string{"-p", "0"}, "--top-p"},
		{[]string{"--ctx", "-1"}, "--ctx"},
		{[]string{"--ctx", "0"}, "--ctx"},
		{[]string{"--stop", ""}, "--stop"},
		{[]string{"-n", "0"}, "-n"},
		{[]string{"--window", "1"}, "--window"},
		{[]string{"--width", "0"}, "--width"},
		{[]string{"--keep", "1.5"}, "--keep"},
		{[]string{"--threads", "-1"}, "--threads"},
		{[]string{"--threads", "0"}, "--threads"},
		{[]string{"--mode", "fast"}, "--mode"},
		{[]string{"--device", "tpu"}, "--device"},
		{[]string{"--device-mem", "lots"}, "--device-mem"},
		{[]string{"--file", filepath.Join(t.TempDir(), "none.txt")}, "--file"},
		{[]string{"--trace", filepath.Join(t.TempDir(), "sub", "t.json")}, "--trace"},
	}
	for _, c := range cases {
		args := append([]string{"run", "--model", missing, "--prompt", "Hi"}, c.args...)
		out, errOut, code := runCLI(t, args...)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code == 0 || out != "" || len(lines) != 1 || !strings.Contains(errOut, c.flag) || strings.Contains(errOut, "no-such-model") {
			t.Errorf("run %v: want one line naming %s before the model is opened (exit %d):\n%s", c.args, c.flag, code, errOut)
		}
	}
	// bench and eval share the checks.
	for _, args := range [][]string{{"bench", "--model", missing, "-p", "2"}, {"bench", "--model", missing, "--repeat", "0"},
		{"bench", "--model", missing, "--modes", "sirius-width=0"}, {"bench", "--model", missing, "--modes", "sirius-fixed=x"},
		{"bench", "--model", missing, "--modes", "sirius-width=2,sirius-width=2"},
		{"eval", "--model", missing, "--prompts", missing, "--threshold", "-1"}} {
		_, errOut, code := runCLI(t, args...)
		if code == 0 || strings.Contains(errOut, "no-such-model") || len(strings.Split(strings.TrimSpace(errOut), "\n")) != 1 {
			t.Errorf("%v: want a one-line flag error first (exit %d):\n%s", args, code, errOut)
		}
	}
}

// TestKVCacheNotes: the report says the KV cache stopped the generation
// only when it did, and says when --ctx was capped.
func TestKVCacheNotes(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	base := []string{"run", "--model", model, "--device", "host", "--prompt", "Once upon a time", "--json"}
	type report struct {
		Finish          string   `json:"finish"`
		GeneratedTokens int      `json:"generated_tokens"`
		Notes           []string `json:"notes"`
	}
	get := func(args ...string) report {
		t.Helper()
		out, errOut, code := runCLI(t, append(base, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// stories260K ends its story (end of text) long before 2048 positions.
	r := get("-n", "100000", "--ctx", "100000", "--mode", "dense")
	notes := strings.Join(r.Notes, "\n")
	if r.Finish != "stop" || r.GeneratedTokens >= 2000 || strings.Contains(notes, "generation stopped at") ||
		!strings.Contains(notes, "end of text") || !strings.Contains(notes, "--ctx 100000 is above the model's context of 2048 positions: capped") {
		t.Errorf("-n 100000 --ctx 100000: finish %q after %d tokens, notes:\n%s", r.Finish, r.GeneratedTokens, notes)
	}
	// A small cache does stop it, and says so.
	r = get("-n", "1000", "--ctx", "40", "--mode", "dense")
	notes = strings.Join(r.Notes, "\n")
	if r.Finish != "length" || !strings.Contains(notes, "the KV cache holds 40 positions: generation stopped at") || strings.Contains(notes, "capped") {
		t.Errorf("-n 1000 --ctx 40: finish %q, notes:\n%s", r.Finish, notes)
	}
}

// TestInterrupt: SIGINT or SIGTERM stops the generation at a layer
// boundary; the report is printed, --trace and --json are written, and the
// exit code says which signal (130, 143). A second SIGINT quits at once.
func TestInterrupt(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	// Paced copies of streamed layers make each token slow, so the signal
	// arrives mid-generation; stories260K would end its text first otherwise.
	slow := []string{"run", "--model", model, "--device", "host", "--device-mem", "4MiB", "--link", "20MB/s", "-n", "2000", "--prompt", "Once upon a time"}
	start := func(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
		t.Helper()
		cmd := exec.Command(bin, append(slow, args...)...)
		o, e := &syncBuffer{}, &syncBuffer{}
		cmd.Stdout, cmd.Stderr = o, e
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd, o, e
	}
	waitFor := func(t *testing.T, b *syncBuffer, what string) {
		t.Helper()
		for i := 0; i < 6000 && !strings.Contains(b.String(), what); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(b.String(), what) {
			t.Fatalf("no %q in the output after a minute:\n%s", what, b.String())
		}
	}
	exit := func(cmd *exec.Cmd) int {
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	t.Run("SIGINT", func(t *testing.T) {
		trace := filepath.Join(t.TempDir(), "trace.json")
		cmd, o, e := start(t, "--trace", trace)
		waitFor(t, o, "Once upon a time,") // the prompt, then generated text
		cmd.Process.Signal(syscall.SIGINT)
		if code := exit(cmd); code != 130 {
			t.Fatalf("exit %d, want 130\n%s", code, e.String())
		}
		for _, w := range []string{"tokens     prompt 5, generated", "phase    passes", "interrupted by SIGINT"} {
			if !strings.Contains(e.String(), w) {
				t.Fatalf("report lacks %q:\n%s", w, e.String())
			}
		}
		if strings.Contains(e.String(), "generated 2000") {
			t.Fatalf("the generation was not interrupted:\n%s", e.String())
		}
		b, err := os.ReadFile(trace)
		if err != nil {
			t.Fatal(err)
		}
		var tr struct{ TraceEvents []map[string]any }
		if err := json.Unmarshal(b, &tr); err != nil || len(tr.TraceEvents) < 4 {
			t.Fatalf("trace: %v, %d events", err, len(tr.TraceEvents))
		}
		if !strings.HasSuffix(o.String(), "\n") {
			t.Errorf("stdout does not end its line: %q", o.String())
		}
	})
	t.Run("SIGTERM-json", func(t *testing.T) {
		cmd, _, e := start(t, "--json", "--plan")
		waitFor(t, e, "residency plan") // printed when generation is about to start (--json prints no text as it goes)
		cmd.Process.Signal(syscall.SIGTERM)
		if code := exit(cmd); code != 143 {
			t.Fatalf("exit %d, want 143\n%s", code, e.String())
		}
		var r struct {
			Finish          string   `json:"finish"`
			GeneratedTokens int      `json:"generated_tokens"`
			Notes           []string `json:"notes"`
		}
		out := cmd.Stdout.(*syncBuffer).String()
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, out)
		}
		if r.Finish != "cancelled" || !strings.Contains(strings.Join(r.Notes, "\n"), "interrupted by SIGTERM") {
			t.Fatalf("finish %q, notes %q", r.Finish, r.Notes)
		}
	})
	t.Run("second SIGINT", func(t *testing.T) {
		cmd, o, e := start(t)
		waitFor(t, o, "Once upon a time,")
		cmd.Process.Signal(syscall.SIGINT)
		waitFor(t, e, "again to quit now")
		cmd.Process.Signal(syscall.SIGINT)
		if code := exit(cmd); code != 130 {
			t.Fatalf("exit %d, want 130\n%s", code, e.String())
		}
	})
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestThreads: --threads reaches the host backend (its name says how many
// threads it computes with).
func TestThreads(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	_, errOut, code := runCLI(t, "run", "--model", model, "--device", "host", "-n", "4", "--prompt", "Hi", "--threads", "1")
	if code != 0 || !strings.Contains(errOut, "device     host (1 threads") {
		t.Fatalf("--threads 1 (exit %d):\n%s", code, errOut)
	}
}

// TestVersion: --version names the module version and the commit the
// toolchain stamped into the binary (or says it has none).
func TestVersion(t *testing.T) {
	out, errOut, code := runCLI(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "offload version ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("exit %d: %q %s", code, out, errOut)
	}
	meta, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := ""
	for _, line := range strings.Split(string(meta), "\n") {
		if r, ok := strings.CutPrefix(strings.TrimSpace(line), "build\tvcs.revision="); ok {
			rev = r
		}
	}
	if rev != "" && !strings.Contains(out, "commit "+rev[:12]) || rev == "" && !strings.Contains(out, "commit unknown") {
		t.Fatalf("--version %q does not match the binary's stamp (vcs.revision %q)", out, rev)
	}
}

func TestVersionString(t *testing.T) {
	for _, c := range []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}},
			"v1.2.3, commit 0123456789ab with local changes (2026-01-02T03:04:05Z), go1.26.8"},
		{debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"(devel), commit unknown (built outside a git checkout, or with -buildvcs=false), go1.26.8"},
	} {
		if got := versionOf(&c.bi); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

// TestSuggestions: a mistyped command or flag is refused in one line that
// suggests the near miss (and nothing for a name that resembles nothing).
func TestSuggestions(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rnu"}, `no command "rnu"; did you mean run?`},
		{[]string{"bnech"}, `did you mean bench?`},
		{[]string{"run", "--promt", "x"}, "unknown flag --promt; did you mean --prompt?"},
		{[]string{"bench", "--repaet", "2"}, "unknown flag --repaet; did you mean --repeat?"},
		{[]string{"--versoin"}, "unknown flag --versoin; did you mean --version?"},
		{[]string{"run", "--zzzzzz"}, "unknown flag --zzzzzz (see offload run --help)"},
		{[]string{"qqqq"}, `no command "qqqq" (see offload --help)`},
	} {
		out, errOut, code := runCLI(t, c.args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want one line with %q", c.args, code, out, errOut, c.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
		near bool
	}{
		{"rnu", "run", 1, true}, {"promt", "prompt", 1, true}, {"versoin", "version", 1, true},
		{"tread", "threads", 2, true}, {"zzzzzz", "json", 6, false}, {"x", "n", 1, false}, {"", "run", 3, false},
		{"modle", "model", 1, true},
	} {
		if d := editDistance(c.a, c.b); d != c.d || nearMiss(c.a, c.b) != c.near {
			t.Errorf("%q %q: distance %d near %v, want %d %v", c.a, c.b, d, nearMiss(c.a, c.b), c.d, c.near)
		}
	}
}

// TestHelpTexts: every command's help has its usage line, one default per
// flag at most, and flag names followed by a one-word placeholder (a
// backquoted phrase in a usage string becomes the placeholder, which once
// printed "--json offload plan --measured").
func TestHelpTexts(t *testing.T) {
	flagLine := regexp.MustCompile(`^   (-{1,2}[a-z0-9-]+( [A-Za-z]+)?)(, -{1,2}[a-z0-9-]+( [A-Za-z]+)?)*( \[ .* \])?  +\S`)
	app := newApp()
	for _, cmd := range app.Commands {
		out, errOut, code := runCLI(t, cmd.Name, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d: %s", cmd.Name, code, errOut)
		}
		if !strings.Contains(out, "USAGE:\n   offload "+cmd.Name+" [command options]") {
			t.Errorf("%s --help: usage line wrong:\n%s", cmd.Name, out)
		}
		_, opts, _ := strings.Cut(out, "OPTIONS:\n")
		for _, line := range strings.Split(strings.TrimRight(opts, "\n"), "\n") {
			if strings.Count(line, "(default") > 1 || strings.Contains(line, "(default: false)") {
				t.Errorf("%s --help: doubled or empty default: %s", cmd.Name, line)
			}
			if !flagLine.MatchString(line) {
				t.Errorf("%s --help: garbled flag line: %q", cmd.Name, line)
			}
		}
	}
}

// TestNoProgressFramesInLogs: progress bars are drawn only on a terminal;
// a log (here a pipe) gets no \r frames.
func TestNoProgressFramesInLogs(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	out := filepath.Join(t.TempDir(), "bundled.gguf")
	_, errOut, code := runCLI(t, "convert", "--model", model, "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(errOut, "\r") || !strings.Contains(errOut, "wrote "+out) {
		t.Fatalf("convert's stderr has progress frames or lacks its summary: %q", errOut)
	}
	long := strings.Repeat("Lily saw a big red ball. ", 150) // several prefill chunks: the prefill bar's case
	_, errOut, code = runCLI(t, "run", "--model", model, "--device", "host", "-n", "2", "--prompt", long)
	if code != 0 || strings.Contains(errOut, "\r") {
		t.Fatalf("run's stderr (exit %d) has progress frames: %q", code, errOut)
	}
}

// TestGlossary: run --help explains the report's words, and the README
// carries the same glossary.
func TestGlossary(t *testing.T) {
	out, _, _ := runCLI(t, "run", "--help")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(engine.Glossary), "\n") {
		if !strings.Contains(out, strings.TrimSpace(line)) {
			t.Errorf("run --help lacks %q", line)
		}
	}
	if !strings.Contains(string(readme), engine.Glossary) {
		t.Errorf("README.md does not carry engine.Glossary verbatim")
	}
	for _, w := range []string{"AAL", "effective density", "exceeds 1", "stall", "overlap", "prefetched unused", "@N"} {
		if !strings.Contains(engine.Glossary, w) {
			t.Errorf("the glossary does not explain %q", w)
		}
	}
}

func TestSpread(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want spread
	}{
		{[]float64{5}, spread{5, 5, 5}},
		{[]float64{3, 1, 2}, spread{2, 1, 3}},
		{[]float64{4, 1, 3, 2}, spread{2.5, 1, 4}},
		{[]float64{9, 1, 1}, spread{1, 1, 9}}, // one slow outlier moves the mean, not the median
	} {
		if got := spreadOf(c.in); got != c.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", c.in, got, c.want)
		}
	}
	if got := (spread{0.5, 0.25, 1}).format(1, 3); got != "0.5 (0.25..1)" {
		t.Errorf("format: %q", got)
	}
	if got := (spread{2e9, 2e9, 2e9}).format(1e-9, 3); got != "2" {
		t.Errorf("format of equal samples: %q", got)
	}
}

// TestBenchSummary: a mode's row is the median of its repetitions with
// their range; a copy rate above the link ceiling is flagged as noise; modes
// whose ranges overlap are said to be unordered.
func TestBenchSummary(t *testing.T) {
	profs := []*engine.Profiler{{}, {}, {}}
	ss := []benchSample{
		{r: BenchResult{Mode: "dense", SecondsPerTok: 3, CopyGBps: 5}, prof: profs[0]},
		{r: BenchResult{Mode: "dense", SecondsPerTok: 1, CopyGBps: 7}, prof: profs[1]},
		{r: BenchResult{Mode: "dense", SecondsPerTok: 2, CopyGBps: 6}, prof: profs[2]},
	}
	r, mid := summarize(ss, 5e9)
	if r.Repeats != 3 || r.SecondsPerTok != 2 || r.SecondsPerTokMin != 1 || r.SecondsPerTokMax != 3 || r.CopyGBps != 6 || r.CopyGBpsMin != 5 || r.CopyGBpsMax != 7 {
		t.Errorf("summary %+v", r)
	}
	if mid.prof != profs[2] {
		t.Errorf("the median run's profile should be kept for --trace and plan --measured")
	}
	if !r.LinkNoise || r.LinkFraction != 1.2 {
		t.Errorf("6 GB/s against a 5 GB/s ceiling: fraction %v, noise %v", r.LinkFraction, r.LinkNoise)
	}
	if r, _ := summarize(ss, 10e9); r.LinkNoise || r.LinkFraction != 0.6 {
		t.Errorf("6 GB/s against 10 GB/s: fraction %v, noise %v", r.LinkFraction, r.LinkNoise)
	}
	rows := []BenchResult{
		{Mode: "dense", Repeats: 3, SecondsPerTokMin: 1, SecondsPerTokMax: 2},
		{Mode: "sparse", Repeats: 3, SecondsPerTokMin: 1.5, SecondsPerTokMax: 3},
		{Mode: "sirius", Repeats: 3, SecondsPerTokMin: 4, SecondsPerTokMax: 5},
	}
	notes := orderNotes(rows)
	if len(notes) != 1 || !strings.Contains(notes[0], "dense and sparse") {
		t.Errorf("order notes: %q", notes)
	}
}

// TestBenchRepeats: bench measures every mode --repeat times and prints no
// share of the link above 100% as a result.
func TestBenchRepeats(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	args := []string{"bench", "--model", model, "--device", "host", "-n", "4", "--modes", "resident,dense,sirius-width=2", "--repeat", "2"}
	out, errOut, code := runCLI(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var b struct {
		Repeats int           `json:"repeats"`
		Link    spread        `json:"link_bytes_per_s"`
		MemRead spread        `json:"memread_bytes_per_s"`
		Results []BenchResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatal(err)
	}
	if b.Repeats != 2 || len(b.Results) != 3 || !(b.Link.Min <= b.Link.Median && b.Link.Median <= b.Link.Max) ||
		!(b.MemRead.Min > 0 && b.MemRead.Min <= b.MemRead.Median && b.MemRead.Median <= b.MemRead.Max) {
		t.Fatalf("%+v", b)
	}
	// Only the resident mode reads all its weights each step: its rate
	// against the memory-read ceiling is reported, the others' is not.
	if r := b.Results[0]; r.Mode != "resident" || r.WeightGBps <= 0 || r.OfMemRead != r.WeightGBps*1e9/b.MemRead.Median {
		t.Errorf("resident: %+v", r)
	}
	if r := b.Results[1]; r.WeightGBps != 0 {
		t.Errorf("dense: a weight read rate for a streamed mode: %+v", r)
	}
	for _, r := range b.Results {
		if r.Repeats != 2 || !(r.SecondsPerTokMin <= r.SecondsPerTok && r.SecondsPerTok <= r.SecondsPerTokMax) || r.LinkNoise != (r.LinkFraction > 1) || !(r.PrefillTokPerS > 0) {
			t.Errorf("%s: %+v", r.Mode, r)
		}
	}
	if n := strings.Count(errOut, "bench: round"); n != 6 {
		t.Errorf("%d runs, want 3 modes x 2 rounds:\n%s", n, errOut)
	}
	out, errOut, code = runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pct := regexp.MustCompile(`(\d+)%`)
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "dense ") && !strings.HasPrefix(line, "sirius-width=2 ") {
			continue
		}
		for _, m := range pct.FindAllStringSubmatch(line, -1) {
			if v, _ := strconv.Atoi(m[1]); v > 100 {
				t.Errorf("a share above 100%% printed as a result: %s", line)
			}
		}
		if strings.Contains(line, ">100%*") && !strings.Contains(out, "measurement noise") {
			t.Errorf("flag without its footnote:\n%s", out)
		}
	}
	for _, w := range []string{"memory read", "prefill t/s", "resident decode reads its", "of the memory-read ceiling"} {
		if !strings.Contains(out, w) {
			t.Errorf("no %q in:\n%s", w, out)
		}
	}
}

// TestTraceDirAndHugeWindow: a --trace path that is a directory is refused
// before anything runs (nothing left behind), and a window longer than the
// model's context is refused naming the flag and the context.
func TestTraceDirAndHugeWindow(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	dir := t.TempDir()
	_, errOut, code := runCLI(t, "run", "--model", model, "--device", "host", "-n", "4", "--trace", dir, "--json")
	if code == 0 || !strings.Contains(errOut, "--trace") || !strings.Contains(errOut, "is a directory") {
		t.Fatalf("--trace DIR: exit %d: %s", code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("--trace DIR left %v", entries)
	}
	_, errOut, code = runCLI(t, "run", "--model", model, "--device", "host", "-n", "4", "--window", "2000000000")
	if code == 0 || !strings.Contains(errOut, "--window 2000000000") || !strings.Contains(errOut, "2048 positions") {
		t.Fatalf("--window 2000000000: exit %d: %s", code, errOut)
	}
}
