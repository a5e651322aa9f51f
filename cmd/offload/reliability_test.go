package main

// The reliability suite: every class of bad input, flag, signal or fault
// that once crashed, hung, printed garbage or lost a file is reproduced
// against the built binary. Each case runs under a timeout and asserts what
// a user must see: a non-zero exit with one clear error naming the file or
// flag, no Go panic or fatal runtime error, bounded memory (the child's
// peak RSS from wait4's rusage), no file left behind and the inputs
// untouched. Bad files are built here from the good fixture; the huge ones
// are sparse and cost no disk.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"offload/internal/fixtures"
	"offload/internal/ggufedit"
)

// The child's peak RSS cannot be read from the rusage wait4 gives the test:
// Go starts children with vfork, and the kernel records the parent's peak as
// the child's when it execs. So each child is started by a small reaper (this
// test binary re-run with reaperEnv set, whose own RSS is a few MB): it runs
// the command, forwards SIGINT and SIGTERM to it, and writes the command's
// rusage peak and exit status to fd 3. The command gets SIGKILL if the
// reaper dies (the test's timeout).
const reaperEnv = "OFFLOAD_TEST_REAPER"

func init() {
	if os.Getenv(reaperEnv) == "" {
		return
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, reaperEnv+"=") })
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		os.Exit(125)
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	cmd.Wait()
	st := cmd.ProcessState
	sig := 0
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig = int(ws.Signal())
	}
	var rss int64
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10 // kilobytes on Linux
	}
	fmt.Fprintf(os.NewFile(3, "report"), "%d %d %d\n", rss, st.ExitCode(), sig)
	os.Exit(0)
}

// result is what a finished child did.
type result struct {
	stdout, stderr string
	code           int  // exit code (-1 when killed by a signal)
	sig            int  // the signal that killed it, or 0
	hung           bool // killed by the test's timeout
	rss            int64
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (signal %d, hung %v) after %v, peak RSS %d MiB\nstderr:\n%s", r.code, r.sig, r.hung, r.took.Round(time.Millisecond), r.rss>>20, r.stderr)
}

// proc is a started child (its reaper).
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
	out            io.ReadCloser // stdout, when started with a pipe
	report         *os.File      // the reaper's fd 3
	cancel         context.CancelFunc
	start          time.Time
	ctx            context.Context
}

// startCLI starts the binary (through the reaper) under a timeout. With
// pipe set, stdout is a pipe the caller reads (to act once the child is
// under way).
func startCLI(t *testing.T, timeout time.Duration, pipe bool, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, self, append([]string{bin}, args...)...)
	cmd.Env = append(os.Environ(), reaperEnv+"=1")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{w}
	p := &proc{cmd: cmd, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, report: r, cancel: cancel, ctx: ctx, start: time.Now()}
	cmd.Stderr = p.stderr
	if pipe {
		if p.out, err = cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
	} else {
		cmd.Stdout = p.stdout
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	w.Close()
	return p
}

// waitFor reads the child's stdout pipe until it has printed want.
func (p *proc) waitFor(t *testing.T, want string) {
	t.Helper()
	buf := make([]byte, 4096)
	for !strings.Contains(p.stdout.String(), want) {
		n, err := p.out.Read(buf)
		p.stdout.Write(buf[:n])
		if err != nil {
			t.Fatalf("stdout ended before %q: %v\n%s", want, err, p.stderr)
		}
	}
}

// signal sends sig to the command (the reaper forwards it).
func (p *proc) signal(sig os.Signal) { p.cmd.Process.Signal(sig) }

func (p *proc) wait(t *testing.T) result {
	t.Helper()
	if p.out != nil {
		io.Copy(p.stdout, p.out)
	}
	werr := p.cmd.Wait()
	r := result{stdout: p.stdout.String(), stderr: p.stderr.String(), took: time.Since(p.start),
		hung: errors.Is(p.ctx.Err(), context.DeadlineExceeded)}
	p.cancel()
	rep, _ := io.ReadAll(p.report)
	p.report.Close()
	if _, err := fmt.Sscanf(string(rep), "%d %d %d", &r.rss, &r.code, &r.sig); err != nil {
		// The reaper itself was killed (the timeout, or SIGKILL, which it
		// cannot forward: the command then died of Pdeathsig).
		r.code = -1
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.sig = int(ws.Signal())
		} else if !r.hung {
			t.Fatalf("no report from the reaper (%v): %v\n%s", werr, err, r.stderr)
		}
	}
	return r
}

func runLimited(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	return startCLI(t, timeout, false, args...).wait(t)
}

// crashMarks are what a Go panic, a fatal runtime error or a fatal signal
// print.
var crashMarks = []string{"panic:", "goroutine ", "fatal error:", "SIGBUS", "SIGSEGV", "[signal", "runtime error", "unexpected fault address"}

// cleanError asserts r is a clean failure: it finished in time, exited
// non-zero without crashing, with exactly one "offload:" line, the last,
// naming every fragment in names.
func cleanError(t *testing.T, r result, names ...string) {
	t.Helper()
	if r.hung {
		t.Fatalf("hung (killed after %v)\n%v", r.took, r)
	}
	if r.code == 0 || r.sig != 0 {
		t.Fatalf("want a non-zero exit, got %v", r)
	}
	for _, m := range crashMarks {
		if strings.Contains(r.stderr, m) {
			t.Fatalf("crashed (%q in stderr): %v", m, r)
		}
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "offload: ") {
			n++
		}
	}
	if n != 1 || !strings.HasPrefix(last, "offload: ") {
		t.Fatalf("want one error line, last: %v", r)
	}
	for _, name := range names {
		if !strings.Contains(last, name) {
			t.Fatalf("error does not name %q: %s", name, last)
		}
	}
	t.Logf("exit %d in %v, peak RSS %.1f MiB: %s", r.code, r.took.Round(time.Millisecond), float64(r.rss)/mib, last)
}

// fileState is what "untouched" compares: size, mtime, inode and, for
// files small enough to read, a hash.
type fileState struct {
	size  int64
	mtime time.Time
	ino   uint64
	sum   [32]byte
}

// snapshot records every file under dir.
func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		st := fileState{size: info.Size(), mtime: info.ModTime()}
		if s, ok := info.Sys().(*syscall.Stat_t); ok {
			st.ino = s.Ino
		}
		if info.Mode().IsRegular() && info.Size() < 64<<20 {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			st.sum = sha256.Sum256(b)
		}
		out[p] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameFiles asserts dir holds exactly the files it held before, unchanged.
func sameFiles(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	var extra, changed []string
	for p, a := range after {
		b, ok := before[p]
		switch {
		case !ok:
			extra = append(extra, p)
		case a != b:
			changed = append(changed, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			changed = append(changed, p+" (removed)")
		}
	}
	sort.Strings(extra)
	sort.Strings(changed)
	if len(extra) > 0 {
		t.Errorf("files left behind: %v", extra)
	}
	if len(changed) > 0 {
		t.Errorf("inputs changed: %v", changed)
	}
}

// storiesCopy copies a stories260K fixture file into dir.
func storiesCopy(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures.Stories(t), name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sparseFile writes head and extends the file to size with a hole.
func sparseFile(t *testing.T, path string, head []byte, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Skip("sparse files:", err)
	}
	return path
}

// ggufHead is a GGUF v3 header with one metadata array of n elements of
// GGUF type et (no tensors).
func ggufHead(et uint32, n uint64) []byte {
	b := append([]byte("GGUF"), 3, 0, 0, 0)
	b = binary.LittleEndian.AppendUint64(b, 0) // tensors
	b = binary.LittleEndian.AppendUint64(b, 1) // metadata
	key := "tokenizer.ggml.tokens"
	b = binary.LittleEndian.AppendUint64(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.LittleEndian.AppendUint32(b, 9) // array
	b = binary.LittleEndian.AppendUint32(b, et)
	return binary.LittleEndian.AppendUint64(b, n)
}

const mib = 1 << 20

// TestReliabilityHeaders: headers whose counts promise more than any real
// file (sparse files that can hold the count's bytes) fail at once, naming
// the file, and `inspect` stays under 64 MiB of peak RSS.
func TestReliabilityHeaders(t *testing.T) {
	dir := t.TempDir()
	s := fixtures.Stories(t)
	hf := filepath.Join(dir, "hf")
	os.Mkdir(hf, 0o755)
	os.WriteFile(filepath.Join(hf, "config.json"), []byte(`{"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":32}`), 0o644)
	meta := `{"__metadata__":{"x":"` + strings.Repeat("a", 15*mib) + `"}}`
	st := binary.LittleEndian.AppendUint64(nil, uint64(len(meta)))
	os.WriteFile(filepath.Join(hf, "model.safetensors"), append(st, meta...), 0o644)
	l2c := make([]byte, 28)
	for i, v := range []int32{4096, 11008, 1024, 32, 32, 1 << 22, 1 << 22} {
		binary.LittleEndian.PutUint32(l2c[4*i:], uint32(v))
	}
	cases := []struct {
		name, path string
	}{
		{"gguf 2^31-1 strings", sparseFile(t, filepath.Join(dir, "strings.gguf"), ggufHead(8, 1<<31-1), 16<<30+4096)},
		{"gguf 1 GiB byte array", sparseFile(t, filepath.Join(dir, "bytes.gguf"), ggufHead(0, 1<<30), 1<<30+4096)},
		{"gguf 2^26 nested arrays", sparseFile(t, filepath.Join(dir, "nested.gguf"), ggufHead(9, 1<<26), 1<<30)},
		{"safetensors 15 MiB metadata", filepath.Join(hf, "model.safetensors")},
		{"llama2c 1024 layers of 4096", sparseFile(t, filepath.Join(dir, "huge.bin"), l2c, 1<<34)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, dir)
			r := runLimited(t, 30*time.Second, "inspect", c.path)
			cleanError(t, r, c.path)
			t.Logf("inspect: %v, peak RSS %.1f MiB", r.took.Round(time.Millisecond), float64(r.rss)/mib)
			if r.rss > 64*mib {
				t.Errorf("inspect peak RSS %d MiB, want < 64", r.rss>>20)
			}
			r = runLimited(t, 30*time.Second, "run", "--device", "host", "--model", c.path, "--tokenizer", filepath.Join(s, "tok512.bin"), "-n", "2")
			cleanError(t, r, c.path)
			if r.rss > 64*mib {
				t.Errorf("run peak RSS %d MiB, want < 64", r.rss>>20)
			}
			sameFiles(t, before, snapshot(t, dir))
		})
	}
}

// TestReliabilityHeadersNearLimit: the largest metadata the GGUF parser
// accepts (a byte array just under its 40 MiB budget of header bytes read
// plus decoded size) still keeps `inspect` under 64 MiB.
func TestReliabilityHeadersNearLimit(t *testing.T) {
	dir := t.TempDir()
	const n = 19 * mib
	path := filepath.Join(dir, "near.gguf")
	os.WriteFile(path, append(ggufHead(0, n), make([]byte, n)...), 0o644)
	r := runLimited(t, 30*time.Second, "inspect", path)
	if r.code != 0 {
		t.Fatalf("a header under the limits was refused: %v", r)
	}
	t.Logf("inspect: %v, peak RSS %.1f MiB", r.took.Round(time.Millisecond), float64(r.rss)/mib)
	if r.rss > 64*mib {
		t.Errorf("inspect peak RSS %d MiB, want < 64", r.rss>>20)
	}
}

// TestReliabilityFIFO: a named pipe as --model, --tokenizer or a model
// directory's config.json fails at once instead of blocking in open.
func TestReliabilityFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	hf := filepath.Join(dir, "hf")
	os.Mkdir(hf, 0o755)
	if err := syscall.Mkfifo(filepath.Join(hf, "config.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	model := storiesCopy(t, dir, "stories260K.gguf")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"--model", []string{"run", "--device", "host", "--model", fifo, "-n", "2"}, fifo},
		{"--tokenizer", []string{"run", "--device", "host", "--model", model, "--tokenizer", fifo, "-n", "2"}, fifo},
		{"config.json", []string{"run", "--device", "host", "--model", hf, "-n", "2"}, "config.json"},
		{"inspect", []string{"inspect", fifo}, fifo},
		{"convert", []string{"convert", "--model", fifo, "-o", filepath.Join(dir, "out.gguf")}, fifo},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, dir)
			r := runLimited(t, 20*time.Second, c.args...)
			cleanError(t, r, c.want, "named pipe")
			sameFiles(t, before, snapshot(t, dir))
		})
	}
}

// TestReliabilityNonFinite: NaN or Inf in weights, a NaN epsilon, RoPE
// theta 0 and mismatched tokenizers fail before or during the run with an
// error naming the tensor, value or file, never as <unk> text and exit 0.
func TestReliabilityNonFinite(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	edited := func(name string, meta func(map[string]any), edit ggufedit.Edit) string {
		p := filepath.Join(dir, name)
		if err := ggufedit.Rewrite(src, p, meta, edit); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nan := float32(math.NaN())
	// A llama2.c tokenizer of the first 300 of the model's 512 tokens.
	tok, err := os.ReadFile(filepath.Join(fixtures.Stories(t), "tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	off := 4
	for range 300 {
		off += 8 + int(binary.LittleEndian.Uint32(tok[off+4:]))
	}
	small := filepath.Join(dir, "tok300.bin")
	os.WriteFile(small, tok[:off], 0o644)
	large := filepath.Join(fixtures.Shared(t), "models", "llama2-tokenizer-32k", "tokenizer.bin")
	cases := []struct {
		name  string
		model string
		extra []string
		want  []string
	}{
		{"NaN weight", edited("nan.gguf", nil, ggufedit.Tensor("blk.1.ffn_gate.weight", ggufedit.SetF32(77, nan))), nil, []string{"blk.1.ffn_gate.weight", "non-finite"}},
		{"Inf weight streamed", edited("inf.gguf", nil, ggufedit.Tensor("blk.3.attn_v.weight", ggufedit.SetF32(5, float32(math.Inf(1))))),
			[]string{"--device-mem", "1MiB"}, []string{"blk.3.attn_v.weight", "non-finite"}},
		{"NaN embedding row", edited("emb.gguf", nil, ggufedit.Tensor("token_embd.weight", ggufedit.FillF32(nan))), nil, []string{"token_embd.weight", "non-finite"}},
		{"overflowing weights", edited("big.gguf", nil, ggufedit.Tensor("blk.2.ffn_down.weight", ggufedit.FillF32(3e38))), nil, []string{"non-finite in layer 2"}},
		{"NaN epsilon", edited("eps.gguf", ggufedit.Meta("llama.attention.layer_norm_rms_epsilon", nan), nil), nil, []string{"epsilon"}},
		{"RoPE theta 0", edited("theta.gguf", ggufedit.Meta("llama.rope.freq_base", float32(0)), nil), nil, []string{"RoPE theta"}},
		{"tokenizer smaller than the embedding", src, []string{"--tokenizer", small}, []string{small, "300 tokens"}},
		{"tokenizer larger than the embedding", src, []string{"--tokenizer", large}, []string{large, "32000 tokens"}},
	}
	for _, c := range cases {
		for _, mode := range []string{"dense", "sirius"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				before := snapshot(t, dir)
				args := append([]string{"run", "--device", "host", "--mode", mode, "--model", c.model, "--prompt", "Once upon a time", "-n", "8"}, c.extra...)
				r := runLimited(t, 30*time.Second, args...)
				cleanError(t, r, c.want...)
				if strings.Contains(r.stdout, "<unk>") {
					t.Errorf("printed <unk>: %q", r.stdout)
				}
				if r.rss > 128*mib {
					t.Errorf("peak RSS %d MiB", r.rss>>20)
				}
				sameFiles(t, before, snapshot(t, dir))
			})
		}
	}
}

// TestReliabilityTruncatedWhileMapped: the model file is truncated while
// `run` has it mapped, resident (embedding rows are read every token) or
// streamed: one error, "model file changed on disk while running", naming
// the file, and a clean exit.
func TestReliabilityTruncatedWhileMapped(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{
		// Pacing the copies keeps the run going long after the prompt is
		// echoed: ~2 ms per token resident, ~1 s per token streamed.
		{"resident-dense", []string{"--mode", "dense", "-n", "1500", "--link", "1MB/s"}},
		{"resident-sirius", []string{"--mode", "sirius", "-n", "1500", "--link", "1MB/s"}},
		{"streamed-sirius", []string{"--mode", "sirius", "-n", "100", "--device-mem", "1MiB", "--link", "1MB/s"}},
		{"streamed-dense-gguf", []string{"--mode", "dense", "-n", "100", "--device-mem", "1MiB", "--link", "1MB/s"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			model := storiesCopy(t, dir, "stories260K.gguf")
			args := append([]string{"run", "--device", "host", "--model", model, "--prompt", "Once upon a time"}, c.args...)
			p := startCLI(t, 60*time.Second, true, args...)
			p.waitFor(t, "Once upon a time")
			time.Sleep(50 * time.Millisecond)
			if err := os.Truncate(model, 0); err != nil {
				t.Fatal(err)
			}
			r := p.wait(t)
			cleanError(t, r, "model file changed on disk while running", model)
			if r.rss > 128*mib {
				t.Errorf("peak RSS %d MiB", r.rss>>20)
			}
		})
	}
}

// TestReliabilitySelfOverwrite: convert -o its own input (the same path, a
// hard link, a symbolic link) or a directory is refused before anything is
// written, and the input is untouched.
func TestReliabilitySelfOverwrite(t *testing.T) {
	dir := t.TempDir()
	model := storiesCopy(t, dir, "stories260K.gguf")
	hard := filepath.Join(dir, "hard.gguf")
	sym := filepath.Join(dir, "sym.gguf")
	if err := os.Link(model, hard); err != nil {
		t.Skip(err)
	}
	if err := os.Symlink(model, sym); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{model, hard, sym, filepath.Join(dir, ".", "stories260K.gguf")} {
		t.Run(filepath.Base(out), func(t *testing.T) {
			before := snapshot(t, dir)
			r := runLimited(t, 30*time.Second, "convert", "--model", model, "-o", out)
			cleanError(t, r, out, "input")
			sameFiles(t, before, snapshot(t, dir))
		})
	}
	t.Run("output is a directory", func(t *testing.T) {
		before := snapshot(t, dir)
		r := runLimited(t, 30*time.Second, "convert", "--model", model, "-o", dir)
		cleanError(t, r, dir, "directory")
		sameFiles(t, before, snapshot(t, dir))
	})
}

// bigSynth writes a synthetic model large enough that writing or
// converting it takes a while (two llama-2-7b layers in f32: ~1.6 GB,
// sparse-free but deleted with the test).
func bigSynth(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "src")
	r := runLimited(t, 5*time.Minute, "synth", "--shape", "llama-2-7b", "--layers", "1", "--vocab", "256", "--dtype", "bf16", "-o", out)
	if r.code != 0 {
		t.Fatalf("synth: %v", r)
	}
	return out
}

// waitTemp waits until a temp file of ours appears in dir.
func waitTemp(t *testing.T, p *proc, dir string) {
	t.Helper()
	for {
		es, _ := os.ReadDir(dir)
		for _, e := range es {
			if strings.Contains(e.Name(), ".offload-tmp-") {
				return
			}
		}
		if p.cmd.ProcessState != nil || p.ctx.Err() != nil {
			t.Fatalf("no temp file appeared in %s", dir)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReliabilitySignals: SIGINT or SIGTERM during synth, convert and run
// exits with 128+signal, removes the partial output, and leaves the inputs
// untouched; a temp file left by a SIGKILLed writer is removed by the next
// write into its directory.
func TestReliabilitySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: writes ~0.4 GB")
	}
	dir := t.TempDir()
	src := bigSynth(t, dir)
	model := storiesCopy(t, dir, "stories260K.gguf")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run("synth/"+sig.String(), func(t *testing.T) {
			out := filepath.Join(dir, "synth-out")
			os.Mkdir(out, 0o755)
			before := snapshot(t, dir)
			p := startCLI(t, 2*time.Minute, false, "synth", "--shape", "llama-2-7b", "--layers", "1", "--vocab", "256", "-o", out)
			waitTemp(t, p, out)
			p.signal(sig)
			r := p.wait(t)
			if r.code != 128+int(sig) || r.hung {
				t.Fatalf("want exit %d: %v", 128+int(sig), r)
			}
			if !strings.Contains(r.stderr, "removed the partial output") {
				t.Errorf("does not say it removed the partial output: %v", r)
			}
			sameFiles(t, before, snapshot(t, dir))
		})
		t.Run("convert/"+sig.String(), func(t *testing.T) {
			before := snapshot(t, dir)
			p := startCLI(t, 2*time.Minute, false, "convert", "--model", src, "-o", filepath.Join(dir, "bundled.gguf"))
			waitTemp(t, p, dir)
			p.signal(sig)
			r := p.wait(t)
			if r.code != 128+int(sig) || r.hung {
				t.Fatalf("want exit %d: %v", 128+int(sig), r)
			}
			sameFiles(t, before, snapshot(t, dir))
		})
		t.Run("run/"+sig.String(), func(t *testing.T) {
			before := snapshot(t, dir)
			p := startCLI(t, time.Minute, true, "run", "--device", "host", "--model", model, "--prompt", "Once upon a time", "-n", "1500", "--link", "1MB/s")
			p.waitFor(t, "Once upon a time")
			p.signal(sig)
			r := p.wait(t)
			if r.code == 0 || r.hung {
				t.Fatalf("want a non-zero exit: %v", r)
			}
			for _, m := range crashMarks {
				if strings.Contains(r.stderr, m) {
					t.Fatalf("crashed: %v", r)
				}
			}
			sameFiles(t, before, snapshot(t, dir))
		})
	}
	t.Run("stale temp of a SIGKILLed synth", func(t *testing.T) {
		out := filepath.Join(dir, "killed")
		os.Mkdir(out, 0o755)
		p := startCLI(t, 2*time.Minute, false, "synth", "--shape", "llama-2-7b", "--layers", "1", "--vocab", "256", "-o", out)
		waitTemp(t, p, out)
		p.signal(syscall.SIGKILL)
		p.wait(t)
		if n := len(snapshot(t, out)); n == 0 {
			t.Fatal("SIGKILL left no temp file to clean")
		}
		r := runLimited(t, 2*time.Minute, "synth", "--shape", "llama-2-7b", "--layers", "1", "--vocab", "256", "--dtype", "f16", "-o", out)
		if r.code != 0 {
			t.Fatal(r)
		}
		for p := range snapshot(t, out) {
			if strings.Contains(p, ".offload-tmp-") {
				t.Errorf("stale temp file survived the next write: %s", p)
			}
		}
	})
}

// TestReliabilityFlags: absurd flags fail at once, naming the flag, before
// anything large is allocated.
func TestReliabilityFlags(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--window", "2000000000"}, "window"},
		{[]string{"--width", "1000", "--window", "100000"}, "window"},
		{[]string{"--window", "0"}, "window"},
		{[]string{"--width", "0"}, "width"},
		{[]string{"--width", "-3"}, "width"},
		{[]string{"--link", "1B/s"}, "--link"},
		{[]string{"--link", "0.5MB/s"}, "--link"},
		{[]string{"--link", "fast"}, "--link"},
		{[]string{"--device-mem", "1B"}, "device memory"},
		{[]string{"--device-mem", "-5GiB"}, "--device-mem"},
		{[]string{"--keep", "2"}, "keep"},
		{[]string{"--threshold", "NaN"}, "threshold"},
		{[]string{"--temperature", "-1"}, "temperature"},
		{[]string{"--top-p", "0", "--temperature", "1"}, "top-p"},
		{[]string{"--mode", "warp"}, "--mode"},
		{[]string{"--sparsity", "magic"}, "--sparsity"},
		{[]string{"--device", "tpu"}, "--device"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			args := append([]string{"run", "--device", "host", "--model", model, "--prompt", "Hi", "-n", "4"}, c.args...)
			r := runLimited(t, 30*time.Second, args...)
			cleanError(t, r, c.want)
			if r.rss > 64*mib {
				t.Errorf("peak RSS %d MiB for a refused flag", r.rss>>20)
			}
		})
	}
}
