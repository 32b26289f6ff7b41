package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/printable"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/plan"
)

func specCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "spec SERVICE.toml",
		Short: "Print the OCI runtime spec the service would run with",
		Long: `Print, as JSON, the OCI runtime spec that "safe-run SERVICE.toml" would hand
to the container runtime, run by the same user on this host. It needs no root
and changes nothing: the user namespace range shown is the one the service
has, or would get.

Where this host would refuse that run (limits without a delegated cgroup,
AppArmor required and absent, no id range for services, a bind source that
is missing or, through a symlink, a sensitive path), spec still prints the
spec, says why on standard error, and exits 0.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			popts := g.planOptions()
			if !g.quiet {
				popts.Progress = g.stderr
			}
			job, err := plan.Build(cmd.Context(), args[0], host.Probe(), popts)
			if err != nil {
				return err
			}
			// What the start checks on the host's files, as it runs.
			refused := errors.Join(job.Refused(), launcher.CheckPaths(cmd.Context(), job.Service))
			if refused != nil {
				fmt.Fprintf(g.stderr, "safe-run: spec: note: a run of %s would be refused on this host: %s\n", job.Name, printable.Lines(refused.Error()))
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(job.Spec)
		},
	}
}
