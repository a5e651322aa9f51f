// Command offload runs Llama-family models whose weights do not fit on the
// GPU: weights stay memory-mapped on the host, a contextually sparse model
// drafts tokens moving only the selected FFN rows, and every --window tokens
// the full model checks the window in one batched pass (Sirius).
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"offload/internal/atomicfile"
)

// cleanupOnSignal makes SIGINT and SIGTERM remove the temp files of any
// write in progress (convert, synth, --trace: internal/atomicfile registers
// them) so an interrupted command leaves nothing behind, then exit with
// 128+signal as a killed process would. The handler is active only while a
// temp file exists: otherwise the signals keep their default action, or the
// command's own handling (serve and chat shut down, run reports).
func cleanupOnSignal() {
	atomicfile.OnSignal(func(sig os.Signal, removed []string) {
		msg := "offload: interrupted by " + sigName(sig)
		if len(removed) > 0 {
			msg += "; removed the partial output " + strings.Join(removed, ", ")
		}
		fmt.Fprintln(os.Stderr, msg)
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		os.Exit(code)
	})
}

func sigName(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

func main() {
	cleanupOnSignal()
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		msg := strings.TrimSpace(err.Error())
		code := 1
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
		if msg != "" {
			// One line: errors.Join puts each joined error on its own.
			fmt.Fprintln(os.Stderr, "offload: "+strings.ReplaceAll(msg, "\n", "; "))
		}
		os.Exit(code)
	}
}

func init() { cli.FlagStringer = flagLine(cli.FlagStringer) }

// flagLine wraps urfave/cli's help line for a flag, dropping the default it
// appends on its own where the usage text already says the default (which
// is then computed, as for --ctx) and for a bool's "false": one default per
// flag, never two.
func flagLine(base cli.FlagStringFunc) cli.FlagStringFunc {
	return func(f cli.Flag) string {
		line := base(f)
		df, ok := f.(cli.DocGenerationFlag)
		if !ok {
			return line
		}
		def := df.GetDefaultText()
		if def == "" || !(strings.Contains(df.GetUsage(), "(default") || def == "false") {
			return line
		}
		auto := " (default: " + def + ")"
		if i := strings.LastIndex(line, auto); i >= 0 {
			line = line[:i] + line[i+len(auto):]
		}
		return line
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "offload",
		Version: version(),
		Usage:   "run 70B Llama models on one small GPU: sparse drafting, Sirius correction, streamed weights",
		Description: `offload keeps the weights in host memory (memory-mapped) and streams what does not fit on the
device layer by layer, copies overlapping compute. By default it decodes with Sirius: a Griffin-sparse
model drafts tokens moving only the selected FFN rows, and every --window tokens the full model checks
the window in one batched pass and corrects the first wrong token. Every byte and millisecond is counted.

Start with:  offload run --prompt "Once upon a time" -n 64
Then:        offload bench, offload plan --shape llama-3-70b, offload inspect MODEL`,
		EnableBashCompletion: true,
		Suggest:              true,
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
		// Without a command: help; with an unknown one: say so, with the
		// nearest command's name.
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.ShowAppHelp(c)
			}
			return usageError(fmt.Sprintf("no command %q", c.Args().First()), suggestCommand(c.App.Commands, c.Args().First()), "offload --help")
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return flagUsageError(c.App.Flags, err, "offload --help")
		},
		// Errors come back to main, which prints them as one line.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	for _, cmd := range app.Commands {
		cmd := cmd
		cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			return flagUsageError(cmd.Flags, err, "offload "+cmd.Name+" --help")
		}
	}
	return app
}

// usageError is a one-line refusal of a command line, with a suggestion
// when there is one; exit code 2, as for any usage error.
func usageError(msg, suggestion, help string) error {
	if suggestion != "" {
		msg += "; did you mean " + suggestion + "?"
	}
	return cli.Exit(msg+" (see "+help+")", 2)
}

// flagUsageError turns the flag package's "flag provided but not defined:
// -promt" into one line that names the flag as typed and suggests the
// nearest one. Other usage errors (a bad number) keep their words.
func flagUsageError(flags []cli.Flag, err error, help string) error {
	const undefined = "flag provided but not defined: "
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, undefined)
	if !ok {
		return usageError(msg, "", help)
	}
	name = strings.TrimLeft(name, "-")
	dashes := "--"
	if len(name) == 1 {
		dashes = "-"
	}
	return usageError("unknown flag "+dashes+name, suggestFlag(flags, name), help)
}

// suggestFlag is urfave/cli's suggestion (Jaro-Winkler over every name and
// alias) for a mistyped flag, kept only when it is a near miss: for a name
// that resembles nothing, no suggestion beats a wrong one.
func suggestFlag(flags []cli.Flag, typed string) string {
	if cli.SuggestFlag == nil {
		return ""
	}
	s := cli.SuggestFlag(flags, typed, false)
	if !nearMiss(typed, strings.TrimLeft(s, "-")) {
		return ""
	}
	return s
}

// suggestCommand does the same for a mistyped command.
func suggestCommand(cmds []*cli.Command, typed string) string {
	best := ""
	for _, c := range cmds {
		for _, name := range c.Names() {
			if nearMiss(typed, name) && (best == "" || editDistance(typed, name) < editDistance(typed, best)) {
				best = name
			}
		}
	}
	return best
}

// nearMiss says whether b is a plausible intended spelling of a: at most
// one edit per three letters of the longer (a swap of neighbours counts as
// one). Names of one or two letters are too short to guess from.
func nearMiss(a, b string) bool {
	if len(a) < 3 || b == "" {
		return false
	}
	return editDistance(a, b) <= max(1, max(len(a), len(b))/3)
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of adjacent letters.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// version is the module version and the VCS commit the binary was built
// from, as the Go toolchain stamped them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (built without module support)"
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		v += ", commit " + rev[:min(12, len(rev))]
		if dirty {
			v += " with local changes"
		}
		if when != "" {
			v += " (" + when + ")"
		}
	} else {
		v += ", commit unknown (built outside a git checkout, or with -buildvcs=false)"
	}
	return v + ", " + bi.GoVersion
}
