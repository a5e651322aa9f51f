package engine

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"offload/corrector"
	"offload/device/host"
	"offload/internal/fault"
	"offload/internal/fixtures"
	"offload/internal/ggufedit"
	"offload/model"
)

// editedStories writes stories260K.gguf with one tensor edited.
func editedStories(t *testing.T, tensor string, edit ggufedit.Edit) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "edited.gguf")
	if err := ggufedit.Rewrite(filepath.Join(fixtures.Stories(t), "stories260K.gguf"), path, nil, ggufedit.Tensor(tensor, edit)); err != nil {
		t.Fatal(err)
	}
	return path
}

// tryEngine is newTestEngine returning New's error instead of failing.
func tryEngine(t *testing.T, path string, stream bool, mode corrector.Mode) (*Engine, error) {
	t.Helper()
	m, err := model.Open(path)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { m.Close() })
	dev, err := host.New(host.Options{Capacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	d := DefaultDecoding()
	d.Mode, d.Window = mode, 4
	e, err := New(m, dev, Options{Decoding: d, StreamAll: stream, Context: 64})
	if err == nil {
		t.Cleanup(e.Close)
	}
	return e, err
}

// TestNonFiniteWeights: a NaN or Inf weight fails with the tensor's name,
// when the engine is built (resident) or on the layer's first pass
// (streamed), never as <unk> text.
func TestNonFiniteWeights(t *testing.T) {
	prompt := oracleTokens(t)[:5]
	for _, c := range []struct {
		tensor string
		v      float32
	}{
		{"blk.2.ffn_down.weight", float32(math.NaN())},
		{"blk.4.attn_q.weight", float32(math.Inf(1))},
		{"output.weight", float32(math.Inf(-1))},
		{"token_embd.weight", float32(math.NaN())}, // row of token 1 (BOS)
	} {
		at := 100
		if c.tensor == "token_embd.weight" {
			at = 64 + 3 // row 1 (BOS)
		}
		path := editedStories(t, c.tensor, ggufedit.SetF32(at, c.v))
		for _, mem := range []bool{false, true} {
			for _, mode := range []corrector.Mode{corrector.Dense, corrector.Sirius} {
				e, err := tryEngine(t, path, mem, mode)
				if err == nil {
					_, err = e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 8}, nil)
				}
				if err == nil || !strings.Contains(err.Error(), c.tensor) || !strings.Contains(err.Error(), "non-finite") {
					t.Errorf("%s at streamed %v, %v: got %v, want an error naming it", c.tensor, mem, mode, err)
				}
			}
		}
	}
}

// TestNonFiniteActivations: finite weights too large for float32 make the
// activations overflow; the run stops naming the first layer whose output
// is not finite.
func TestNonFiniteActivations(t *testing.T) {
	path := editedStories(t, "blk.2.ffn_down.weight", ggufedit.FillF32(3e38))
	prompt := oracleTokens(t)[:5]
	for _, mem := range []bool{false, true} {
		for _, mode := range []corrector.Mode{corrector.Dense, corrector.Sirius} {
			e, err := tryEngine(t, path, mem, mode)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 8}, nil)
			if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "layer 2") {
				t.Errorf("streamed %v, %v: got %v, want ErrNonFinite in layer 2", mem, mode, err)
			}
		}
	}
}

// TestTruncatedWhileRunning: the model file is truncated after the engine
// was built; the next generation fails with fault.ErrFileChanged, resident
// (the embedding rows are read from the mapping every token) or streamed,
// and the engine still closes cleanly.
func TestTruncatedWhileRunning(t *testing.T) {
	prompt := oracleTokens(t)[:5]
	src, err := os.ReadFile(filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	// Truncated to nothing, every read faults (the embedding row first);
	// to half, the embedding survives and the layers' weights fault: read
	// in place by the host kernels (resident) or copied (streamed).
	for _, size := range []int64{0, int64(len(src)) / 2} {
		for _, mem := range []bool{false, true} {
			for _, mode := range []corrector.Mode{corrector.Dense, corrector.Sirius} {
				path := filepath.Join(t.TempDir(), "m.gguf")
				os.WriteFile(path, src, 0o644)
				e, err := tryEngine(t, path, mem, mode)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 4}, nil); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(path, size); err != nil {
					t.Fatal(err)
				}
				_, err = e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 4}, nil)
				if !errors.Is(err, fault.ErrFileChanged) || !strings.Contains(err.Error(), path) {
					t.Errorf("size %d, streamed %v, %v: got %v, want ErrFileChanged naming the file", size, mem, mode, err)
				}
				e.Close()
				if u := e.Device().Used(); u != 0 {
					t.Errorf("size %d, streamed %v, %v: %d bytes still allocated after Close", size, mem, mode, u)
				}
			}
		}
	}
}

// TestCheckBatch: an absurd window x width is refused from the shapes
// alone, before anything is allocated; the defaults fit.
func TestCheckBatch(t *testing.T) {
	s, err := model.LookupShape("llama-3-70b")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		window, width int
		ok            bool
	}{
		{16, 1, true},
		{64, 4, true},
		{2000, 64, false},
		{8192, 1000, false},
	} {
		opt := Options{Decoding: Decoding{Window: c.window, Width: c.width}, MaxBatch: max(512, c.window*c.width)}
		err := checkBatch(s.Config, opt, 80<<30)
		if (err == nil) != c.ok {
			t.Errorf("window %d width %d: %v", c.window, c.width, err)
		}
	}
}
