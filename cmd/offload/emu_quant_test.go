package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"offload/internal/emu"
	"offload/internal/fixtures"
)

// TestEmuRunQuantMatchesHost runs `offload run --device cuda` on quantized
// GGUF files (stories260K padded to dim 256: Q4_K_M, which mixes Q4_K and
// Q6_K, and Q8_0) on the emulated CUDA driver, dense and strict Sirius, with
// every weight resident and with a device budget small enough that layers
// stream, and holds the CUDA backend's tokens equal to the host backend's.
// Then strict Sirius on Q4_K_M converted to neuron bundles (offload
// convert, down columns requantized to their type), whose sparse drafts
// gather quantized bundle rows on the device and multiply the down columns
// transposed (matmul_t_<type>). The quantized kernels run inside the engine
// as they do on a GPU.
//
// The emulator runs these files about four times slower per token than
// stories260K, so scripts/emu-test.sh spreads the ten runs over its four
// configurations with $OFFLOAD_EMU_SHARD ("k/n": run the runs whose index
// is k mod n); unset, every run runs.
func TestEmuRunQuantMatchesHost(t *testing.T) {
	dir := filepath.Join(fixtures.Shared(t), "models", "stories260K-q")
	shard, shards, err := parseShard(os.Getenv("OFFLOAD_EMU_SHARD"))
	if err != nil {
		t.Fatal(err)
	}
	env := append(emu.Env(t), "EMU_PROFILE=1")
	type run struct {
		name, file string
		args       []string
	}
	modes := []struct {
		name string
		args []string
	}{
		{"dense", []string{"--mode", "dense"}},
		{"sirius", []string{"--mode", "sirius", "--accept", "strict", "--window", "8", "--window-policy", "fixed"}},
	}
	mems := []struct {
		name string
		args []string
	}{
		{"resident", nil},
		// 2 MiB holds the KV cache, the activations and two layer slots of
		// these files' five layers: the others stream every pass.
		{"streamed", []string{"--device-mem", "2MiB"}},
	}
	var runs []run
	for fi, file := range []string{"Q4_K_M", "Q8_0", "Q4_K_M-bundled"} {
		if fi == 2 {
			for _, mem := range mems {
				runs = append(runs, run{file + "/sirius/" + mem.name, file, append(append([]string(nil), modes[1].args...), mem.args...)})
			}
			break
		}
		for mi := range modes {
			// The second file lists Sirius first, so that each shard of four
			// holds one (slow) Sirius run and one dense run; the bundled
			// file's two runs go to the first two.
			mode := modes[(mi+fi)%len(modes)]
			for _, mem := range mems {
				runs = append(runs, run{file + "/" + mode.name + "/" + mem.name, file, append(append([]string(nil), mode.args...), mem.args...)})
			}
		}
	}
	total := emu.Profile{}
	ran := 0
	bundled, tmp := "", t.TempDir()
	for i, r := range runs {
		if i%shards != shard {
			continue // another configuration's (not a skip: emu-test.sh fails on skips)
		}
		t.Run(r.name, func(t *testing.T) {
			model := filepath.Join(dir, "stories260K-pad256-"+r.file+".gguf")
			if r.file == "Q4_K_M-bundled" {
				if bundled == "" {
					out := filepath.Join(tmp, "q4_k_m-bundled.gguf")
					conv := exec.Command(bin, "convert", "--model", filepath.Join(dir, "stories260K-pad256-Q4_K_M.gguf"), "-o", out)
					if b, err := conv.CombinedOutput(); err != nil {
						t.Fatalf("offload convert: %v\n%s", err, b)
					}
					bundled = out
				}
				model = bundled
			}
			args := append([]string{"run", "--model", model, "--prompt", "Once upon a time", "-n", "24", "--json"}, r.args...)
			gpu, stderr := runHostAndEmu(t, env, args, 24)
			streamed := strings.HasSuffix(r.name, "/streamed")
			if (gpu.weightBytes() > 0) != streamed {
				t.Errorf("copied %d bytes of weights after setup", gpu.weightBytes())
			}
			p, err := emu.ParseProfile(strings.NewReader(stderr))
			if err != nil || len(p) == 0 {
				t.Fatalf("no EMU_PROFILE lines from the cuda run (%v):\n%s", err, lastLines(stderr, 20))
			}
			var quantLaunches uint64
			for k, n := range p {
				total[k] += n
				if strings.HasPrefix(k, "matmul_q") || strings.HasPrefix(k, "matmul_t_q") {
					quantLaunches += n
				}
			}
			if quantLaunches == 0 {
				t.Errorf("no quantized product ran on the device: %v", p)
			}
			if r.file == "Q4_K_M-bundled" && p["matmul_t_q4_k"] == 0 {
				t.Errorf("the bundles' down columns were not multiplied on the device (matmul_t_q4_k): %v", p)
			}
			ran++
			t.Logf("%d tokens equal; %d kernels, %d launches (%d quantized products)", len(gpu.Tokens), len(p), p.Launches(), quantLaunches)
		})
	}
	// scripts/emu-test.sh reads this line.
	t.Logf("emu-e2e-quant: runs=%d of %d (shard %d/%d) kernels=%d launches=%d", ran, len(runs), shard, shards, len(total), total.Launches())
}

// parseShard reads "k/n" (0 <= k < n); "" is the whole set.
func parseShard(s string) (k, n int, err error) {
	if s == "" {
		return 0, 1, nil
	}
	if _, err := fmt.Sscanf(s, "%d/%d", &k, &n); err != nil || n < 1 || k < 0 || k >= n {
		return 0, 0, fmt.Errorf("OFFLOAD_EMU_SHARD=%q: want k/n with 0 <= k < n", s)
	}
	return k, n, nil
}
