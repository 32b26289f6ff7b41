package main

import (
	"context"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/image/registry"
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
	if launcher.MustEnterRootless() {
		var report io.Writer
		if !g.quiet {
			report = g.stderr
		}
		code, err := launcher.RunRootless(g.args, launcher.DefaultDirs(), report)
		if err == nil && code != 0 {
			err = exitStatus(code)
		}
		return err
	}
	popts := planOptions()
	popts.Allocate = true
	if !g.quiet {
		popts.Progress = g.stderr
	}
	p, err := plan.Prepare(ctx, path, popts)
	if err != nil {
		return err
	}
	// Only the launcher stays: safe-run takes this process over.
	return launcher.Supervise(p.Job(launcher.DefaultDirs(), launcher.HelperPath("safe-run-janitor"), g.quiet), launcher.HelperPath("safe-run"))
}

// planOptions are the plan.Options of this install: its directories, the
// init it ships, and the registry client.
func planOptions() plan.Options {
	return plan.Options{
		Dirs:     launcher.DefaultDirs(),
		InitPath: launcher.HelperPath("safe-run-init"),
		Registry: func(repo name.Repository, allowHTTP bool) image.Registry {
			return registry.New(repo, allowHTTP, nil)
		},
	}
}
