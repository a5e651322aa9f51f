package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
			type trow struct {
				Name  string `json:"name"`
				DType string `json:"dtype"`
				Shape []int  `json:"shape"`
				Bytes int    `json:"bytes"`
			}
			var rows []trow
			for _, t := range f.Tensors {
				rows = append(rows, trow{t.Name, t.DType.String(), t.Shape, len(t.Data)})
			}
			if c.Bool("json") {
				out := map[string]any{"path": path, "format": f.Format, "tensors": rows, "bytes": f.Bytes()}
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
				if m, err := model.Open(path); err != nil {
					fmt.Printf("runnable no: %v\n", err)
				} else {
					fmt.Printf("runnable yes (%s of weights the device may need; FFN bundled: %v)\n", humanize.IBytes(uint64(m.WeightBytes())), m.Bundled)
					m.Close()
				}
			}
			fmt.Printf("tensors  %d, %s (%s)\n\n", len(f.Tensors), humanize.IBytes(uint64(f.Bytes())), humanize.Comma(f.Bytes())+" bytes")
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tDTYPE\tSHAPE\tBYTES")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\t%v\t%s\n", r.Name, r.DType, r.Shape, humanize.IBytes(uint64(r.Bytes)))
			}
			return w.Flush()
		},
	}
}

func dirOf(p string) string  { return filepath.Dir(p) }
func baseOf(p string) string { return filepath.Base(p) }
