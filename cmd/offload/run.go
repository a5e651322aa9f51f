package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"offload/engine"
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
	n := c.Int("n")
	if n < 1 {
		return fmt.Errorf("-n must be at least 1")
	}
	dec, err := readDecoding(c, c.String("mode"))
	if err != nil {
		return err
	}
	req, err := readSampling(c, n)
	if err != nil {
		return err
	}
	req.Stop = c.StringSlice("stop")
	ds, err := readDevice(c)
	if err != nil {
		return err
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	req.Tokens = m.Encode(c.String("prompt"))
	if len(req.Tokens) == 0 {
		return fmt.Errorf("the prompt is empty and this tokenizer has no BOS token to start from: pass --prompt")
	}
	dev, note, err := ds.open()
	if err != nil {
		return err
	}
	defer dev.Close()
	opt := engineOptions(c, m, dec, n, len(req.Tokens))
	if len(req.Tokens) > opt.MaxBatch && term.IsTerminal(int(os.Stderr.Fd())) {
		bar := progressbar.NewOptions(len(req.Tokens), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("prefill"), progressbar.OptionClearOnFinish())
		opt.PrefillProgress = func(done, _ int) { bar.Set(done) }
	}
	s, err := m.NewSession(dev, opt)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Path, flagErr(err))
	}
	defer s.Close()
	s.DeviceNote = note
	if c.Bool("plan") {
		fmt.Fprint(os.Stderr, s.Engine.Prof.Plan.String())
	}
	jsonOut := c.Bool("json")
	out := bufio.NewWriter(os.Stdout)
	// Echo the prompt as llama2.c's run does.
	stream := m.Tok.NewStream()
	var prompt string
	for _, id := range req.Tokens {
		prompt += stream.Next(id)
	}
	if !jsonOut {
		out.WriteString(prompt)
		out.Flush()
	}
	res, genErr := s.Generate(context.Background(), req, func(piece string) error {
		if jsonOut {
			return nil
		}
		out.WriteString(piece)
		return out.Flush()
	})
	if !jsonOut {
		out.WriteString("\n")
		out.Flush()
	}
	if res == nil {
		return flagErr(genErr)
	}
	rep := s.Report(res)
	if genErr != nil {
		rep.Notes = append(rep.Notes, "generation stopped early: "+flagErr(genErr).Error())
	}
	if tr := c.String("trace"); tr != "" {
		if err := writeFileAtomic(tr, func(f *os.File) error { return s.Engine.Prof.WriteTrace(f) }); err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
	}
	if jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Text   string `json:"text"`
			Tokens []int  `json:"tokens"`
			*engine.Report
		}{prompt + res.Text + "\n", res.Tokens, rep})
	}
	fmt.Fprint(os.Stderr, "\n"+rep.String())
	return flagErr(genErr)
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
