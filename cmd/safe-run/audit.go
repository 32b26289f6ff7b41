package main

import "github.com/spf13/cobra"

func auditCommand(g *globals) *cobra.Command { return &cobra.Command{Use: "audit", Hidden: true} }
