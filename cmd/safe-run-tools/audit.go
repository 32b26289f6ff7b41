package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/audit"
	"github.com/safe-run/safe-run/internal/printable"
	"github.com/safe-run/safe-run/policy"
)

func auditCommand(g *globals) *cobra.Command {
	var (
		rf  reportFlags
		all bool
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Judge a Docker engine's containers and daemon by safe-run's rules",
		Long: `Talk to the Docker engine at DOCKER_HOST (default unix:///var/run/docker.sock)
and judge every running container by the rules "safe-run check" applies to
manifests (privileged, capabilities, sensitive mounts such as docker.sock, host
namespaces, limits, writable root, seccomp/AppArmor, image digests, secrets in
the environment), and the daemon's own exposure: its socket's permissions and
group members, TCP listeners that answer without TLS client authentication,
rootless mode and user-namespace remapping.

Output formats and exit status as "safe-run check": 1 when a target scores below
--min-score or has a finding at --fail-on or worse, 125 when the engine cannot be
reached (with --format json or sarif, the output then is one document naming
the engine as not judged). Run it as root on the engine's host to see the daemon's listeners.`,
		Example: `  safe-run audit
  DOCKER_HOST=unix:///run/user/1000/docker.sock safe-run audit --fail-on critical
  safe-run audit --format json | jq '.targets[] | {name, score}'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			host := os.Getenv("DOCKER_HOST")
			res, err := audit.Audit(cmd.Context(), audit.Options{Host: host, All: all})
			if err != nil {
				if rf.format != "text" {
					// Still one document for the script that reads it.
					if host == "" {
						host = audit.DefaultHost
					}
					_ = writeReports(g, &rf, []*policy.Report{policy.Unjudged(policy.KindDaemon, host, err)})
				}
				return err
			}
			for _, n := range res.Notes {
				fmt.Fprintln(g.stderr, "safe-run audit:", printable.String(n))
			}
			return writeReports(g, &rf, res.Reports)
		},
	}
	rf.add(cmd)
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also containers that are not running")
	return cmd
}
