// Command offload runs Llama-family models whose weights do not fit on the
// GPU: weights stay memory-mapped on the host, a contextually sparse model
// drafts tokens moving only the selected FFN rows, and every --window tokens
// the full model checks the window in one batched pass (Sirius).
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "offload",
		Usage: "run 70B Llama models on one small GPU: sparse drafting, Sirius correction, streamed weights",
		Description: `offload keeps the weights in host memory (memory-mapped) and streams what does not fit on the
device layer by layer, copies overlapping compute. By default it decodes with Sirius: a Griffin-sparse
model drafts tokens moving only the selected FFN rows, and every --window tokens the full model checks
the window in one batched pass and corrects the first wrong token. Every byte and millisecond is counted.

Start with:  offload run --prompt "Once upon a time" -n 64
Then:        offload bench, offload plan --shape llama-3-70b, offload inspect MODEL`,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			runCommand(),
			chatCommand(),
			serveCommand(),
			benchCommand(),
			evalCommand(),
			planCommand(),
			inspectCommand(),
			tokenizeCommand(),
			synthCommand(),
			convertCommand(),
		},
	}
	if err := app.Run(os.Args); err != nil {
		msg := err.Error()
		var ec cli.ExitCoder
		if errors.As(err, &ec) && msg == "" {
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "offload: "+strings.TrimSpace(msg))
		os.Exit(1)
	}
}
