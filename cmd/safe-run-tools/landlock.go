package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/landlock"
	"github.com/safe-run/safe-run/plan"
)

func landlockCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "landlock",
		Short: "Show the Landlock ruleset safe-run generates for a service",
		Long: `safe-run generates a Landlock ruleset for every service from its manifest and
the mounts of its spec (security.landlock = "generated", the default), at the
Landlock ABI the kernel has, and safe-run-init applies it before the service's
first instruction. Landlock needs no root and works rootless.`,
	}
	var abi int
	show := &cobra.Command{
		Use:   "show SERVICE.toml",
		Short: "Print the service's Landlock ruleset in words",
		Long: `Print what the service's Landlock ruleset handles and grants, at this
kernel's ABI or the one --abi names. Everything a handled right covers and no
rule grants is denied.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Anything but 1 to MaxABI is a mistake: -1 showed "not in
			// this kernel", 8 and 99 showed ABI 7 as if asked for.
			if cmd.Flags().Changed("abi") && (abi < 1 || abi > landlock.MaxABI) {
				return fmt.Errorf("--abi %d: not a Landlock ABI safe-run knows (use 1 to %d, or leave it out for this kernel's)", abi, landlock.MaxABI)
			}
			f := host.Probe()
			if abi != 0 {
				f.LandlockABI = abi
			}
			if f.LandlockABI == 0 {
				return fmt.Errorf("this kernel has no Landlock: name an ABI to show the ruleset at (--abi %d)", landlock.MaxABI)
			}
			popts := g.planOptions()
			if !g.quiet {
				popts.Progress = g.stderr
			}
			job, err := plan.Build(cmd.Context(), args[0], f, popts)
			if err != nil {
				return err
			}
			if job.Landlock == nil {
				for _, n := range job.Notes {
					fmt.Fprintf(g.stdout, "%s\n", n)
				}
				return nil
			}
			return job.Landlock.Show(g.stdout, job.Name)
		},
	}
	show.Flags().IntVar(&abi, "abi", 0, fmt.Sprintf("the Landlock ABI to generate for, 1-%d (default: this kernel's)", landlock.MaxABI))
	cmd.AddCommand(show)
	return cmd
}
