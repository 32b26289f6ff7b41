package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/doctor"
)

func doctorCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check what this host gives a service, and how to fix what is missing",
		Long: `Check, as root or as a rootless user, everything a service needs to run with
full hardening: kernel, user namespaces, subordinate ids, newuidmap and
newgidmap, cgroup version and delegation, seccomp, AppArmor and other LSMs,
overlayfs in a user namespace, XDG_RUNTIME_DIR and systemd linger. Each
problem comes with the command that fixes it. The exit status is 1 when a
service could not run here with full hardening.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := doctor.Diagnose(doctor.ThisHost())
			var err error
			switch format {
			case "text":
				err = r.WriteText(g.stdout)
			case "json":
				err = r.WriteJSON(g.stdout)
			default:
				return fmt.Errorf("--format %q: use text or json", format)
			}
			if err == nil && r.Degraded() {
				err = exitStatus(1)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}
