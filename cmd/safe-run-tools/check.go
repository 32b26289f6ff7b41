package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/cli"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
	"github.com/safe-run/safe-run/policy"
)

func checkCommand(g *globals) *cobra.Command {
	var (
		rf     reportFlags
		onHost bool
	)
	cmd := &cobra.Command{
		Use:   "check [flags] SERVICE.toml...",
		Short: "Judge manifests by safe-run's rules: findings, accepted risks, a score",
		Long: `Judge each manifest by safe-run's rules (docs/rules.md): the findings with
their fixes, the risks its [insecure] table accepts with the reason given, and a
score from 100 less each rule's points (critical 30, high 15, medium 8, low 3),
one line per deduction.

Exit status: 0 when every manifest passes; 1 when one scores below --min-score,
has an open finding at --fail-on or worse, or has a finding safe-run would refuse
to run; 125 when a manifest cannot be read (its error on standard error; with
--format json or sarif, the output still is one document, which names it as
not judged).

--host adds what this host cannot enforce (no AppArmor in the kernel, no cgroup
controllers for safe-run, no user namespace ranges).`,
		Example: `  safe-run check web.toml
  safe-run check --min-score 80 --fail-on medium services/*.toml
  safe-run check --format sarif services/*.toml > safe-run.sarif   # GitHub code scanning`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var reports []*policy.Report
			var unreadable []error
			for _, path := range args {
				svc, err := manifest.Load(path)
				if err != nil {
					// The others are still judged: one broken file
					// in a directory must not hide every report.
					unreadable = append(unreadable, err)
					reports = append(reports, policy.Unjudged(policy.KindManifest, path, err))
					continue
				}
				var h *policy.Host
				if onHost {
					probed := plan.PolicyHost(host.Probe(), cli.DefaultDirs(), svc)
					h = &probed
				}
				r := policy.Check(svc, h)
				// What a start refuses in the files the manifest
				// names, by the start's own checks: a manifest
				// safe-run would not run never passes.
				_, scErr := plan.SeccompProfile(svc, host.Probe())
				r.Refuse(svc, manifest.Merge(launcher.CheckFiles(cmd.Context(), svc), scErr))
				reports = append(reports, r)
			}
			if err := writeReports(g, &rf, reports); err != nil && len(unreadable) == 0 {
				return err
			}
			return errors.Join(unreadable...)
		},
	}
	rf.add(cmd)
	cmd.Flags().BoolVar(&onHost, "host", false, "add what this host cannot enforce")
	return cmd
}
