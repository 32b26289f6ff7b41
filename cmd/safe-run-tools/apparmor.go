package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/apparmor"
	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/plan"
)

func appArmorCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apparmor",
		Short: "Show or install the AppArmor profile safe-run generates for a service",
		Long: `safe-run generates an AppArmor profile for every service from its manifest
(security.apparmor = "generated", the default) and, run as root, loads it
before each start. Loading needs root: for a user without root, install the
profile once as root with "safe-run apparmor install", and again whenever the
manifest changes.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "show SERVICE.toml",
		Short: "Print the service's AppArmor profile",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := generatedProfile(args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(g.stdout, p.Policy)
			return err
		},
	}, &cobra.Command{
		Use:   "install SERVICE.toml",
		Short: "Install the service's AppArmor profile in /etc/apparmor.d and load it (as root)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := generatedProfile(args[0])
			if err != nil {
				return err
			}
			file, err := apparmor.Install(cmd.Context(), p, apparmor.InstallOptions{Enabled: host.Probe().AppArmor.Enabled})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "installed AppArmor profile %s in %s and loaded it in %s mode\n", p.Name, file, p.Mode)
			return nil
		},
	})
	return cmd
}

// generatedProfile is the profile of a manifest the policy accepts.
func generatedProfile(path string) (*apparmor.Profile, error) {
	svc, err := plan.Load(path)
	if err != nil {
		return nil, err
	}
	return apparmor.Generated(svc)
}
