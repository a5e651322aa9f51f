package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"offload"
	"offload/tokenizer"
)

func runCommand() *cli.Command {
	flags := []cli.Flag{
		modelFlag(),
		&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer file (default: the one in or beside the model)"},
		&cli.StringFlag{Name: "prompt", Aliases: []string{"i"}, Usage: "prompt text (BOS is added)"},
		&cli.IntFlag{Name: "n", Value: 256, Usage: "number of tokens to generate"},
		&cli.StringSliceFlag{Name: "stop", Usage: "stop when the output contains this string (repeatable)"},
		&cli.BoolFlag{Name: "json", Usage: "print the text and the report as one JSON object on stdout instead"},
		&cli.StringFlag{Name: "trace", Usage: "write a Chrome trace-event JSON timeline (copy and compute streams) to this file; open it in Perfetto"},
	}
	flags = append(flags, decodeFlags()...)
	flags = append(flags, deviceFlags()...)
	return &cli.Command{
		Name:  "run",
		Usage: "generate text, streaming it to stdout, then report speed and transfers to stderr",
		Description: `Generates -n tokens after --prompt and prints the prompt and the continuation as they are produced.
The report on stderr gives prompt and generated tokens, prefill and decode speed, bytes moved per
generated token, Sirius statistics (AAL, corrections, effective density) and a per-phase table of
bytes, copy/compute/stall time and overlap.

The default is the product: Sirius with a Griffin sparse model (keep 0.5, window 16, threshold 0.1).
--mode dense is plain greedy/sampled decoding with the full model.

Examples:
  offload run --prompt "Once upon a time" -n 64
  offload run --mode dense --prompt "Once upon a time" -n 64 --temperature 1 --top-p 0.9 --seed 7
  offload run --model llama-70b/ --window 16 --device-mem 22GiB --trace trace.json`,
		Flags:  flags,
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (the prompt goes in --prompt)", c.Args().First())
	}
	path := c.String("model")
	m, err := openModel(path)
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := loadTokenizer(c, m.File.Meta, m.File.Format, path)
	if err != nil {
		return err
	}
	n := c.Int("n")
	if n < 1 {
		return fmt.Errorf("-n must be at least 1")
	}
	mode, cfg, pol, err := decodeConfig(c, n, c.String("mode"))
	if err != nil {
		return err
	}
	prompt := tok.Encode(c.String("prompt"), tok.BOS() >= 0)
	if len(prompt) == 0 {
		return fmt.Errorf("the prompt is empty and this tokenizer has no BOS token to start from: pass --prompt")
	}
	cfg.EOS = stopIDs(tok)
	stops := c.StringSlice("stop")
	out := bufio.NewWriter(os.Stdout)
	stream := tok.NewStream()
	var text strings.Builder
	// Echo the prompt as llama2.c's run does.
	for _, id := range prompt {
		text.WriteString(stream.Next(id))
	}
	if len(stops) > 0 {
		var gen strings.Builder
		cfg.Stop = func(generated []int) bool {
			gen.Reset()
			gen.WriteString(tok.Decode(generated))
			for _, s := range stops {
				if strings.Contains(gen.String(), s) {
					return true
				}
			}
			return false
		}
	}
	dev, note, err := openDevice(c, m.WeightBytes())
	if err != nil {
		return err
	}
	defer dev.Close()
	opt := engineOptions(c, m, mode, cfg, pol, len(prompt))
	if len(prompt) > opt.MaxBatch && term.IsTerminal(int(os.Stderr.Fd())) {
		bar := progressbar.NewOptions(len(prompt), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("prefill"), progressbar.OptionClearOnFinish())
		opt.PrefillProgress = func(done, _ int) { bar.Set(done) }
	}
	e, err := offload.New(m, dev, opt)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer e.Close()
	if c.Bool("plan") {
		fmt.Fprint(os.Stderr, e.Prof.Plan.String())
	}
	jsonOut := c.Bool("json")
	if !jsonOut {
		out.WriteString(text.String())
		out.Flush()
	}
	res, genErr := e.Generate(prompt, cfg, func(id int) error {
		s := stream.Next(id)
		text.WriteString(s)
		if !jsonOut {
			out.WriteString(s)
			return out.Flush()
		}
		return nil
	})
	tail := stream.Flush() + "\n"
	text.WriteString(tail)
	if !jsonOut {
		out.WriteString(tail)
		out.Flush()
	}
	if res == nil {
		return genErr
	}
	rep := e.Report(res, modelName(path))
	if note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	if genErr != nil {
		rep.Notes = append(rep.Notes, "generation stopped early: "+genErr.Error())
	}
	if tr := c.String("trace"); tr != "" {
		if err := writeFileAtomic(tr, func(f *os.File) error { return e.Prof.WriteTrace(f) }); err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
	}
	if jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Text   string `json:"text"`
			Tokens []int  `json:"tokens"`
			*offload.Report
		}{text.String(), res.Tokens, rep})
	}
	fmt.Fprint(os.Stderr, "\n"+rep.String())
	return genErr
}

// stopIDs are the tokens that end generation: the tokenizer's end-of-
// generation ids, and BOS, which llama2.c models emit between documents
// (run.c stops on it too).
func stopIDs(t *tokenizer.Tokenizer) []int {
	var ids []int
	for id := 0; id < t.VocabSize(); id++ {
		if t.IsEOG(id) {
			ids = append(ids, id)
		}
	}
	if t.EOS() >= 0 && !t.IsEOG(t.EOS()) {
		ids = append(ids, t.EOS())
	}
	if t.BOS() >= 0 {
		ids = append(ids, t.BOS())
	}
	return ids
}

func loadTokenizer(c *cli.Context, meta map[string]any, format, modelPath string) (*tokenizer.Tokenizer, error) {
	if p := c.String("tokenizer"); p != "" {
		return tokenizer.Load(p)
	}
	return tokenizer.ForModel(modelPath, meta, format)
}

// writeFileAtomic writes through a temp file in the same directory and
// renames it into place, so a failure never leaves a partial file.
func writeFileAtomic(path string, write func(f *os.File) error) error {
	f, err := os.CreateTemp(dirOf(path), ".tmp-"+baseOf(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := write(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
