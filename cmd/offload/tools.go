package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"offload/convert"
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
		Usage: "quantize a model (q8_0, q4_k_m, ...) and/or store its FFN as neuron bundles, as GGUF",
		Description: `Reads a GGUF file, a Hugging Face directory (config.json + *.safetensors) or a llama2.c checkpoint
and writes one llama GGUF (atomically: nothing appears under --out unless the whole file was written).

--type quantizes F32/F16/BF16 weights to one of llama.cpp's file types, with its per-tensor mixes
(q4_k_m: Q4_K with Q6_K for the head and for attn_v/ffn_down in some layers, as llama-quantize
chooses without an importance matrix; the blocks are byte-identical to its reference quantizer's).
Without --type every tensor keeps its type (a downloaded Q4_K_M file can be bundled as it is).

--bundle (on by default) stores each FFN neuron j as one row: gate row j | up row j | down column j,
so that a sparse step reads each selected neuron in one run. A quantized down matrix's columns cut
across its blocks, so they are requantized: --bundle-down same keeps the down matrix's type (Q4_K
stays Q4_K), q8_0 uses Q8_0 (more bytes, closer to the original); see BENCHMARKS.md.

Examples:
  offload convert --model Llama-3.1-70B-Instruct/ --type q4_k_m -o llama-70b.q4_k_m.bundled.gguf
  offload convert --model llama-70b.Q4_K_M.gguf -o llama-70b.Q4_K_M.bundled.gguf
  offload convert --model model.gguf --type q8_0 --bundle=false -o model.q8_0.gguf`,
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output .gguf path"},
			&cli.StringFlag{Name: "type", Usage: "quantize to: " + strings.Join(convert.FileTypes(), ", ") + " (default: keep each tensor's type)"},
			&cli.BoolFlag{Name: "pure", Usage: "with --type: every matrix gets the type's base type, without llama.cpp's per-tensor mix"},
			&cli.BoolFlag{Name: "bundle", Value: true, Usage: "store FFN neurons as bundles (--bundle=false: keep gate, up and down matrices)"},
			&cli.StringFlag{Name: "bundle-down", Value: convert.DefaultBundleDown, Usage: "type of a quantized down matrix's columns in the bundles: same, q8_0, or a type name"},
			&cli.IntFlag{Name: "threads", Usage: "converting threads (default: all CPUs)"},
		},
		Action: func(c *cli.Context) error {
			src, err := pager.Open(c.String("model"))
			if err != nil {
				return err
			}
			defer src.Close()
			out := c.String("out")
			opt := convert.Options{Type: c.String("type"), Pure: c.Bool("pure"), Bundle: c.Bool("bundle"),
				BundleDown: c.String("bundle-down"), Threads: c.Int("threads")}
			if c.Bool("pure") && opt.Type == "" {
				return fmt.Errorf("convert: --pure needs --type")
			}
			if term.IsTerminal(int(os.Stderr.Fd())) {
				opt.Progress = progressTo("writing " + out)
			}
			res, err := convert.Convert(src, out, opt)
			if err != nil {
				return err
			}
			m, err := model.Open(out)
			if err != nil {
				return fmt.Errorf("the converted file does not open: %w", err)
			}
			defer m.Close()
			fmt.Fprintf(c.App.ErrWriter, "wrote %s: %s of weights, %s\n", out, humanize.IBytes(uint64(res.Bytes)), convertSummary(res))
			return nil
		},
	}
}

// convertSummary says what a conversion wrote: the file type, the share of
// bytes per tensor type, and the bundles' part types.
func convertSummary(res *convert.Result) string {
	byType := map[pager.DType]int64{}
	for _, t := range res.Tensors {
		for d, n := range t.TypeBytes() {
			byType[d] += n
		}
	}
	var parts []string
	if res.FileType != "" {
		parts = append(parts, res.FileType)
	}
	var mix []string
	for _, d := range sortedTypes(byType) {
		mix = append(mix, fmt.Sprintf("%s %.0f%%", d, 100*float64(byType[d])/float64(res.Bytes)))
	}
	if len(mix) > 0 {
		parts = append(parts, "tensors "+strings.Join(mix, ", "))
	}
	if len(res.BundleTypes) > 0 {
		seen := map[[3]pager.DType]int{}
		var order [][3]pager.DType
		for _, bt := range res.BundleTypes {
			if seen[bt] == 0 {
				order = append(order, bt)
			}
			seen[bt]++
		}
		var b []string
		for _, bt := range order {
			b = append(b, fmt.Sprintf("%d x %s|%s|%s", seen[bt], bt[0], bt[1], bt[2]))
		}
		parts = append(parts, "FFN bundles (gate|up|down) "+strings.Join(b, ", "))
	}
	return strings.Join(parts, "; ")
}

// sortedTypes orders types by bytes, most first.
func sortedTypes(by map[pager.DType]int64) []pager.DType {
	ts := make([]pager.DType, 0, len(by))
	for d := range by {
		ts = append(ts, d)
	}
	sort.Slice(ts, func(i, j int) bool {
		if by[ts[i]] != by[ts[j]] {
			return by[ts[i]] > by[ts[j]]
		}
		return ts[i] < ts[j]
	})
	return ts
}
