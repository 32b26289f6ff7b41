package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/manifest"
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
	if os.Geteuid() != 0 && launcher.RootlessIDs() == 0 {
		var report func(string)
		if !g.quiet {
			report = func(s string) { fmt.Fprintln(g.stderr, "safe-run: "+s) }
		}
		code, err := launcher.RunRootless(g.args, launcher.DefaultDirs(), report)
		if err == nil && code != 0 {
			err = exitStatus(code)
		}
		return err
	}
	popts := launcher.PrepareOptions{
		Dirs:     launcher.DefaultDirs(),
		InitPath: helperPath("safe-run-init"),
		Allocate: true,
	}
	if !g.quiet {
		popts.Progress = g.stderr
	}
	p, err := launcher.Prepare(ctx, path, popts)
	if err != nil {
		return err
	}
	code, err := launcher.Run(ctx, p.Spec, p.Host, runOptions(g, p))
	if err != nil {
		return err
	}
	if code != 0 {
		return exitStatus(code)
	}
	return nil
}

// runOptions are the launcher's options for running p from the command
// line: the service's stdio and safe-run's own lines on safe-run's.
func runOptions(g *globals, p *launcher.Prepared) launcher.Options {
	opts := launcher.Options{
		Name:                 p.Service.Name,
		StateRoot:            launcher.DefaultDirs().State,
		JanitorPath:          helperPath("safe-run-janitor"),
		DataDir:              launcher.DefaultDirs().Data,
		StopSignal:           unix.Signal(p.Service.Process.StopSignal.Number),
		StopTimeout:          time.Duration(p.Service.Process.StopTimeout),
		AllowSensitiveMounts: p.Service.Allows(manifest.AllowSensitiveMounts),
		AppArmor:             p.AppArmor,
		Stdio:                launcher.Stdio{In: g.stdin, Out: g.stdout, Err: g.stderr},
		Notes:                p.Notes,
		// Denials are shown even with -q: they are what the service
		// tried and could not do, not part of the start report.
		Violations: g.stderr,
	}
	if !g.quiet {
		opts.Report = g.stderr
	}
	return opts
}
