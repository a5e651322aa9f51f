package pager

import (
	"bytes"
	"io"
	"offload/internal/fixtures"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func storiesPath(t testing.TB, file string) string {
	return filepath.Join(fixtures.Shared(t), "models", "stories260K", file)
}

func openT(t testing.TB, path string) *Model {
	t.Helper()
	m, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantErr asserts err is non-nil and mentions every fragment.
func wantErr(t testing.TB, err error, frags ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", frags)
	}
	for _, f := range frags {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

// copyFill returns a fill function that writes the given byte slices.
func copyFill(data [][]byte) func(int, io.Writer) error {
	return func(i int, w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(data[i]))
		return err
	}
}

// dirEntries lists the names in dir.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
