package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"offload/internal/emu"
	"offload/internal/fixtures"
)

// runReport is the part of `offload run --json` these tests compare.
type runReport struct {
	Tokens []int  `json:"tokens"`
	Device string `json:"device"`
	Phases []struct {
		Phase       string `json:"phase"`
		WeightBytes int64  `json:"weight_bytes"`
	} `json:"phases"`
}

func (r runReport) weightBytes() int64 {
	var n int64
	for _, p := range r.Phases {
		n += p.WeightBytes
	}
	return n
}

// runJSON runs the CLI with env (nil: this process's) and decodes its JSON
// report; it returns the report and stderr.
// runHostAndEmu runs `offload args` on the host backend and on the
// emulated CUDA driver (env) and holds the CUDA run to the host's tokens
// (at least n of them); it returns the CUDA run's report and stderr.
func runHostAndEmu(t *testing.T, env, args []string, n int) (runReport, string) {
	t.Helper()
	host, _ := runJSON(t, nil, append(args, "--device", "host")...)
	gpu, stderr := runJSON(t, env, append(args, "--device", "cuda")...)
	if !strings.Contains(gpu.Device, "emucuda") {
		t.Fatalf("--device cuda ran on %q, not the emulator", gpu.Device)
	}
	if len(host.Tokens) < n {
		t.Fatalf("host produced %d tokens", len(host.Tokens))
	}
	if !reflect.DeepEqual(gpu.Tokens, host.Tokens) {
		t.Errorf("cuda tokens differ from host tokens\n cuda: %v\n host: %v", gpu.Tokens, host.Tokens)
	}
	return gpu, stderr
}

func runJSON(t *testing.T, env []string, args ...string) (runReport, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("offload %s: %v\n%s", strings.Join(args, " "), err, lastLines(e.String(), 20))
	}
	var r runReport
	if err := json.Unmarshal(o.Bytes(), &r); err != nil {
		t.Fatalf("offload %s: stdout is not JSON: %v\n%s", strings.Join(args, " "), err, o.String())
	}
	return r, e.String()
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// TestEmuRunMatchesHost runs `offload run --device cuda` on stories260K on
// the emulated CUDA driver (internal/emu) in dense, sparse and Sirius
// modes, with every weight resident and with a device budget small enough
// that layers stream, and holds the CUDA backend's tokens equal to the host
// backend's for the same flags. Every kernel the engine launches executes
// on the CPU, under the schedule of $EMU_SCHEDULE.
//
// Sirius runs fixed windows of 8: the adaptive policy sizes windows from
// measured pass costs, which on the emulator are nothing like a GPU's and
// vary from run to run, so it would exercise a different path each time
// (mostly dense steps). 8 rather than the default 16 because
// stories260K's sparse model drafts badly (AAL about 2), the emulator runs
// a decode step in about 80 ms, and the batched check is the same code at
// any width.
func TestEmuRunMatchesHost(t *testing.T) {
	model := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	env := append(emu.Env(t), "EMU_PROFILE=1")
	modes := []struct {
		name string
		args []string
	}{
		{"dense", []string{"--mode", "dense"}},
		{"sparse", []string{"--mode", "sparse"}},
		{"sirius", []string{"--mode", "sirius", "--window", "8", "--window-policy", "fixed"}},
	}
	mems := []struct {
		name string
		args []string
	}{
		{"resident", nil},
		// 1 MiB holds the embeddings, the KV cache and two layer slots of
		// stories260K's five layers: the others stream every pass.
		{"streamed", []string{"--device-mem", "1MiB"}},
	}
	total := emu.Profile{}
	runs := 0
	for _, m := range modes {
		for _, mem := range mems {
			t.Run(m.name+"/"+mem.name, func(t *testing.T) {
				args := []string{"run", "--model", model, "--prompt", "Once upon a time", "-n", "32", "--json"}
				args = append(append(args, m.args...), mem.args...)
				gpu, stderr := runHostAndEmu(t, env, args, 32)
				streamed := gpu.weightBytes() > 0
				if streamed != (mem.args != nil) {
					t.Errorf("%s run copied %d bytes of weights after setup", mem.name, gpu.weightBytes())
				}
				p, err := emu.ParseProfile(strings.NewReader(stderr))
				if err != nil || len(p) == 0 {
					t.Fatalf("no EMU_PROFILE lines from the cuda run (%v):\n%s", err, lastLines(stderr, 20))
				}
				for k, n := range p {
					total[k] += n
				}
				runs++
				t.Logf("%d tokens equal; %d kernels, %d launches", len(gpu.Tokens), len(p), p.Launches())
			})
		}
	}
	// scripts/emu-test.sh reads this line.
	t.Logf("emu-e2e: runs=%d kernels=%d launches=%d", runs, len(total), total.Launches())
}
