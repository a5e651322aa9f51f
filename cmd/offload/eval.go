package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"offload"
	"offload/engine"
)

func evalCommand() *cli.Command {
	flags := []cli.Flag{
		modelFlag(),
		&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer file (default: the one in or beside the model)"},
		&cli.StringFlag{Name: "prompts", Required: true, Usage: "file with one prompt per line (blank lines and lines starting with # are skipped)"},
		&cli.IntFlag{Name: "n", Value: 64, Usage: "tokens to generate per prompt and mode"},
		&cli.BoolFlag{Name: "json", Usage: "print per-prompt results and the summary as JSON"},
		referenceFlag(),
	}
	flags = append(flags, except(decodeFlags(), "mode")...) // eval runs every mode
	flags = append(flags, deviceFlags()...)
	return &cli.Command{
		Name:  "eval",
		Usage: "compare dense, sparse and Sirius outputs prompt by prompt: agreement with dense, NLL, AAL, bytes",
		Description: `For each prompt, generates with dense greedy decoding (the reference), the sparse model alone, and
Sirius, and reports how much of each output is identical to dense (and where it first diverges), the
mean negative log-likelihood of each output under the dense model, Sirius's AAL and corrections, and
the bytes moved per generated token.

Example: offload eval --prompts prompts.txt -n 64 --window 8`,
		Flags:  flags,
		Action: evalAction,
	}
}

// EvalRow is one prompt's comparison.
type EvalRow struct {
	Prompt            string  `json:"prompt"`
	DenseTokens       int     `json:"dense_tokens"`
	SparseAgree       float64 `json:"sparse_agree"`
	SparseDiverge     int     `json:"sparse_first_divergence"`
	SiriusAgree       float64 `json:"sirius_agree"`
	SiriusDiverge     int     `json:"sirius_first_divergence"`
	DenseNLL          float64 `json:"dense_nll"`
	SparseNLL         float64 `json:"sparse_nll"`
	SiriusNLL         float64 `json:"sirius_nll"`
	AAL               float64 `json:"aal"`
	CorrectionsPer100 float64 `json:"corrections_per_100"`
	DenseBytesPerTok  float64 `json:"dense_bytes_per_token"`
	SparseBytesPerTok float64 `json:"sparse_bytes_per_token"`
	SiriusBytesPerTok float64 `json:"sirius_bytes_per_token"`
	// With --reference: this model's dense output against the reference's,
	// and the reference output's NLL (all NLLs are then under the reference).
	DenseAgree   float64 `json:"dense_agree,omitempty"`
	DenseDiverge int     `json:"dense_first_divergence,omitempty"`
	RefNLL       float64 `json:"reference_nll,omitempty"`
}

// agreement is the fraction of positions where got equals ref (over the
// longer length) and the first position where they differ (-1: none).
func agreement(ref, got []int) (float64, int) {
	n := max(len(ref), len(got))
	if n == 0 {
		return 1, -1
	}
	same, first := 0, -1
	for i := 0; i < n; i++ {
		if i < len(ref) && i < len(got) && ref[i] == got[i] {
			same++
		} else if first < 0 {
			first = i
		}
	}
	return float64(same) / float64(n), first
}

func evalAction(c *cli.Context) error {
	n := c.Int("n")
	base, err := readSampling(c, n)
	if err != nil {
		return err
	}
	modes := []string{"dense", "sparse", "sirius"}
	decs := map[string]engine.Decoding{}
	for _, name := range modes {
		if decs[name], err = readDecoding(c, name); err != nil {
			return err
		}
	}
	ds, err := readDevice(c)
	if err != nil {
		return err
	}
	prompts, err := readPrompts(c.String("prompts"))
	if err != nil {
		return err
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	dev, note, err := ds.open()
	if err != nil {
		return err
	}
	defer dev.Close()
	maxPrompt := 0
	enc := make([][]int, len(prompts))
	for i, p := range prompts {
		enc[i] = m.Encode(p)
		maxPrompt = max(maxPrompt, len(enc[i]))
	}
	// One session at a time, so a --device-mem budget applies to each mode
	// as it would to a real run.
	newSession := func(name string) (*offload.Session, error) {
		opt, ctxNote := engineOptions(c, m, decs[name], n, maxPrompt)
		if ctxNote != "" && name == modes[0] {
			fmt.Fprintln(os.Stderr, "note: "+ctxNote)
		}
		s, err := m.NewSession(dev, opt)
		if err != nil {
			return nil, fmt.Errorf("%s engine: %w", name, flagErr(err))
		}
		return s, nil
	}
	ctx := context.Background()
	outs := map[string][][]int{}
	bytesPer := map[string][]float64{}
	sir := make([]*offload.Result, len(prompts))
	for _, name := range modes {
		s, err := newSession(name)
		if err != nil {
			return err
		}
		for i := range prompts {
			before := s.Engine.Prof.DecodeBytes()
			req := base
			req.Tokens = enc[i]
			r, err := s.Generate(ctx, req, nil)
			if err != nil {
				s.Close()
				return fmt.Errorf("prompt %d, %s: %w", i+1, name, flagErr(err))
			}
			outs[name] = append(outs[name], r.Tokens)
			bytesPer[name] = append(bytesPer[name], float64(s.Engine.Prof.DecodeBytes()-before)/float64(max(1, r.Decoded())))
			if name == "sirius" {
				sir[i] = r
			}
		}
		s.Close()
		fmt.Fprintf(os.Stderr, "eval: %s done\n", name)
	}
	baseline := outs["dense"]
	ref, err := loadEvalRef(c, ds, m.Config.Vocab, enc, base, decs["dense"], n, maxPrompt)
	if err != nil {
		return err
	}
	var scorer *offload.Session
	if ref != nil {
		defer ref.Close()
		baseline, scorer = ref.tokens, ref.scorer
		outs["reference"] = ref.tokens
	} else {
		if scorer, err = newSession("dense"); err != nil {
			return err
		}
		defer scorer.Close()
	}
	var rows []EvalRow
	for i, p := range prompts {
		row := EvalRow{Prompt: p, DenseTokens: len(outs["dense"][i]), AAL: sir[i].Stats.AAL, CorrectionsPer100: sir[i].Stats.CorrectionsPer100(),
			DenseBytesPerTok: bytesPer["dense"][i], SparseBytesPerTok: bytesPer["sparse"][i], SiriusBytesPerTok: bytesPer["sirius"][i]}
		row.SparseAgree, row.SparseDiverge = agreement(baseline[i], outs["sparse"][i])
		row.SiriusAgree, row.SiriusDiverge = agreement(baseline[i], outs["sirius"][i])
		nll := map[string]*float64{"dense": &row.DenseNLL, "sparse": &row.SparseNLL, "sirius": &row.SiriusNLL}
		if ref != nil {
			row.DenseAgree, row.DenseDiverge = agreement(baseline[i], outs["dense"][i])
			nll["reference"] = &row.RefNLL
		}
		for name, dst := range nll {
			if *dst, err = scorer.Score(ctx, enc[i], outs[name][i]); err != nil {
				return fmt.Errorf("prompt %d: scoring %s: %w", i+1, name, err)
			}
		}
		rows = append(rows, row)
	}
	var sum EvalRow
	for _, r := range rows {
		sum.SparseAgree += r.SparseAgree / float64(len(rows))
		sum.SiriusAgree += r.SiriusAgree / float64(len(rows))
		sum.DenseNLL += r.DenseNLL / float64(len(rows))
		sum.SparseNLL += r.SparseNLL / float64(len(rows))
		sum.SiriusNLL += r.SiriusNLL / float64(len(rows))
		sum.AAL += r.AAL / float64(len(rows))
		sum.CorrectionsPer100 += r.CorrectionsPer100 / float64(len(rows))
		sum.DenseBytesPerTok += r.DenseBytesPerTok / float64(len(rows))
		sum.SparseBytesPerTok += r.SparseBytesPerTok / float64(len(rows))
		sum.SiriusBytesPerTok += r.SiriusBytesPerTok / float64(len(rows))
		sum.DenseAgree += r.DenseAgree / float64(len(rows))
		sum.RefNLL += r.RefNLL / float64(len(rows))
	}
	sum.Prompt = "mean"
	sum.SparseDiverge, sum.SiriusDiverge, sum.DenseDiverge = -1, -1, -1
	if c.Bool("json") {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		out := map[string]any{"model": m.Name, "device": dev.Name(), "window": c.Int("window"), "threshold": c.Float64("threshold"),
			"sparsity": c.String("sparsity"), "keep": c.Float64("keep"), "tokens": n, "prompts": rows, "mean": sum, "notes": nonEmpty(note)}
		if ref != nil {
			out["reference"] = ref.name
		}
		return e.Encode(out)
	}
	fmt.Printf("model %s, %d prompts, %d tokens each; sparse %s keep %g; Sirius window %d threshold %g\n",
		m.Name, len(rows), n, c.String("sparsity"), c.Float64("keep"), c.Int("window"), c.Float64("threshold"))
	base1, base2 := "sparse=dense", "sirius=dense"
	if ref != nil {
		base1, base2 = "sparse=ref", "sirius=ref"
	}
	fmt.Printf("%-28s %13s %13s %23s %6s %8s %26s\n", "prompt", base1, base2, "NLL dense/sparse/sirius", "AAL", "corr/100", "bytes/token d/sp/sir")
	for _, r := range append(rows, sum) {
		fmt.Printf("%-28s %6.0f%% %5s %6.0f%% %5s %7.3f/%7.3f/%7.3f %6.2f %8.1f %7s/%7s/%7s\n", clip(r.Prompt, 28),
			100*r.SparseAgree, divAt(r.SparseDiverge), 100*r.SiriusAgree, divAt(r.SiriusDiverge),
			r.DenseNLL, r.SparseNLL, r.SiriusNLL, r.AAL, r.CorrectionsPer100,
			kib(r.DenseBytesPerTok), kib(r.SparseBytesPerTok), kib(r.SiriusBytesPerTok))
	}
	if ref != nil {
		printRefTable(ref.name, append(rows, sum))
	}
	if note != "" {
		fmt.Println("note:", note)
	}
	return nil
}

func divAt(i int) string {
	if i < 0 {
		return "-"
	}
	return fmt.Sprintf("@%d", i)
}

func kib(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2fG", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fM", b/(1<<20))
	}
	return fmt.Sprintf("%.0fK", b/(1<<10))
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func readPrompts(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--prompts: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--prompts %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--prompts %s: no prompts in the file", path)
	}
	return out, nil
}
