package main

import (
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
are listed. The notes go to stderr, the manifest to stdout or -o.`,
		Example: `  safe-run import -- docker run -d --name web -p 8080:80 nginx:1.25 > web.toml
  safe-run import -o services/ compose docker-compose.yml
  pbpaste | safe-run import -o web.toml -`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cwd, _ := os.Getwd()
			opts := importer.Options{Dir: cwd, ReadFile: os.ReadFile}
			if args[0] == "compose" {
				if len(args) != 2 {
					return errors.New("safe-run import compose takes one compose file")
				}
				return importCompose(g, args[1], out, opts)
			}
			if len(args) == 1 && args[0] == "-" {
				data, err := io.ReadAll(io.LimitReader(g.stdin, 1<<20))
				if err != nil {
					return fmt.Errorf("reading the command from stdin: %w", err)
				}
				line := strings.TrimSpace(string(data))
				if args, err = importer.SplitCommand(line); err != nil {
					return fmt.Errorf("reading the command from stdin: %w", err)
				}
			} else if len(args) == 1 && strings.Contains(args[0], " ") {
				var err error
				if args, err = importer.SplitCommand(args[0]); err != nil {
					return err
				}
			}
			switch {
			case len(args) >= 2 && args[0] == "docker" && args[1] == "run":
				args = args[2:]
			case len(args) >= 3 && args[0] == "docker" && args[1] == "container" && args[2] == "run":
				args = args[3:]
			default:
				return fmt.Errorf("%q is not a docker run command (write: safe-run import -- docker run [flags] IMAGE)", strings.Join(args, " "))
			}
			opts.Source = "docker run " + strings.Join(args, " ")
			opts.Output = out
			r, err := importer.DockerRun(args, opts)
			if err != nil {
				return err
			}
			if out == "" {
				_, err = g.stdout.Write(r.Manifest)
			} else {
				err = writeNew(out, r.Manifest)
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

func importCompose(g *globals, file, dir string, opts importer.Options) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading compose file: %w", err)
	}
	opts.Dir, _ = filepath.Abs(filepath.Dir(file))
	// As compose: the environment first, then the .env file beside the
	// compose file (whose own ${VAR}s see the environment).
	envFile := filepath.Join(opts.Dir, ".env")
	dotEnv, err := dotenv.ReadWithLookup(os.LookupEnv, envFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", envFile, err)
	}
	opts.LookupEnv = func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		v, ok := dotEnv[name]
		return v, ok
	}
	rs, err := importer.Compose(data, file, opts)
	if err != nil {
		return err
	}
	for i, r := range rs {
		if dir == "" {
			if i > 0 {
				fmt.Fprintln(g.stdout, "\n# ----")
			}
			if _, err := g.stdout.Write(r.Manifest); err != nil {
				return err
			}
			printNotes(g, r, "")
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		p := filepath.Join(dir, r.Name+".toml")
		if err := writeNew(p, r.Manifest); err != nil {
			return err
		}
		printNotes(g, r, p)
	}
	return nil
}

// writeNew writes a manifest without replacing one: a reviewed manifest
// must not be lost to a second import.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing manifest: %w (remove it first to import again)", err)
	}
	if _, err := f.Write(data); err != nil {
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
	if path == "" {
		path = r.Name + ".toml"
	}
	fmt.Fprintf(&b, "review every TODO, then: safe-run check %s\n", path)
	io.WriteString(g.stderr, b.String())
}
