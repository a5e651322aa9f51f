// Package testdata finds the read-only fixtures in ../shared (beside the
// repository root) for tests in any package.
package testdata

import (
	"os"
	"path/filepath"
	"testing"
)

// Shared returns the path of the shared fixtures directory, or skips the
// test when it is absent (CI always has it; set OFFLOAD_SHARED to override).
func Shared(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("OFFLOAD_SHARED"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			s := filepath.Join(dir, "..", "shared")
			if _, err := os.Stat(s); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("shared fixtures missing at %s", s)
				}
				t.Skipf("shared fixtures not found at %s", s)
			}
			return s
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("no go.mod above the test directory")
		}
		dir = parent
	}
}

// Stories returns the stories260K directory.
func Stories(t testing.TB) string { return filepath.Join(Shared(t), "models", "stories260K") }
