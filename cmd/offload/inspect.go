package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"offload/model"
	"offload/pager"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show a model file's format, architecture and tensors (reads headers only)",
		ArgsUsage: "PATH",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print as JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("inspect needs exactly one model path")
			}
			path := c.Args().First()
			f, err := pager.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			p, perr := f.LlamaParams()
			rows, summary := tensorRows(f, p, perr == nil)
			if c.Bool("json") {
				out := map[string]any{"path": path, "format": f.Format, "tensors": rows, "bytes": f.Bytes(), "types": summary}
				if perr == nil {
					out["config"] = p
				} else {
					out["config_error"] = perr.Error()
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			fmt.Printf("file     %s\nformat   %s\n", path, f.Format)
			if perr != nil {
				fmt.Printf("config   (unreadable: %v)\n", perr)
			} else {
				fmt.Printf("config   dim %d, ffn %d, layers %d, heads %d (kv %d, head dim %d), vocab %d, context %d, rope theta %g, rms eps %g, tied embeddings %v\n",
					p.Dim, p.Hidden, p.Layers, p.Heads, p.KVHeads, p.HeadDim, p.Vocab, p.ContextLength, p.RopeTheta, float32(p.NormEps), p.TiedEmbeddings)
				if m, err := model.FromFile(f); err != nil { // f stays open: parsed once
					fmt.Printf("runnable no: %v\n", err)
				} else {
					fmt.Printf("runnable yes (%s of weights the device may need; FFN bundled: %v)\n", humanize.IBytes(uint64(m.WeightBytes())), m.Bundled)
				}
			}
			fmt.Printf("tensors  %d, %s (%s)\n\n", len(f.Tensors), humanize.IBytes(uint64(f.Bytes())), humanize.Comma(f.Bytes())+" bytes")
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(w, "TYPE\tTENSORS\tWEIGHTS\tBYTES\tSHARE\tBITS/WEIGHT\t")
			for _, r := range summary {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%.1f%%\t%s\t\n", r.DType, r.Tensors, humanize.Comma(r.Weights), humanize.IBytes(uint64(r.Bytes)),
					100*float64(r.Bytes)/float64(max(f.Bytes(), 1)), bpwStr(r.BitsPerWeight))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Println()
			w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tDTYPE\tSHAPE\tBYTES\tBITS/WEIGHT")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\n", r.Name, r.DType, r.Shape, humanize.IBytes(uint64(r.Bytes)), bpwStr(r.BitsPerWeight))
			}
			return w.Flush()
		},
	}
}

func dirOf(p string) string  { return filepath.Dir(p) }
func baseOf(p string) string { return filepath.Base(p) }

// tensorRow is one tensor as inspect shows it.
type tensorRow struct {
	Name  string `json:"name"`
	DType string `json:"dtype"` // a neuron bundle's: "Q4_K|Q4_K|Q6_K bundle"
	Shape []int  `json:"shape"`
	Bytes int    `json:"bytes"`
	// Weights is the number of weights stored (a bundle row holds 3*dim);
	// BitsPerWeight is 8*Bytes/Weights (0 when unknown).
	Weights       int64    `json:"weights"`
	BitsPerWeight float64  `json:"bits_per_weight"`
	Parts         []string `json:"bundle_parts,omitempty"`
}

// typeRow sums the tensors (and bundle parts) of one type.
type typeRow struct {
	DType         string  `json:"dtype"`
	Tensors       int     `json:"tensors"`
	Weights       int64   `json:"weights"`
	Bytes         int64   `json:"bytes"`
	BitsPerWeight float64 `json:"bits_per_weight"`
}

// tensorRows lists f's tensors with bits per weight, and sums them per type,
// most bytes first. A neuron bundle's parts count under their own types when
// the architecture (p) is known.
func tensorRows(f *pager.Model, p pager.LlamaParams, haveParams bool) ([]tensorRow, []typeRow) {
	by := map[string]*typeRow{}
	add := func(dt string, weights, bytes int64) {
		r := by[dt]
		if r == nil {
			r = &typeRow{DType: dt}
			by[dt] = r
		}
		r.Tensors++
		r.Weights += weights
		r.Bytes += bytes
	}
	var rows []tensorRow
	bundles := map[string]pager.BundleParts{}
	if haveParams {
		for l := 0; l < p.Layers; l++ {
			if t, parts, err := f.FFNBundle(l, p.Dim, p.Hidden); err == nil {
				bundles[t.Name] = parts
			}
		}
	}
	for _, t := range f.Tensors {
		r := tensorRow{Name: t.Name, DType: t.DType.String(), Shape: t.Shape, Bytes: len(t.Data), Weights: t.Elements()}
		if parts, ok := bundles[t.Name]; ok {
			rows64 := int64(t.Rows())
			r.Weights = 3 * int64(p.Dim) * rows64
			r.DType = fmt.Sprintf("%s|%s|%s bundle", parts.Types[0], parts.Types[1], parts.Types[2])
			for i, d := range parts.Types {
				r.Parts = append(r.Parts, d.String())
				add(d.String(), int64(p.Dim)*rows64, int64(parts.Bytes[i])*rows64)
			}
		} else {
			add(r.DType, r.Weights, int64(r.Bytes))
		}
		if r.Weights > 0 {
			r.BitsPerWeight = 8 * float64(r.Bytes) / float64(r.Weights)
		}
		rows = append(rows, r)
	}
	var sum []typeRow
	for _, r := range by {
		if r.Weights > 0 {
			r.BitsPerWeight = 8 * float64(r.Bytes) / float64(r.Weights)
		}
		sum = append(sum, *r)
	}
	sort.Slice(sum, func(i, j int) bool {
		if sum[i].Bytes != sum[j].Bytes {
			return sum[i].Bytes > sum[j].Bytes
		}
		return sum[i].DType < sum[j].DType
	})
	return rows, sum
}

func bpwStr(b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.4g", b)
}
