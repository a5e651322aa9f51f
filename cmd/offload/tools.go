package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"offload/model"
	"offload/pager"
	"offload/synth"
)

// newBar draws a byte progress bar on stderr.
func newBar(total int64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200_000_000),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
		progressbar.OptionClearOnFinish(),
	)
}

// stderrIsTerminal says whether progress bars may be drawn: their \r frames
// belong on a terminal, not in a log file or a pipe.
func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// progressTo draws a byte progress bar on stderr when it is a terminal (and
// stays silent otherwise; the commands say what they wrote when done).
func progressTo(what string) func(done, total int64) {
	if !stderrIsTerminal() {
		return func(int64, int64) {}
	}
	var bar *progressbar.ProgressBar
	return func(done, total int64) {
		if bar == nil {
			bar = newBar(total, what)
		}
		bar.Set64(done)
	}
}

func synthCommand() *cli.Command {
	var names []string
	for _, s := range model.Shapes {
		names = append(names, s.Name)
	}
	return &cli.Command{
		Name:  "synth",
		Usage: "write a synthetic model with a real architecture's shapes and seeded random weights",
		Description: `Writes a Hugging Face-style directory (config.json + model.safetensors) whose layers have the exact
shapes of a published model, so transfers and kernels at 8B/70B shapes can be measured on a small
machine. Two layers of llama-3-70b are about 3.4 GB in bf16 (plus embeddings and head: shrink them
with --vocab).

Example: offload synth --shape llama-3-70b --layers 2 --vocab 32000 -o /tmp/l70b-2`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "shape", Required: true, Usage: "one of " + strings.Join(names, ", ")},
			&cli.IntFlag{Name: "layers", Usage: "number of layers (default: the shape's)"},
			&cli.IntFlag{Name: "vocab", Usage: "vocabulary size (default: the shape's)"},
			&cli.StringFlag{Name: "dtype", Value: "bf16", Usage: "bf16, f16 or f32"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.Float64Flag{Name: "planted", Usage: "plant contextual sparsity: about this fraction of FFN neurons active per input, the same through a sequence (good sparse drafts); 0: random weights (bad drafts)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output directory"},
		},
		Action: func(c *cli.Context) error {
			s, err := model.LookupShape(c.String("shape"))
			if err != nil {
				return err
			}
			out := c.String("out")
			err = synth.Write(out, synth.Options{Shape: s, Layers: c.Int("layers"), Vocab: c.Int("vocab"),
				DType: c.String("dtype"), Seed: c.Uint64("seed"), Planted: c.Float64("planted"), Progress: progressTo("writing " + out)})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "wrote %s (%s)\n", out, s.Name)
			return nil
		},
	}
}

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:  "convert",
		Usage: "rewrite a model with FFN neuron bundles (gate row, up row, down column together) as GGUF",
		Description: `Sparse decoding reads a few FFN neurons per layer; in the usual layout each neuron is three pieces
far apart (a gate row, an up row and a strided down column). convert writes a GGUF in which neuron j
of each layer is one contiguous row: gate_j | up_j | down column j, so a selected neuron is one large
read. Everything else is copied (HF names become GGUF names, q/k rows are un-permuted for
interleaved RoPE). The engine runs either layout; the output is written atomically.

Example: offload convert --model llama-3-8b/ -o llama-3-8b.bundled.gguf`,
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output .gguf path"},
		},
		Action: func(c *cli.Context) error {
			src, err := pager.Open(c.String("model"))
			if err != nil {
				return err
			}
			defer src.Close()
			out := c.String("out")
			if err := pager.BundleFFN(src, out, progressTo("bundling into "+out)); err != nil {
				return err
			}
			m, err := model.Open(out)
			if err != nil {
				return fmt.Errorf("the converted file does not open: %w", err)
			}
			defer m.Close()
			fmt.Fprintf(os.Stderr, "wrote %s: %d layers of FFN bundles\n", out, len(m.Layers))
			return nil
		},
	}
}
