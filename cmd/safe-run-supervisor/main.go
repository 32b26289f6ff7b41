// Command safe-run-supervisor runs one container and supervises it for
// safe-run: `safe-run run` prepares the service (manifest, policy, image,
// profiles, spec) and then replaces itself with this binary, handing it the
// job. It keeps safe-run's pid and stdio, stays in the foreground for the
// service's life, and exits with its status.
//
// It is a binary of its own because it is what stays resident and what
// libcontainer re-executes as the init of every container: it links the
// launcher and nothing of the command line (registry client, exports,
// audit), whose package initialisation would otherwise run on every
// container start and whose pages would stay mapped.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/launcher"
)

func main() {
	// libcontainer logs through logrus; what matters reaches the
	// supervisor as errors.
	logrus.SetOutput(io.Discard)
	os.Exit(run())
}

func run() int {
	job, err := launcher.ReadJob(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "safe-run-supervisor: %v\n", err)
		return launcher.ExitFailed
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	code, err := launcher.Run(ctx, job.Spec, job.Host, job.Options(launcher.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
	if err != nil {
		fmt.Fprintf(os.Stderr, "safe-run: %v\n", err)
		return launcher.ExitCode(err)
	}
	return code
}
