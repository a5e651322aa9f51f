package plan

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPlots(t *testing.T) {
	cfg := shape(t, "llama-3-70b")
	pred, err := Predict(cfg, Params{Model: "llama-3-70b", GPU: gpu(t, "rtx-4090"), Link: 25e9})
	if err != nil {
		t.Fatal(err)
	}
	spans, err := PassTimeline(*pred.Mode(Sirius), PhaseCheck)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name string
		draw func(path string) error
	}{
		{"modes.svg", func(p string) error { return PlotModes(pred, p) }},
		{"modes.png", func(p string) error { return PlotModes(pred, p) }},
		{"timeline.svg", func(p string) error { return PlotTimeline(spans, p) }},
		{"timeline.png", func(p string) error { return PlotTimeline(spans, p) }},
		{"both.svg", func(p string) error { return PlotFigure(ModeBars(pred), spans, "title", p) }},
		{"both.PNG", func(p string) error { return PlotFigure(ModeBars(pred), spans, "title", p) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := tc.draw(path); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(strings.ToLower(tc.name), ".png") {
				img, err := png.Decode(bytes.NewReader(data))
				if err != nil {
					t.Fatalf("not a PNG: %v", err)
				}
				if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
					t.Errorf("PNG is %v", b)
				}
				return
			}
			// A well-formed XML document whose root is <svg>.
			dec := xml.NewDecoder(bytes.NewReader(data))
			root := ""
			for {
				tok, err := dec.Token()
				if err != nil {
					if root == "" {
						t.Fatalf("no root element: %v", err)
					}
					if err.Error() != "EOF" {
						t.Fatalf("malformed SVG: %v", err)
					}
					break
				}
				if se, ok := tok.(xml.StartElement); ok && root == "" {
					root = se.Name.Local
				}
			}
			if root != "svg" {
				t.Errorf("root element %q", root)
			}
		})
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(tests) {
		t.Errorf("%d files in the output dir, want %d (temporary files left?)", len(entries), len(tests))
	}
}

func TestPlotErrors(t *testing.T) {
	dir := t.TempDir()
	bars := []Bar{{"a", 1}}
	if err := PlotFigure(bars, nil, "", filepath.Join(dir, "x.jpg")); err == nil {
		t.Error(".jpg accepted")
	}
	if err := PlotFigure(nil, nil, "", filepath.Join(dir, "x.svg")); err == nil {
		t.Error("empty figure accepted")
	}
	if err := PlotFigure([]Bar{{"nan", -1}}, nil, "", filepath.Join(dir, "neg.svg")); err == nil {
		t.Error("negative bar accepted")
	}
	if err := PlotTimeline([]Span{{Track: "copy", Start: 2, End: 1}}, filepath.Join(dir, "back.svg")); err == nil {
		t.Error("backwards span accepted")
	}
	if err := PlotFigure(bars, nil, "", filepath.Join(dir, "no", "such", "dir.svg")); err == nil {
		t.Error("missing directory accepted")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed plots left files: %v", entries)
	}
}

// The simulated double-buffered pass keeps the pipeline's rules: one copy at
// a time, a layer computes after its copy and after the previous layer, and
// a copy reuses the slot of the layer two back only once it has computed.
func TestPassTimeline(t *testing.T) {
	pred, err := Predict(shape(t, "llama-2-70b"), Params{GPU: gpu(t, "rtx-3090"), Link: 12.5e9})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range pred.Modes {
		for _, ph := range m.Phases {
			spans, err := PassTimeline(m, ph.Phase)
			if err != nil {
				t.Fatal(err)
			}
			copyEnd := map[string]time.Duration{}
			computeEnd := map[string]time.Duration{}
			order := map[string]int{}
			for i, st := range ph.Stages {
				name := "head"
				if st.Layer >= 0 {
					name = "L" + strconv.Itoa(st.Layer)
				}
				order[name] = i
			}
			var lastCopy, lastCompute time.Duration
			for _, s := range spans {
				switch s.Track {
				case "copy":
					if s.Start < lastCopy {
						t.Fatalf("%s/%s: copy %s overlaps the previous copy", m.Mode, ph.Phase, s.Name)
					}
					lastCopy = s.End
					copyEnd[s.Name] = s.End
					if i := order[s.Name]; i >= 2 {
						two := ph.Stages[i-2]
						prev := "L" + strconv.Itoa(two.Layer)
						if s.Start < computeEnd[prev] {
							t.Fatalf("%s/%s: copy of %s starts before %s frees its slot", m.Mode, ph.Phase, s.Name, prev)
						}
					}
				case "compute":
					if e, ok := copyEnd[s.Name]; ok && s.Start < e {
						t.Fatalf("%s/%s: %s computes before its copy ends", m.Mode, ph.Phase, s.Name)
					}
					if s.Start < lastCompute {
						t.Fatalf("%s/%s: %s computes before the previous layer ends", m.Mode, ph.Phase, s.Name)
					}
					lastCompute = s.End
					computeEnd[s.Name] = s.End
				}
			}
			// The simulated pass can only be longer than the sum of
			// max(link, compute), by at most the first stage's copy.
			total := lastCompute.Seconds()
			if total < ph.Seconds*(1-1e-6) || total > ph.Seconds+ph.Stages[0].LinkSeconds+1e-6 {
				t.Errorf("%s/%s: simulated %.4f s, predicted %.4f s", m.Mode, ph.Phase, total, ph.Seconds)
			}
		}
	}
	if _, err := PassTimeline(*pred.Mode(Dense), PhaseCheck); err == nil {
		t.Error("dense has no check phase")
	}
}
