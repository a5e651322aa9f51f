package engine

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"offload/corrector"
	"offload/device/host"
	"offload/internal/fixtures"
	"offload/model"
	"offload/pager"
)

// fourLayerStories writes stories260K without its last layer: an even layer
// count, so a streamed LM head goes through slot 0, where the next pass's
// first layer is prefetched.
func fourLayerStories(t *testing.T) string {
	t.Helper()
	f, err := pager.Open(filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	meta := map[string]any{}
	for k, v := range f.Meta {
		if !strings.HasPrefix(k, "gguf.") {
			meta[k] = v
		}
	}
	meta["llama.block_count"] = uint32(4)
	var specs []pager.TensorSpec
	var data [][]byte
	for _, tn := range f.Tensors {
		if strings.HasPrefix(tn.Name, "blk.4.") {
			continue
		}
		specs = append(specs, pager.TensorSpec{Name: tn.Name, DType: tn.DType, Shape: tn.Shape})
		data = append(data, tn.Data)
	}
	dst := filepath.Join(t.TempDir(), "four.gguf")
	if err := pager.WriteGGUF(dst, meta, specs, func(i int, w io.Writer) error { _, err := w.Write(data[i]); return err }); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestPrefetchAfterStreamedHead: with an even number of layers and a budget
// that streams the LM head, the head shares slot 0 with the next pass's
// first layer; the cross-pass prefetch must wait for the head to compute.
// (It used to overwrite the head's weights first: wrong tokens.)
func TestPrefetchAfterStreamedHead(t *testing.T) {
	path := fourLayerStories(t)
	cfg := corrector.DefaultConfig()
	cfg.Mode, cfg.MaxTokens = corrector.Dense, 24
	prompt := oracleTokens(t)[:5]
	want := genTokens(t, newTestEngine(t, path, 0, Options{}, cfg), prompt, cfg)
	m, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	found := false
	for mem := int64(1 << 20); mem > 100<<10 && !found; mem -= 8 << 10 {
		dev, err := host.New(host.Options{Capacity: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		d := DefaultDecoding()
		d.Mode = corrector.Dense
		e, err := New(m, dev, Options{Decoding: d, DeviceMem: mem, Context: 128})
		if err != nil || e.Prof.Plan.Head || e.Prof.Plan.Slots != 2 {
			if e != nil {
				e.Close()
			}
			dev.Close()
			continue
		}
		found = true
		got := genTokens(t, e, prompt, cfg)
		e.Close()
		dev.Close()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("mem %d (head streamed, 2 slots): tokens differ from resident\n got  %v\n want %v", mem, got, want)
		}
	}
	if !found {
		t.Fatal("no budget streams the head through two slots")
	}
}

func genTokens(t *testing.T, e *Engine, prompt []int, cfg corrector.Config) []int {
	t.Helper()
	r, err := gen(e, prompt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r.Tokens
}
