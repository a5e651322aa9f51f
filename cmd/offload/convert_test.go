package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"offload/internal/fixtures"
)

// TestConvertQuantized: `convert --type q4_k_m` from the F32 fixture writes a
// bundled Q4_K_M file that runs; it says what it wrote, draws no progress bar
// when stderr is not a terminal, and `inspect` shows the types per tensor,
// the bundles' part types and a per-type summary with bits per weight.
func TestConvertQuantized(t *testing.T) {
	q := filepath.Join(fixtures.Shared(t), "models", "stories260K-q")
	out := filepath.Join(t.TempDir(), "q4km.gguf")
	_, stderr, code := runCLI(t, "convert", "--model", filepath.Join(q, "stories260K-pad256-F32.gguf"), "--type", "q4_k_m", "-o", out)
	if code != 0 {
		t.Fatalf("convert failed: %s", stderr)
	}
	for _, want := range []string{"wrote " + out, "Q4_K_M", "Q4_K 79%", "FFN bundles (gate|up|down) 3 x Q4_K|Q4_K|Q4_K, 2 x Q4_K|Q4_K|Q6_K"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("convert's report lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "\r") || strings.Contains(stderr, "%|") {
		t.Errorf("a progress bar was drawn on a non-terminal:\n%q", stderr)
	}
	stdout, stderr, code := runCLI(t, "inspect", out)
	if code != 0 {
		t.Fatalf("inspect: %s", stderr)
	}
	for _, want := range []string{"FFN bundled: true", "blk.2.ffn_bundle.weight   Q4_K|Q4_K|Q6_K bundle", "output.weight             Q6_K",
		"BITS/WEIGHT", "Q6_K        5    327,680  263 KiB  19.9%        6.562"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, stdout)
		}
	}
	stdout, stderr, code = runCLI(t, "run", "--model", out, "--prompt", "Once upon a time", "-n", "16")
	if code != 0 || !strings.HasPrefix(stdout, "Once upon a time") {
		t.Fatalf("run on the converted file: code %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestConvertRefusals: a bad request ends with one error and no output file.
func TestConvertRefusals(t *testing.T) {
	q := filepath.Join(fixtures.Shared(t), "models", "stories260K-q")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", filepath.Join(q, "stories260K-pad256-Q4_K_M.gguf"), "--type", "q8_0"}, "already quantized"},
		{[]string{"--model", filepath.Join(q, "stories260K-pad256-F32.gguf"), "--type", "q4_k_z"}, `unknown file type "q4_k_z"`},
		{[]string{"--model", filepath.Join(q, "stories260K-pad256-F32.gguf"), "--pure"}, "--pure needs --type"},
		{[]string{"--model", filepath.Join(q, "stories260K-pad256-Q4_K_M.gguf"), "--bundle-down", "q7"}, `--bundle-down "q7"`},
	} {
		_, stderr, code := runCLI(t, append(append([]string{"convert"}, c.args...), "-o", out)...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: code %d, stderr %q, want %q", c.args, code, stderr, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left behind: %v", ents)
	}
}

// TestEvalReference: `eval --reference` measures a converted file against
// the file it came from: a file is its own perfect reference, and bundling
// with exact (F32) down columns changes no dense token.
func TestEvalReference(t *testing.T) {
	q := filepath.Join(fixtures.Shared(t), "models", "stories260K-q")
	src := filepath.Join(q, "stories260K-pad256-Q4_K_M.gguf")
	dir := t.TempDir()
	exact := filepath.Join(dir, "exact.gguf")
	if _, stderr, code := runCLI(t, "convert", "--model", src, "--bundle-down", "f32", "-o", exact); code != 0 {
		t.Fatal(stderr)
	}
	prompts := filepath.Join(dir, "p.txt")
	if err := os.WriteFile(prompts, []byte("Once upon a time\nOne day\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(fixtures.Stories(t), "tok512.bin")
	for _, m := range []string{src, exact} {
		stdout, stderr, code := runCLI(t, "eval", "--model", m, "--reference", src, "--tokenizer", tok, "--prompts", prompts, "-n", "24", "--device", "host", "--json")
		if code != 0 {
			t.Fatalf("eval: %s", stderr)
		}
		var out struct {
			Reference string `json:"reference"`
			Mean      struct {
				DenseAgree float64 `json:"dense_agree"`
				DenseNLL   float64 `json:"dense_nll"`
				RefNLL     float64 `json:"reference_nll"`
			} `json:"mean"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		if out.Reference == "" || out.Mean.DenseAgree != 1 || out.Mean.DenseNLL != out.Mean.RefNLL || out.Mean.RefNLL <= 0 {
			t.Errorf("%s against %s: %+v", filepath.Base(m), filepath.Base(src), out)
		}
	}
}
