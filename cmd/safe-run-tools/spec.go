package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/plan"
)

func specCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "spec SERVICE.toml",
		Short: "Print the OCI runtime spec the service would run with",
		Long: `Print, as JSON, the OCI runtime spec that "safe-run SERVICE.toml" would hand
to the container runtime. It needs no root and changes nothing: the user
namespace range shown is the one the service has, or would get.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			popts := planOptions()
			if !g.quiet {
				popts.Progress = g.stderr
			}
			p, err := plan.Prepare(cmd.Context(), args[0], popts)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(p.Spec)
		},
	}
}
