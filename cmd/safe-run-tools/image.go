package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/image"
	"github.com/safe-run/safe-run/internal/cli"
)

func imageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "List and remove the images safe-run has unpacked",
		Long: `Images named by image.oci, image.archive or image.ref are unpacked once into
a cache shared by every service (DATA/images: /var/lib/safe-run/images as
root). An image a running service uses is never removed.`,
	}
	cmd.AddCommand(imageLsCommand(g), imageRmCommand(g), imagePruneCommand(g))
	return cmd
}

func imageDir() string { return filepath.Join(cli.DefaultDirs().Data, "images") }

func imageLsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the cached images",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := image.List(imageDir())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tDIGEST\tSIZE\tFILES\tUNPACKED\tIN USE\tSOURCES")
			for _, c := range all {
				inUse := "no"
				if c.InUse {
					inUse = "yes"
				}
				if c.Damaged {
					// Its record is unreadable: said where its
					// sources would be.
					c.Sources = []string{"DAMAGED: remove it (safe-run image rm " + c.Name() + "), or start a service that uses it"}
				}
				var digests []string
				for _, d := range c.Digests {
					digests = append(digests, strings.TrimPrefix(d, "sha256:")[:12])
				}
				if len(digests) == 0 {
					digests = []string{"-"}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", c.Name(), strings.Join(digests, ","), image.HumanSize(c.Bytes), c.Files,
					c.Created.Local().Format("2006-01-02 15:04"), inUse, strings.Join(c.Sources, ", "))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			// What killed pulls left takes disk space too.
			if n, size := image.Leftovers(imageDir()); n > 0 {
				fmt.Fprintf(g.stdout, "and %d unfinished unpack(s), %s, in %s, left by interrupted pulls (safe-run image prune, or any start, removes them)\n",
					n, image.HumanSize(size), filepath.Join(imageDir(), "tmp"))
			}
			return nil
		},
	}
}

func imageRmCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID...",
		Short: "Remove cached images by ID or manifest digest (or a prefix of either)",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, id := range args {
				c, err := image.Remove(imageDir(), id)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "removed %s (%s)\n", c.Name(), image.HumanSize(c.Bytes))
			}
			return nil
		},
	}
}

func imagePruneCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove every cached image no running service uses, and leftovers of interrupted pulls",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			removed, freed, err := image.Prune(imageDir())
			for _, c := range removed {
				fmt.Fprintf(g.stdout, "removed %s %s\n", c.Name(), strings.Join(c.Sources, ", "))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "freed %s\n", image.HumanSize(freed))
			return nil
		},
	}
}
