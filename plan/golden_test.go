package plan

import (
	"flag"
	"offload/internal/fixtures"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"offload/device"
	"offload/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// stories260K's architecture, as its llama2.c header says.
var stories260K = model.Config{Arch: "llama", Dim: 64, Hidden: 172, Layers: 5, Heads: 8, KVHeads: 4, HeadDim: 8,
	Vocab: 512, MaxSeq: 512, RopeTheta: 10000, RopeStyle: device.RopeInterleaved, NormEps: 1e-5, TiedEmbeddings: true}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./plan -run Golden -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test ./plan -run Golden -update to accept):\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func TestGolden(t *testing.T) {
	l70 := shape(t, "llama-3-70b")
	tests := []struct {
		name  string
		cfg   model.Config
		p     Params
		paper bool // also print FormatGain against the paper setting
	}{
		{"llama-3-70b-paper-a100", l70, Params{Model: "llama-3-70b", GPU: gpu(t, "a100-80gb"), Link: 25e9, AAL: 15.22, Paper: true}, false},
		{"llama-3-70b-rtx4090-pcie4", l70, Params{Model: "llama-3-70b", GPU: gpu(t, "rtx-4090"), Link: 25e9}, true},
		{"llama-2-7b-q4-rtx3090-pcie3", shape(t, "llama-2-7b"), Params{Model: "llama-2-7b", GPU: gpu(t, "rtx-3090"), GPUMem: 2 << 30,
			Link: 12.5e9, DType: "q4_0", DTypeBytes: 18.0 / 32, Window: 8, Keep: 0.4, AAL: 6.5, Context: 1024}, true},
		{"stories260K-tiny-device", stories260K, Params{Model: "stories260K", GPU: GPU{Name: "custom", Mem: 1 << 20}, FLOPS: 1e9, MemBW: 1e9,
			Link: 1e8, DType: "f32", DTypeBytes: 4, Window: 4, AAL: 3.5, Context: 128}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pred, err := Predict(tc.cfg, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			out := pred.String()
			if tc.paper {
				pp := tc.p
				pp.Paper = true
				paper, err := Predict(tc.cfg, pp)
				if err != nil {
					t.Fatal(err)
				}
				out += "\n" + FormatGain(pred, paper)
			}
			golden(t, tc.name, out)
		})
	}
}

// Model files from ../shared: the header gives the architecture and the
// matrices give the dtype, without reading weights.
func TestLoadModelInfo(t *testing.T) {
	dir := filepath.Join(fixtures.Shared(t), "models", "stories260K")
	tests := []struct {
		file, format string
		tied         bool
	}{
		{"stories260K.bin", "llama2c", true},
		{"stories260K.gguf", "gguf", false},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			info, err := LoadModelInfo(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			c := info.Config
			if info.Format != tc.format || c.Dim != 64 || c.Hidden != 172 || c.Layers != 5 || c.Heads != 8 ||
				c.KVHeads != 4 || c.Vocab != 512 || c.TiedEmbeddings != tc.tied {
				t.Errorf("got %+v", info)
			}
			if info.DType != "f32" || info.DTypeBytes != 4 {
				t.Errorf("dtype %s %v, want f32 4", info.DType, info.DTypeBytes)
			}
			if _, err := Predict(c, Params{Model: info.Name, GPU: gpu(t, "rtx-4090"), Link: 25e9, DTypeBytes: info.DTypeBytes}); err != nil {
				t.Error(err)
			}
		})
	}
	_, err := LoadModelInfo(filepath.Join(dir, "SOURCE.md"))
	if err == nil || !strings.Contains(err.Error(), "SOURCE.md") {
		t.Errorf("a text file: %v, want an error naming it", err)
	}
}
