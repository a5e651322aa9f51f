package plot

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"offload/model"
	"offload/plan"
)

func TestPlots(t *testing.T) {
	s, err := model.LookupShape("llama-3-70b")
	if err != nil {
		t.Fatal(err)
	}
	g, err := plan.LookupGPU("rtx-4090")
	if err != nil {
		t.Fatal(err)
	}
	pred, err := plan.Predict(s.Config, plan.Params{Model: "llama-3-70b", GPU: g, Link: 25e9})
	if err != nil {
		t.Fatal(err)
	}
	spans, err := plan.PassTimeline(*pred.Mode(plan.Sirius), plan.PhaseCheck)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name string
		draw func(path string) error
	}{
		{"modes.svg", func(p string) error { return Modes(pred, p) }},
		{"modes.png", func(p string) error { return Modes(pred, p) }},
		{"timeline.svg", func(p string) error { return Timeline(spans, p) }},
		{"timeline.png", func(p string) error { return Timeline(spans, p) }},
		{"both.svg", func(p string) error { return Figure(ModeBars(pred), spans, "title", p) }},
		{"both.PNG", func(p string) error { return Figure(ModeBars(pred), spans, "title", p) }},
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
	if err := Figure(bars, nil, "", filepath.Join(dir, "x.jpg")); err == nil {
		t.Error(".jpg accepted")
	}
	if err := Figure(nil, nil, "", filepath.Join(dir, "x.svg")); err == nil {
		t.Error("empty figure accepted")
	}
	if err := Figure([]Bar{{"nan", -1}}, nil, "", filepath.Join(dir, "neg.svg")); err == nil {
		t.Error("negative bar accepted")
	}
	if err := Timeline([]plan.Span{{Track: "copy", Start: 2, End: 1}}, filepath.Join(dir, "back.svg")); err == nil {
		t.Error("backwards span accepted")
	}
	if err := Figure(bars, nil, "", filepath.Join(dir, "no", "such", "dir.svg")); err == nil {
		t.Error("missing directory accepted")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed plots left files: %v", entries)
	}
}
