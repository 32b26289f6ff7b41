package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/export"
	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/cli"
	"github.com/safe-run/safe-run/plan"
)

func exportCommand(g *globals) *cobra.Command {
	var opts export.Options
	var dir string
	cmd := &cobra.Command{
		Use:   "export {systemd|docker|compose|kubernetes} SERVICE.toml",
		Short: "Write the service as a systemd unit, docker run line, compose service or Kubernetes workload",
		Long: `Write the same hardening for another engine to standard output:

  systemd     a unit that runs the service through safe-run (Type=notify)
  docker      a shell script with the hardened docker run line
  compose     a compose file with the equivalent service
  kubernetes  a Pod, or a Deployment with --kind deployment

The seccomp profile, when the export needs one, is written beside it into
--dir. Where the target confines less than safe-run, the output says so in a
comment, and the weakening is repeated on standard error.

The export is for another machine: nothing is pulled (an image.ref this host
has not cached is written as the ref, with the image's own user, working
directory and command where the manifest names none), and this host's own
limits do not apply.`,
		Example: `  safe-run export systemd /etc/safe-run/web.toml > /etc/systemd/system/web.service
  safe-run export docker web.toml --dir /srv/web > /srv/web/run.sh
  safe-run export kubernetes --kind deployment web.toml | kubectl apply -f -`,
		Args:      exactArgs(2),
		ValidArgs: export.Targets(),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Dir, err = filepath.Abs(dir); err != nil {
				return err
			}
			if args[0] == "systemd" && opts.SafeRun == "" {
				// The unit starts safe-run, which sits beside this binary.
				if opts.SafeRun, err = filepath.EvalSymlinks(cli.HelperPath("safe-run")); err != nil {
					return fmt.Errorf("finding the safe-run binary for the unit: %w (use --safe-run PATH)", err)
				}
			}
			// For another machine: what this host could not enforce
			// (job.Refused) is none of the export's business, nor are
			// its own limits; and nothing is pulled: the image is the
			// ref where it runs. A unit runs safe-run, which resolves
			// the image itself.
			popts := g.planOptions()
			popts.Elsewhere, popts.Registry = true, nil
			popts.NoImage = args[0] == "systemd"
			job, err := plan.Build(cmd.Context(), args[1], host.Probe(), popts)
			if err != nil {
				return err
			}
			out, err := export.Export(args[0], job, opts)
			if err != nil {
				return err
			}
			if len(out.Files) > 0 {
				if st, err := os.Stat(opts.Dir); err != nil || !st.IsDir() {
					return fmt.Errorf("--dir %s: not a directory, and the export writes %s there (create it: mkdir -p %s; or pass another --dir)", dir, out.Files[0].Name, opts.Dir)
				}
			}
			written, err := out.WriteFiles(opts.Dir)
			if err != nil {
				return err
			}
			if _, err := g.stdout.Write(out.Text); err != nil {
				return err
			}
			if !g.quiet {
				for _, w := range written {
					fmt.Fprintf(g.stderr, "safe-run: export: wrote %s\n", w)
				}
			}
			for _, w := range out.Warnings {
				fmt.Fprintf(g.stderr, "safe-run: export %s: warning: %s\n", args[0], w)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory for the files the export refers to (seccomp profile)")
	cmd.Flags().StringVar(&opts.Kind, "kind", export.KindPod, "Kubernetes workload: "+strings.Join([]string{export.KindPod, export.KindDeployment}, " or "))
	cmd.Flags().StringVar(&opts.SafeRun, "safe-run", "", "absolute path of safe-run in the systemd unit (default: this binary)")
	return cmd
}
