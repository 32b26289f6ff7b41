package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/importer"
)

func importCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "import [-o FILE] -- docker run [FLAGS] IMAGE [COMMAND...]\n  safe-run import [-o DIR] compose docker-compose.yml\n  safe-run import [-o FILE] - < command.txt",
		Short: "Convert a docker run line or a compose file into manifests",
		Long: `Convert a docker run command line, or every service of a compose file, into
safe-run manifests with the secure defaults filled in. Every flag that loosens
them is carried over with its [insecure] item and a TODO reason; --privileged is
refused, with what the service may really need; flags a manifest cannot express
are listed. The notes go to stderr, the manifest to stdout or -o.

The line may start with sudo, a "$ " prompt, variable assignments, docker by
any path or podman; it must be one command: a pipe, &&, ; or a second command
line is refused. A manifest that holds environment values is written 0600.`,
		Example: `  safe-run import -- docker run -d --name web -p 8080:80 nginx:1.25 > web.toml
  safe-run import -o services/ compose docker-compose.yml
  pbpaste | safe-run import -o web.toml -`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cwd, _ := os.Getwd()
			opts := importer.Options{Dir: cwd, ReadFile: readInputFile, Output: out}
			if args[0] == "compose" {
				if len(args) != 2 {
					return errors.New("safe-run import compose takes one compose file")
				}
				var rs []*importer.Result
				err := interruptible(cmd.Context(), func() (err error) {
					rs, err = convertCompose(args[1], opts)
					return err
				})
				if err != nil {
					return err
				}
				return writeCompose(g, rs, out)
			}
			var r *importer.Result
			err := interruptible(cmd.Context(), func() error {
				runArgs, err := commandArgs(g, args)
				if err != nil {
					return err
				}
				opts.Source = "docker run " + importer.Quote(runArgs)
				r, err = importer.DockerRun(runArgs, opts)
				return err
			})
			if err != nil {
				return err
			}
			if out == "" {
				_, err = g.stdout.Write(r.Manifest)
			} else {
				err = writeNew(out, r)
			}
			if err != nil {
				return err
			}
			printNotes(g, r, out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the manifest to `FILE` (compose: into directory DIR, one NAME.toml per service)")
	return cmd
}

// commandArgs finds docker run's arguments in what the command line
// gave: the words after --, one argument holding the whole line, or "-"
// for the line on stdin.
func commandArgs(g *globals, args []string) ([]string, error) {
	switch {
	case len(args) == 1 && args[0] == "-":
		data, err := readLimited(g.stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the command from stdin: %w", err)
		}
		args, err := importer.CommandLine(string(data))
		if err != nil {
			return nil, fmt.Errorf("reading the command from stdin: %w", err)
		}
		return args, nil
	case len(args) == 1 && strings.ContainsAny(args[0], " \t\n"):
		return importer.CommandLine(args[0])
	}
	return importer.RunArgs(args)
}

// interruptible runs an import until it ends or ctx is done (SIGINT,
// SIGTERM): reading a FIFO or a terminal blocks, and the command line
// catches those signals for every command, so import must watch for
// them itself. Nothing is written until the conversion is complete.
func interruptible(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.New("import interrupted: nothing was written")
	}
}

// readLimited reads at most importer.MaxInputSize bytes, and refuses
// more.
func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, importer.MaxInputSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > importer.MaxInputSize {
		return nil, fmt.Errorf("larger than %d bytes (1 MiB), the most safe-run import reads: a command line, compose file or env file is short text (is it the right input?)", importer.MaxInputSize)
	}
	return data, nil
}

// readInputFile reads a compose or env file, bounded as readLimited.
func readInputFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f)
}

func convertCompose(file string, opts importer.Options) ([]*importer.Result, error) {
	data, err := readInputFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading compose file %s: %w", file, err)
	}
	opts.Dir, _ = filepath.Abs(filepath.Dir(file))
	// As compose: the environment first, then the .env file beside the
	// compose file (whose own ${VAR}s see the environment).
	envFile := filepath.Join(opts.Dir, ".env")
	dotEnv := map[string]string{}
	if text, err := readInputFile(envFile); err == nil {
		if dotEnv, err = dotenv.ParseWithLookup(bytes.NewReader(text), os.LookupEnv); err != nil {
			return nil, fmt.Errorf("reading %s: %w", envFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", envFile, err)
	}
	opts.LookupEnv = func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		v, ok := dotEnv[name]
		return v, ok
	}
	return importer.Compose(data, file, opts)
}

// writeCompose writes each service's manifest into dir, or all to
// stdout; into dir, nothing when one of the files is there already.
func writeCompose(g *globals, rs []*importer.Result, dir string) error {
	if dir == "" {
		for i, r := range rs {
			if i > 0 {
				fmt.Fprintln(g.stdout, "\n# ----")
			}
			if _, err := g.stdout.Write(r.Manifest); err != nil {
				return err
			}
			printNotes(g, r, "")
		}
		return nil
	}
	for _, r := range rs {
		p := filepath.Join(dir, r.Name+".toml")
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("writing manifest %s: it exists (remove it first to import again; nothing was written)", p)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, r := range rs {
		p := filepath.Join(dir, r.Name+".toml")
		if err := writeNew(p, r); err != nil {
			return err
		}
		printNotes(g, r, p)
	}
	return nil
}

// writeNew writes a manifest without replacing one: a reviewed manifest
// must not be lost to a second import. One that holds environment values
// is its owner's only (0600): they came from the command line, an env
// file or a compose file, and may be secrets.
func writeNew(path string, r *importer.Result) error {
	perm := os.FileMode(0o644)
	if r.Env {
		perm = 0o600
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("writing manifest: %w (remove it first to import again)", err)
	}
	if _, err := f.Write(r.Manifest); err != nil {
		f.Close()
		return fmt.Errorf("writing manifest: %w", err)
	}
	return f.Close()
}

func printNotes(g *globals, r *importer.Result, path string) {
	score, _ := r.Docker.Score()
	where := "stdout"
	if path != "" {
		where = path
	}
	var b strings.Builder
	fmt.Fprintf(&b, "safe-run import: %s -> %s (the docker command scores %d/100 by safe-run's rules)\n", r.Name, where, score)
	importer.WriteNotes(&b, r)
	if r.Env {
		if path != "" {
			fmt.Fprintf(&b, "%s is written 0600 (its owner's only): it holds environment values, which may be secrets\n", path)
		} else {
			b.WriteString("the manifest holds environment values, which may be secrets: keep it readable by its owner only (chmod 600)\n")
		}
	}
	if path == "" {
		path = r.Name + ".toml"
	}
	fmt.Fprintf(&b, "review every TODO, then: safe-run check %s\n", path)
	io.WriteString(g.stderr, b.String())
}
