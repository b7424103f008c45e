package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/mattn/go-isatty"
	"github.com/posener/complete"
	"github.com/willabides/kongplete"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

// CLI is the command tree.
type CLI struct {
	Globals

	Validate       ValidateCmd       `cmd:"" help:"Check a configuration: syntax, references, types and values."`
	Simulate       SimulateCmd       `cmd:"" help:"Send simulated traffic through a service's real balancing strategy and report how it spreads."`
	Invoke         InvokeCmd         `cmd:"" help:"Send a real gRPC call through the balancer and print the answer and who served it."`
	Load           LoadCmd           `cmd:"" help:"Drive real traffic through the balancer (a rate or a number in flight) and report it as simulate does."`
	Health         HealthCmd         `cmd:"" help:"Show every endpoint's health; --force checks them now with grpc.health.v1."`
	DemoServer     DemoServerCmd     `cmd:"" help:"Run a PeerVault demo server to try pvlb against."`
	Plugins        PluginsCmd        `cmd:"" help:"List the discovery providers found, bundled and external."`
	InternalPlugin InternalPluginCmd `cmd:"" hidden:"" help:"Serve a bundled discovery provider (pvlb runs this itself)."`
	Completion     CompletionCmd     `cmd:"" help:"Print a shell completion script: bash, zsh or fish."`
	Version        VersionCmd        `cmd:"" help:"Print pvlb's version, the Go version and the commit it was built from."`
	Help           HelpCmd           `cmd:"" help:"Show help for a command: pvlb help simulate."`
}

// Globals are flags every command takes.
type Globals struct {
	Config      []string         `short:"c" default:"." env:"PVLB_CONFIG" sep:"none" predictor:"hcl" help:"Configuration: a .hcl file, or a directory whose *.hcl files are read together. Repeat -c to read several as one configuration."`
	LogLevel    string           `default:"warn" enum:"debug,info,warn,error" help:"Log level: ${enum}."`
	LogFormat   string           `default:"text" enum:"text,json" help:"Log format: ${enum}. Every change of state (health, ejection, panic mode, discovery, plugin restarts) is one line with its service and server."`
	VersionFlag kong.VersionFlag `name:"version" help:"Print the version and exit."`
}

// app is what every command's Run receives.
type app struct {
	// ctx ends when the command should stop (a signal): commands that
	// wait on the network or on plugins watch it.
	ctx            context.Context
	stdout, stderr io.Writer
	log            *slog.Logger
	globals        *Globals
	host           *discovery.Host // made by pluginHost on first use
	// args are the command's arguments, for a report to say how it was
	// made.
	args []string
}

const description = `Client-side load balancing for gRPC services.

pvlb reads a declarative HCL configuration of services, their balancing
strategies, health policies and discovery sources. It checks that
configuration (validate), shows what it does to traffic (simulate), and
sends real calls through it (invoke, health), all with the same strategy
code that the Go library uses.

Exit status: 0 success, 1 invalid input or a failed check, 2 internal error.`

// exitCode carries kong's requested exit out of Parse without os.Exit, so
// Main can run inside tests.
type exitCode int

// Main runs pvlb with args and returns its exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	return MainContext(context.Background(), args, stdout, stderr)
}

// MainContext is Main for a command that ends when ctx does.
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) (status int) {
	var a *app
	defer func() {
		if a != nil && a.host != nil {
			a.host.Close() // every plugin process ends with the command, panic or not
		}
	}()
	defer func() {
		switch r := recover().(type) {
		case nil:
		case exitCode:
			status = int(r)
		default:
			// Never show a Go stack trace to a user; the message suffices
			// for a bug report, and PVLB_TRACEBACK shows more.
			fmt.Fprintf(stderr, "pvlb: internal error: %v\nThis is a bug in pvlb; please report it with the command you ran.\n", r)
			if os.Getenv("PVLB_TRACEBACK") != "" {
				fmt.Fprintf(stderr, "%s", debug.Stack())
			}
			status = 2
		}
	}()
	// Nothing pvlb prints shows a value from env() or a sensitive setting.
	stdout, stderr = redacting{stdout}, redacting{stderr}
	switch {
	case len(args) == 0 && os.Getenv("COMP_LINE") == "":
		args = []string{"--help"} // as kubectl: the usage, not an error
	case len(args) > 0 && args[0] == "help":
		args = append(args[1:len(args):len(args)], "--help")
	}
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("pvlb"),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitCode(code)) }),
		kong.Vars{"version": "pvlb " + versionString(), "strategies": strings.Join(lb.StrategyKinds(), ", ")},
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
	)
	if err != nil {
		fmt.Fprintf(stderr, "pvlb: internal error: %v\n", err)
		return 2
	}
	kongplete.Complete(parser, kongplete.WithPredictor("hcl", complete.PredictOr(complete.PredictFiles("*.hcl"), complete.PredictDirs("*"))))
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "pvlb: error: %v\n", err)
		var pe *kong.ParseError
		if errors.As(err, &pe) && pe.Context != nil && pe.Context.Selected() != nil {
			fmt.Fprintf(stderr, "Run 'pvlb %s --help' for usage.\n", pe.Context.Selected().Name)
		} else {
			fmt.Fprintln(stderr, "Run 'pvlb --help' for usage.")
		}
		return 1
	}
	a = &app{ctx: ctx, stdout: stdout, stderr: stderr, globals: &cli.Globals, log: newLogger(stderr, cli.LogLevel, cli.LogFormat), args: args}
	err = kctx.Run(a)
	if ctx.Err() != nil && err != nil {
		return 1 // interrupted: the shell knows why
	}
	return exitStatus(stderr, err)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // kong's enums already checked both
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func versionString() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// userError is a mistake in what the user asked for: exit status 1.
type userError struct{ err error }

func (e userError) Error() string { return e.err.Error() }
func (e userError) Unwrap() error { return e.err }

func userErrorf(format string, args ...any) error {
	return userError{fmt.Errorf(format, args...)}
}

// errReported means the problem was already printed (diagnostics): exit 1.
var errReported = errors.New("reported")

func exitStatus(stderr io.Writer, err error) int {
	var ue userError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errReported):
		return 1
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "pvlb: error: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "pvlb: internal error: %v\n", err)
	return 2
}

// redacting writes through to w with every known secret replaced (see
// config.Redact). pvlb writes whole lines, so a secret is not split
// between writes.
type redacting struct{ w io.Writer }

func (r redacting) Write(p []byte) (int, error) {
	if s := config.Redact(string(p)); s != string(p) {
		if _, err := io.WriteString(r.w, s); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return r.w.Write(p)
}

// file returns the *os.File under w, if any.
func file(w io.Writer) (*os.File, bool) {
	for {
		switch v := w.(type) {
		case redacting:
			w = v.w
		case pipeWatch:
			w = v.w
		case *os.File:
			return v, true
		default:
			return nil, false
		}
	}
}

// isTerminal reports whether w is a terminal, for colour and progress.
func isTerminal(w io.Writer) bool {
	f, ok := file(w)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// useColor follows the NO_COLOR convention.
func useColor(w io.Writer) bool {
	return isTerminal(w) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// plural returns "1 service" or "2 services".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// joinNames lists names for messages: "a, b, c".
func joinNames(names []string) string { return strings.Join(names, ", ") }
