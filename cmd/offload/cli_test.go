package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
		for _, mode := range []string{"--mode=dense", "--accept=strict"} {
			if strings.Contains(c.name, "sampled") && mode == "--accept=strict" {
				continue // sampled Sirius follows the distribution, not the same draws
			}
			t.Run(c.name+mode, func(t *testing.T) {
				want, err := os.ReadFile(filepath.Join(s, c.oracle))
				if err != nil {
					t.Fatal(err)
				}
				out, errOut, code := runCLI(t, append([]string{"run", "--device", "host", mode}, c.args...)...)
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
