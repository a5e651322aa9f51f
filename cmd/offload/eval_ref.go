package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"offload"
	"offload/device"
	"offload/engine"
)

// referenceFlag is `eval --reference`: compare with another model's dense
// output instead of this model's (the untouched file a bundled or quantized
// one was made from).
func referenceFlag() cli.Flag {
	return &cli.StringFlag{Name: "reference", Usage: "a reference model (e.g. the file this one was converted from): its dense output is the baseline every mode's agreement is measured against, and every output is scored (NLL) under it"}
}

// evalRef is the reference model's dense outputs and a session that scores
// under it.
type evalRef struct {
	name   string
	tokens [][]int
	scorer *offload.Session
	model  *offload.Model
	dev    device.Device
}

func (r *evalRef) Close() {
	r.scorer.Close()
	r.model.Close()
	r.dev.Close()
}

// loadEvalRef decodes every prompt densely with the --reference model (nil
// without the flag), on a device of its own kind without the evaluated
// model's memory limit or link pacing (the reference is only a baseline).
// The prompts are encoded with the evaluated model's tokenizer; the
// reference must share its vocabulary.
func loadEvalRef(c *cli.Context, ds deviceSettings, vocab int, enc [][]int, base offload.Request, dec engine.Decoding, n, maxPrompt int) (*evalRef, error) {
	path := c.String("reference")
	if path == "" {
		return nil, nil
	}
	m, err := offload.Load(path, c.String("tokenizer"))
	if err != nil {
		return nil, fmt.Errorf("--reference: %w", err)
	}
	if m.Config.Vocab != vocab {
		m.Close()
		return nil, fmt.Errorf("--reference %s: vocabulary of %d tokens, the evaluated model has %d", path, m.Config.Vocab, vocab)
	}
	ds.cfg.Capacity, ds.cfg.Link = 0, 0
	dev, _, err := ds.open()
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("--reference: %w", err)
	}
	opt, _ := engineOptions(c, m, dec, n, maxPrompt) // eval already said if --ctx was capped
	s, err := m.NewSession(dev, opt)
	if err != nil {
		m.Close()
		dev.Close()
		return nil, fmt.Errorf("--reference engine: %w", flagErr(err))
	}
	r := &evalRef{name: m.Name, scorer: s, model: m, dev: dev}
	for i := range enc {
		req := base
		req.Tokens = enc[i]
		res, err := s.Generate(context.Background(), req, nil)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("--reference, prompt %d: %w", i+1, flagErr(err))
		}
		r.tokens = append(r.tokens, res.Tokens)
	}
	fmt.Fprintf(os.Stderr, "eval: reference %s done\n", m.Name)
	return r, nil
}

// printRefTable prints, per prompt, how this model's dense output agrees
// with the reference's, and both outputs' NLL under the reference.
func printRefTable(name string, rows []EvalRow) {
	fmt.Printf("\nreference %s: its dense output is the baseline above; NLL under the reference\n", name)
	fmt.Printf("%-28s %13s %23s\n", "prompt", "dense=ref", "NLL ref/dense")
	for _, r := range rows {
		fmt.Printf("%-28s %6.0f%% %5s %11.3f/%7.3f\n", clip(r.Prompt, 28), 100*r.DenseAgree, divAt(r.DenseDiverge), r.RefNLL, r.DenseNLL)
	}
}
