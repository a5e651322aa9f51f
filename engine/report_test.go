package engine

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Fatalf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestReportGolden holds the end-of-run report's fixed table.
func TestReportGolden(t *testing.T) {
	r := &Report{
		Model: "llama-3-70b", Device: "cuda:0 NVIDIA GeForce RTX 4090 (sm_89)", Mode: "sirius (griffin, keep 0.5, window 16)",
		PromptTokens: 37, GeneratedTokens: 256, PrefillSeconds: 6.2, DecodeSeconds: 716.8,
		PrefillTokPerS: 5.97, DecodeTokPerS: 0.3557, PeakRSS: 3 << 30, PeakDevice: 23 << 30, DeviceBudget: 24 << 30,
		ResidentBytes: 18 << 30, SetupBytes: 18<<30 + 12345, WastedBytes: 1 << 30, BytesPerToken: 70e9, LinkCeiling: 25.1e9,
		Phases: []PhaseReport{
			{Phase: "prefill", Passes: 1, Tokens: 37, WeightBytes: 119e9, InputBytes: 37 * 32768, OutputBytes: 513024,
				CopySeconds: 4.8, ComputeSeconds: 0.9, StallSeconds: 0.1, WallSeconds: 4.9, CopyGBps: 24.8, Overlap: 0.9},
			{Phase: "draft", Passes: 240, Tokens: 240, WeightBytes: 240 * 62e9, InputBytes: 240 * 32768, OutputBytes: 240 * 513024,
				CopySeconds: 600, ComputeSeconds: 25, StallSeconds: 1.5, WallSeconds: 602, CopyGBps: 24.8, Overlap: 0.92},
			{Phase: "check", Passes: 16, Tokens: 256, WeightBytes: 16 * 119e9, InputBytes: 256 * 32768, OutputBytes: 256 * 513024,
				CopySeconds: 76.8, ComputeSeconds: 3, StallSeconds: 0.2, WallSeconds: 77.1, CopyGBps: 24.8, Overlap: 0.9},
		},
		Sirius: &SiriusReport{Window: 16, Checks: 16, AAL: 15.94, CorrectionsPer100: 0.4, EffectiveDensity: 0.703, SparseDensity: 0.65},
		Notes:  []string{"an example note"},
	}
	golden(t, "report.golden", r.String())
}
