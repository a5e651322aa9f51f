package atomicfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteCommitsAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	if err := Write(p, func(f *os.File) error { _, err := f.WriteString("new"); return err }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := Write(p, func(f *os.File) error { f.WriteString("partial"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	func() { // a panic in the body removes the temp file too
		defer func() { recover() }()
		_ = Write(p, func(f *os.File) error { panic("fault") })
	}()
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("out = %q, want the committed contents", b)
	}
	if got := names(t, dir); len(got) != 1 || Live() != 0 {
		t.Fatalf("left behind: %v (%d registered)", got, Live())
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestDirectoryRefused(t *testing.T) {
	dir := t.TempDir()
	err := Write(dir, func(*os.File) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("got %v", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}
}

// TestCleanStale: temp files of a dead writer are removed by the next
// write into the directory; those of live processes stay.
func TestCleanStale(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	dead := cmd.Process.Pid // exited and reaped
	stale := filepath.Join(dir, ".model.gguf"+tmpMarker+strconv.Itoa(dead)+"-123")
	mine := filepath.Join(dir, ".other.gguf"+tmpMarker+strconv.Itoa(os.Getpid())+"-456")
	foreign := filepath.Join(dir, ".model.gguf.tmp-789") // not ours: never touched
	for _, p := range []string{stale, mine, foreign} {
		os.WriteFile(p, []byte("x"), 0o600)
	}
	if err := Write(filepath.Join(dir, "model.gguf"), func(*os.File) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{stale: false, mine: true, foreign: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

func TestRemoveAll(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := RemoveAll(); len(got) != 1 || got[0] != f.tmp {
		t.Fatalf("removed %v", got)
	}
	if _, err := Create(filepath.Join(dir, "b")); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Create after RemoveAll: %v", err)
	}
	if err := f.Commit(false); err == nil {
		t.Fatal("commit of a removed temp file succeeded")
	}
	if got := names(t, dir); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}
	mu.Lock()
	stopped = false
	mu.Unlock()
}

func TestSameFile(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.gguf")
	os.WriteFile(in, []byte("x"), 0o644)
	hard := filepath.Join(dir, "hard.gguf")
	sym := filepath.Join(dir, "sym.gguf")
	if err := os.Link(in, hard); err != nil {
		t.Skip(err)
	}
	os.Symlink(in, sym)
	for _, out := range []string{in, hard, sym, filepath.Join(dir, ".", "in.gguf")} {
		if err := SameFile(out, in); err == nil {
			t.Errorf("%s: not refused", out)
		}
	}
	if err := SameFile(filepath.Join(dir, "new.gguf"), in); err != nil {
		t.Errorf("a new file refused: %v", err)
	}
}

// TestOnSignal: a SIGINT that arrives while a temp file exists removes it
// and calls the exit function with the signal.
func TestOnSignal(t *testing.T) {
	type call struct {
		sig     os.Signal
		removed []string
	}
	got := make(chan call, 1)
	OnSignal(func(sig os.Signal, removed []string) { got <- call{sig, removed} })
	f, err := Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	c := <-got
	if c.sig != syscall.SIGINT || len(c.removed) != 1 || c.removed[0] != f.tmp {
		t.Fatalf("exit called with %v %v", c.sig, c.removed)
	}
	if _, err := os.Stat(f.tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file still there: %v", err)
	}
	mu.Lock()
	stopped = false
	mu.Unlock()
}
