package main

import (
	"context"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/image/registry"
	"github.com/safe-run/safe-run/internal/cli"
	"github.com/safe-run/safe-run/internal/handoff"
	"github.com/safe-run/safe-run/internal/rootless"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/plan"
)

func runCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run SERVICE.toml",
		Short: "Run the service in the foreground (the default command)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runService(cmd.Context(), g, args[0])
		},
	}
}

func runService(ctx context.Context, g *globals, path string) error {
	job, entered, err := planRun(ctx, g, path, g.report())
	if entered || err != nil {
		return err
	}
	// Only the launcher stays: safe-run takes this process over.
	return handoff.Exec(handoff.Handoff{Job: job, Quiet: g.quiet, Debug: g.debug}, cli.HelperPath("safe-run"))
}

// planRun is how run and profile record begin: without root, re-executed
// in a user namespace of the user's own (entered: it ran there, and its
// status is in the error); otherwise the service planned and enforced on
// this host, ready for the launcher. report gets the rootless notes and
// the image progress (nil: none).
func planRun(ctx context.Context, g *globals, path string, report io.Writer) (job *plan.Job, entered bool, err error) {
	facts := host.Probe()
	code, entered, err := rootless.Enter(facts, g.args, path, cli.DefaultDirs(), report, g.log(), nil)
	if entered {
		if err == nil && code != 0 {
			err = exitStatus(code)
		}
		return nil, true, err
	}
	popts := g.planOptions()
	popts.Progress, popts.CheckPaths = report, launcher.CheckPaths
	if job, err = plan.Build(ctx, path, facts, popts); err != nil {
		return nil, false, err
	}
	return job, false, launcher.Enforce(ctx, job, facts)
}

// planOptions are the plan.Options of this install: its directories, the
// helpers it ships, the registry client, and the logger.
func (g *globals) planOptions() plan.Options {
	return plan.Options{
		Logger:      g.log(),
		Dirs:        cli.DefaultDirs(),
		InitPath:    cli.HelperPath("safe-run-init"),
		JanitorPath: cli.HelperPath("safe-run-janitor"),
		Registry: func(repo name.Repository, allowHTTP bool) image.Registry {
			return registry.New(repo, allowHTTP, nil)
		},
	}
}
