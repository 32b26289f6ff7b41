package main

import (
	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/manifest"
)

func schemaCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of manifest v1, for editors",
		Long: `Print the JSON Schema (draft 2020-12) of manifest version 1. A TOML language
server completes and checks manifests with it, e.g. taplo / Even Better TOML:
write "#:schema ./safe-run.schema.json" as a manifest's first line.`,
		Example: `  safe-run schema > safe-run.schema.json`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := manifest.Schema()
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(append(data, '\n'))
			return err
		},
	}
}
