// Command tollgate is the one binary of tollgate: the server (`serve`,
// `dev`), its maintenance (`migrate`, `keys`) and the operator's CLI
// (`account`, `token`, `audit`), a client of the management API.
//
// This is the only package that wires the others together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/obs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	logOut.Flush()
	os.Exit(code)
}

// logOut is where the server's log goes: standard error, in batches
// (obs.LogSink); main flushes it before the process exits.
var logOut = obs.NewLogSink(os.Stderr)

// env looks up an environment variable; tests pass their own.
type env func(string) (string, bool)

func (e env) get(k string) string {
	v, _ := e(k)
	return v
}

// run executes one command line and returns the exit status. Errors go to
// stderr as one line: the message, naming the field where there is one.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookup env) int {
	root := newRootCmd(lookup)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "tollgate: "+errorText(err))
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

func newRootCmd(lookup env) *cobra.Command {
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "Authentication proxy for container registries and apt/apk repositories",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cl := &clientFlags{env: lookup}
	root.AddCommand(
		newServeCmd(lookup),
		newDevCmd(lookup),
		newMigrateCmd(lookup),
		newKeysCmd(),
		newAccountCmd(cl),
		newTokenCmd(cl),
		newAuditCmd(cl),
		newUserCmd(cl),
		newUsageCmd(lookup),
		newWebhookCmd(cl),
		newTrustCmd(cl), // trust.go
	)
	return root
}
