// Command mkoci packs a root filesystem directory into a one-layer OCI
// image layout, with an image config, so that the example service also
// runs from a real image (example/service-oci.toml):
//
//	mkoci [-entrypoint /bin/x] [-user 1000:1000] [-env K=V]... [-label K=V]... ROOTFS LAYOUT:TAG
//
// The layout is built in a temporary directory and renamed into place.
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var env, labels list
	entrypoint := flag.String("entrypoint", "", "the image's entrypoint (one program, no arguments)")
	user := flag.String("user", "", "the image's user")
	flag.Var(&env, "env", "KEY=value for the image's environment (repeatable)")
	flag.Var(&labels, "label", "KEY=value label (repeatable)")
	flag.Parse()
	if flag.NArg() != 2 || !strings.Contains(flag.Arg(1), ":") {
		fmt.Fprintln(os.Stderr, "usage: mkoci [flags] ROOTFS LAYOUT:TAG")
		os.Exit(2)
	}
	cfg := v1.Config{User: *user, Env: env, Labels: map[string]string{}}
	if *entrypoint != "" {
		cfg.Entrypoint = []string{*entrypoint}
	}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		cfg.Labels[k] = v
	}
	dst, tag, _ := strings.Cut(flag.Arg(1), ":")
	if err := mkoci(flag.Arg(0), dst, tag, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "mkoci:", err)
		os.Exit(1)
	}
}

func mkoci(rootfs, dst, tag string, cfg v1.Config) error {
	layerTar, err := os.CreateTemp("", "mkoci-layer-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(layerTar.Name())
	defer layerTar.Close()
	if err := tarDir(rootfs, layerTar); err != nil {
		return fmt.Errorf("packing %s: %w", rootfs, err)
	}
	layer, err := tarball.LayerFromFile(layerTar.Name(), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", runtime.GOARCH, cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// tarDir writes the tree at dir as a layer: paths relative to it, owners
// and modes kept, times as they are.
func tarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		}
		hdr.Uname, hdr.Gname = "", ""
		hdr.ModTime = info.ModTime().Truncate(time.Second)
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
