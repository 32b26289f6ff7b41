package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/host"
	"github.com/safe-run/safe-run/internal/atomicfile"
	"github.com/safe-run/safe-run/internal/cli"
	"github.com/safe-run/safe-run/launcher"
	"github.com/safe-run/safe-run/profiles"
)

func profileCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Record and compare seccomp profiles",
	}
	cmd.AddCommand(profileRecordCommand(g), profileDiffCommand(g))
	return cmd
}

func profileRecordCommand(g *globals) *cobra.Command {
	var out string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "record SERVICE.toml -o PROFILE.json",
		Short: "Run the service and write the seccomp profile of the calls it makes",
		Long: `Run the service as "safe-run SERVICE.toml" would, until it exits or for
--duration, and write a seccomp profile, in Docker's JSON format, that allows
only the system calls it made: set it as seccomp = "PROFILE.json" in the
manifest's [security] table. Exercise the service while it is recorded: a call
it did not make now is denied later. Ctrl-C ends the recording as --duration
does.

The recording runs under the manifest's own profile (the default one if it is
unconfined) and can only narrow it: what that profile denies is still denied,
and shown. As root the calls come from the kernel's audit records; without root
from seccomp notifications, which safe-run answers. Either way each call is
reported as it is made, so the service runs slower while it is recorded.

The service runs without its Landlock ruleset while it is recorded (Landlock
has no mode that only reports). As root, the programs it executes, the files it
writes and the TCP ports it listens on are watched, and the recording ends with
what the generated ruleset would deny of them ("Landlock would deny execute
/data/tool"): declare those places or ports before the ruleset refuses them.`,
		Example: `  safe-run profile record web.toml -o web.json --duration 30s
  safe-run profile diff default web.json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("profile record: no output file (use -o web.json)")
			}
			return recordProfile(cmd.Context(), g, args[0], out, duration)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the recorded profile to this file")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop the service after this long (e.g. 30s); 0 waits for it to exit")
	return cmd
}

func recordProfile(ctx context.Context, g *globals, path, out string, duration time.Duration) error {
	job, entered, err := planRun(ctx, g, path, nil)
	if entered || err != nil {
		return err
	}
	runCtx := ctx
	if duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	opts := cli.RunOptions(launcher.Stdio{In: g.stdin, Out: g.stdout, Err: g.stderr}, g.quiet, g.log())
	recorded, code, err := launcher.Record(runCtx, job, host.Probe(), opts)
	if err != nil {
		return err
	}
	prof := recorded.Seccomp
	var buf bytes.Buffer
	if err := profiles.WriteDockerJSON(&buf, prof); err != nil {
		return err
	}
	if err := atomicfile.Write(out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(g.stderr, "safe-run: %s: "+format+"\n", append([]any{job.Name}, args...)...)
	}
	// Stopped at the end of --duration, or by SIGINT or SIGTERM, the
	// service has done what it was recorded for; that it then exits
	// with the stop signal's status says nothing.
	if code != 0 && runCtx.Err() == nil {
		say("the service exited with code %d: the profile has the calls it made until then", code)
	}
	rel := out
	if abs, err := filepath.Abs(out); err == nil {
		if r, err := filepath.Rel(job.Service.Dir, abs); err == nil {
			rel = r
		}
	}
	say("recorded %d system calls in %s; enforce them with seccomp = %q in [security]", allowedCalls(prof), out, rel)
	for _, n := range recorded.LandlockNotes {
		say("%s", n)
	}
	switch {
	case job.Landlock == nil || job.Placement.Rootless:
	case len(recorded.LandlockDenials) == 0:
		say("Landlock: the generated ruleset denies nothing the service did (writes and executions seen; see safe-run landlock show)")
	default:
		for _, d := range recorded.LandlockDenials {
			say("Landlock would deny %s", d)
		}
		say("Landlock: %d accesses above are refused once the ruleset is enforced (EACCES): declare a writable place ([[mounts]]) or a port (landlock_bind), or see safe-run landlock show", len(recorded.LandlockDenials))
	}
	return nil
}

// allowedCalls counts the calls a profile lets through.
func allowedCalls(s *specs.LinuxSeccomp) int {
	seen := map[string]bool{}
	for _, sc := range s.Syscalls {
		if sc.Action == specs.ActAllow || sc.Action == specs.ActLog {
			for _, n := range sc.Names {
				seen[n] = true
			}
		}
	}
	return len(seen)
}

func profileDiffCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Show what one seccomp profile allows or denies that another does not",
		Long: `Compare two seccomp profiles call by call: "+ name" is a call NEW lets
through and OLD does not, "- name" the reverse, "~ name" a call both decide
differently. Each profile is "default", "strict", "unconfined" or the path of
a Docker-format JSON profile, resolved for this host's architecture and kernel
with no capabilities.`,
		Example: `  safe-run profile diff default web.json
  safe-run profile diff web.json web-new.json`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ps [2]*specs.LinuxSeccomp
			for i, arg := range args {
				var err error
				if ps[i], err = loadProfile(arg); err != nil {
					return err
				}
			}
			lines := profiles.Diff(ps[0], ps[1])
			if len(lines) == 0 {
				fmt.Fprintf(g.stdout, "%s and %s decide every call the same way\n", args[0], args[1])
			}
			for _, l := range lines {
				fmt.Fprintln(g.stdout, l)
			}
			return nil
		},
	}
}

func loadProfile(name string) (*specs.LinuxSeccomp, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	f := host.Probe()
	return profiles.Seccomp(profiles.Options{
		Profile: name,
		Dir:     dir,
		Arch:    f.Arch,
		Kernel:  f.Kernel,
	})
}
