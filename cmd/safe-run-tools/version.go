package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print safe-run's version and that of its runtime library",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			runc := "unknown"
			if info, ok := debug.ReadBuildInfo(); ok {
				for _, d := range info.Deps {
					if d.Path == "github.com/opencontainers/runc" {
						runc = d.Version
					}
				}
			}
			fmt.Fprintf(g.stdout, "safe-run %s\nlibcontainer (runc) %s\n", buildVersion(), runc)
			return nil
		},
	}
}

// buildVersion is safe-run's version: set at build time, else the module's.
func buildVersion() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok && v == "" {
		v = info.Main.Version
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	return v
}
