package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"offload/pager"
	"offload/tokenizer"
)

// tokenizeCommand prints the token ids of a text and their pieces, to check
// what a model's tokenizer does with a prompt.
func tokenizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "tokenize",
		Usage:     "print the token ids and pieces of TEXT",
		ArgsUsage: "TEXT",
		Description: `Encodes TEXT with a model's tokenizer (--model: the GGUF's embedded one, tokenizer.json in a
Hugging Face directory, or the tokenizer.bin / tok*.bin beside a llama2.c checkpoint) or with a
tokenizer file (--tokenizer: tokenizer.json, a Llama 3 tokenizer.model rank file, a llama2.c
tokenizer.bin or a GGUF). Special-token strings such as <|eot_id|> in TEXT become their ids.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "model whose tokenizer to use (GGUF, Hugging Face directory, llama2.c .bin)"},
			&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer file (instead of --model)"},
			&cli.BoolFlag{Name: "bos", Usage: "prepend BOS"},
			&cli.BoolFlag{Name: "json", Usage: `print {"ids": [...], "pieces": [...]}`},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("tokenize: want exactly one TEXT argument, got %d (quote the text)", c.NArg())
			}
			tok, err := tokenizerFromFlags(c.String("model"), c.String("tokenizer"))
			if err != nil {
				return err
			}
			ids := tok.Encode(c.Args().First(), c.Bool("bos"))
			pieces := make([]string, len(ids))
			for i, id := range ids {
				pieces[i] = tok.Piece(id)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				return enc.Encode(struct {
					IDs    []int    `json:"ids"`
					Pieces []string `json:"pieces"`
				}{ids, pieces})
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "%s tokenizer, %d tokens, %s\n", tok.Kind(), tok.VocabSize(), tok.Source())
			// piece is the vocabulary's spelling (▁ or Ġ for spaces); text
			// is the bytes the token prints as.
			fmt.Fprintln(w, "id\tpiece\ttext")
			for i, id := range ids {
				fmt.Fprintf(w, "%d\t%s\t%s\n", id, strconv.Quote(pieces[i]), strconv.Quote(tok.Decode([]int{id})))
			}
			fmt.Fprintf(w, "%d tokens\n", len(ids))
			return w.Flush()
		},
	}
}

// tokenizerFromFlags loads the tokenizer named by --tokenizer, or the one
// of the model named by --model.
func tokenizerFromFlags(modelPath, tokPath string) (*tokenizer.Tokenizer, error) {
	switch {
	case tokPath != "" && modelPath != "":
		return nil, fmt.Errorf("tokenize: give --model or --tokenizer, not both")
	case tokPath != "":
		return tokenizer.Load(tokPath)
	case modelPath == "":
		return nil, fmt.Errorf("tokenize: give --model PATH or --tokenizer PATH")
	}
	m, err := pager.Open(modelPath)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	tok, err := tokenizer.ForModel(modelPath, m.Meta, m.Format)
	if err != nil {
		return nil, fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return tok, nil
}
