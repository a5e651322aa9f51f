package convert

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"offload/internal/fault"
	"offload/internal/fixtures"
	"offload/pager"
)

// TestSourceTruncatedWhileConverting: a source truncated after it was
// opened faults on the converter's worker goroutines; Convert returns
// fault.ErrFileChanged naming the file, and leaves no output or temp file.
func TestSourceTruncatedWhileConverting(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src.gguf")
	os.WriteFile(src, b, 0o644)
	m, err := pager.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := os.Truncate(src, int64(len(b)/2)); err != nil {
		t.Fatal(err)
	}
	_, err = Convert(m, filepath.Join(dir, "out.gguf"), Options{Type: "f16", Threads: 4})
	if !errors.Is(err, fault.ErrFileChanged) || !strings.Contains(err.Error(), src) {
		t.Fatalf("got %v, want ErrFileChanged naming %s", err, src)
	}
	es, _ := os.ReadDir(dir)
	if len(es) != 1 {
		t.Fatalf("left behind: %v", es)
	}
}

// TestOutputIsTheSource: converting onto the source (or a link to it) is
// refused before anything is written.
func TestOutputIsTheSource(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src.gguf")
	os.WriteFile(src, b, 0o644)
	link := filepath.Join(dir, "link.gguf")
	if err := os.Link(src, link); err != nil {
		t.Skip(err)
	}
	m, err := pager.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, out := range []string{src, link} {
		if _, err := Convert(m, out, Options{Bundle: true}); err == nil || !strings.Contains(err.Error(), "input") {
			t.Fatalf("convert onto %s: %v", out, err)
		}
	}
	if got, _ := os.ReadFile(src); string(got) != string(b) {
		t.Fatal("the source changed")
	}
}
