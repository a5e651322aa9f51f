package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"offload"
	"offload/chat"
	"offload/engine"
	"offload/repl"
	"offload/server"
)

// defaultServeContext bounds the KV cache of serve and chat when --ctx is not
// given: a long-context model's full window would reserve gigabytes of KV
// cache per branch that a local chat rarely uses.
const defaultServeContext = 4096

// sessionFlags are what serve and chat share: the model, its template, the
// decoding and the device.
func sessionFlags() []cli.Flag {
	flags := []cli.Flag{
		modelFlag(),
		&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer file (default: the one in or beside the model)"},
		&cli.StringFlag{Name: "chat-template", Usage: "Jinja chat template file (default: the model's own, else a built-in Llama 2/3 template)"},
	}
	for _, f := range decodeFlags() {
		switch f.Names()[0] {
		case "temperature", "top-p", "seed":
			continue // per request
		}
		flags = append(flags, f)
	}
	return append(flags, deviceFlags()...)
}

// openSession loads the model and starts a session sized for chat: a KV
// cache of --ctx positions (default: the model's, at most 4096).
func openSession(c *cli.Context) (*offload.Session, *chat.Template, func(), error) {
	dec, err := readDecoding(c, c.String("mode"))
	if err != nil {
		return nil, nil, nil, err
	}
	ds, err := readDevice(c)
	if err != nil {
		return nil, nil, nil, err
	}
	if c.Int("ctx") < 0 {
		return nil, nil, nil, fmt.Errorf("--ctx %d must be positive", c.Int("ctx"))
	}
	m, err := loadModel(c)
	if err != nil {
		return nil, nil, nil, err
	}
	var tmpl *chat.Template
	if p := c.String("chat-template"); p != "" {
		tmpl, err = chat.FromFile(p, m.Tok)
	} else {
		tmpl, err = chat.ForModel(m.Path, m.File.Meta, m.File.Format, m.Tok)
	}
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	dev, note, err := ds.open()
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	ctxLen := c.Int("ctx")
	if ctxLen == 0 {
		ctxLen = min(m.Config.MaxSeq, defaultServeContext)
	}
	s, err := m.NewSession(dev, engine.Options{Decoding: dec, Context: min(ctxLen, m.Config.MaxSeq), NoPrefetch: c.Bool("no-prefetch"), MaxBatch: 512})
	if err != nil {
		dev.Close()
		m.Close()
		return nil, nil, nil, fmt.Errorf("%s: %w", m.Path, flagErr(err))
	}
	s.DeviceNote = note
	if c.Bool("plan") {
		fmt.Fprint(os.Stderr, s.Engine.Prof.Plan.String())
	}
	return s, tmpl, func() { s.Close(); dev.Close(); m.Close() }, nil
}

func serveCommand() *cli.Command {
	flags := append(sessionFlags(),
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to listen on (the default serves this machine only)"},
		&cli.IntFlag{Name: "port", Value: 8080, Usage: "port to listen on"},
		&cli.StringFlag{Name: "api-key", EnvVars: []string{"OFFLOAD_API_KEY"}, Usage: "require \"Authorization: Bearer KEY\" on /v1/ requests"},
		&cli.IntFlag{Name: "queue", Value: 16, Usage: "requests that may wait while one generates; more get 429 with Retry-After"},
	)
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the model over the OpenAI HTTP API (chat and text completions, streaming)",
		Description: `Loads the model once and answers POST /v1/chat/completions and /v1/completions (streamed as
server-sent events or not), GET /v1/models and GET /health, as the OpenAI API does, so editors, chat
UIs and agent frameworks can use it. Each response carries the run report (bytes per token, AAL,
phase times) in an "offload" field. One generation runs at a time; up to --queue requests wait,
more are refused with 429. A client that disconnects stops its generation at the next layer.
SIGTERM or Ctrl-C finishes (or, after 30 s, cancels) the running generation and exits.

Example:
  offload serve --model llama-3-8b-instruct.gguf --port 8080
  curl localhost:8080/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'`,
		Flags: flags,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q", c.Args().First())
			}
			s, tmpl, closeAll, err := openSession(c)
			if err != nil {
				return err
			}
			defer closeAll()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			srv, err := server.New(server.Config{Host: c.String("host"), Port: c.Int("port"), APIKey: c.String("api-key"),
				QueueSize: c.Int("queue"), Log: log}, s.Backend(tmpl))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ln, err := srv.Listen()
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "serving %s on http://%s (OpenAI API under /v1/; Ctrl-C to stop)\n", s.Model.Name, ln.Addr())
			return srv.Serve(ctx, ln)
		},
	}
}

func chatCommand() *cli.Command {
	flags := append(sessionFlags(),
		&cli.StringFlag{Name: "system", Usage: "system prompt"},
		&cli.IntFlag{Name: "n", Value: 512, Usage: "most tokens per answer"},
		&cli.Float64Flag{Name: "temperature", Aliases: []string{"t"}, Value: 0.7, Usage: "0 is greedy; above 0 samples"},
		&cli.Float64Flag{Name: "top-p", Aliases: []string{"p"}, Value: 0.9, Usage: "nucleus sampling cutoff when --temperature > 0"},
		&cli.Uint64Flag{Name: "seed", Aliases: []string{"s"}, Usage: "random seed (0: a new one each answer)"},
	)
	return &cli.Command{
		Name:  "chat",
		Usage: "talk to an instruct model in the terminal",
		Description: `An interactive conversation using the model's chat template. The history is kept within the
context (the oldest turns are dropped first). Commands: /reset forgets the conversation, /report
shows the run report of the last answer, /exit quits (Ctrl-D too). Ctrl-C stops the answer being
written, not the program.

Example: offload chat --model llama-3-8b-instruct.gguf --system "You are terse."`,
		Flags: flags,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q", c.Args().First())
			}
			if _, err := readSampling(c, max(c.Int("n"), 1)); err != nil {
				return err
			}
			if c.Int("n") < 1 {
				return fmt.Errorf("-n must be at least 1")
			}
			s, tmpl, closeAll, err := openSession(c)
			if err != nil {
				return err
			}
			defer closeAll()
			ints := make(chan os.Signal, 1)
			signal.Notify(ints, os.Interrupt)
			defer signal.Stop(ints)
			return repl.Run(context.Background(), s.Backend(tmpl), repl.Config{System: c.String("system"), MaxTokens: c.Int("n"),
				Temperature: c.Float64("temperature"), TopP: c.Float64("top-p"), Seed: c.Uint64("seed")}, os.Stdin, os.Stdout, ints)
		},
	}
}
