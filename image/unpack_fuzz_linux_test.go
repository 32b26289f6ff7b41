package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzUnpack applies crafted layers to a fresh root and holds the
// unpacker to what it promises (unpackInto, unpacker): whatever the
// layers say, and whether they are applied or refused, nothing outside
// the root changes (no write through a symlink or a hardlink, no path
// climbing out), and nothing inside it is a device node, a FIFO, a
// socket, or a setuid or setgid file.
//
// The input is either "RAW" and one tar stream (any bytes: damaged
// headers, truncated bodies), or a small program of entries (fuzzLayers)
// that the fuzzer mutates far better than tar's checksummed headers.
// "@OUT" in a name or link target stands for the directory beside the
// root that plays the host. make fuzz runs it for 15s; longer by hand:
//
//	go test ./image -run '^$' -fuzz FuzzUnpack -fuzztime 10m
func FuzzUnpack(f *testing.F) {
	for _, prog := range unpackSeeds {
		f.Add(prog.encode())
	}
	raw := layerTar(f, file("etc/passwd", "root:x:0:0::/:/bin/sh\n", 0o644), symlink("out", "@OUT"), hardlink("hl", "etc/passwd"))
	f.Add(append([]byte("RAW"), raw...))
	f.Add(append([]byte("RAW"), raw[:700]...))
	// Each input makes and removes a few directories: on a tmpfs, three
	// times as many inputs run as on this disk.
	base := "/dev/shm"
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		base = ""
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir, err := os.MkdirTemp(base, "safe-run-fuzz-unpack-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		sb := newSandboxIn(t, dir)
		var layers [][]byte
		if rest, ok := bytes.CutPrefix(data, []byte("RAW")); ok {
			layers = [][]byte{bytes.ReplaceAll(rest, []byte("@OUT"), []byte(sb.out))}
		} else {
			layers = decodeLayers(t, data, sb.out)
		}
		before := sb.host(t)
		_, err = unpackInto(t.Context(), rawLayers(layers...), sb.root, false, Options{limits: limits{bytes: 1 << 20, entries: 200}})
		diffTrees(t, before, sb.host(t))
		// A layer's errors name it: "layer 2 sha256:...: "etc/x": ...".
		if err != nil && !strings.HasPrefix(err.Error(), "layer ") {
			t.Errorf("error names no layer: %v", err)
		}
		checkRoot(t, sb.root)
	})
}

// checkRoot: nothing in the tree is a device, a FIFO, a socket or a
// setuid/setgid file.
func checkRoot(t *testing.T, root string) {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m := fi.Mode()
		switch {
		case m&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
			t.Errorf("%s is %v in the tree", p, m)
		case m.IsRegular() && m&(fs.ModeSetuid|fs.ModeSetgid) != 0:
			t.Errorf("%s is %v: setuid/setgid kept", p, m)
		case m.IsDir() && m&fs.ModeSetuid != 0:
			t.Errorf("directory %s is %v", p, m)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

// fuzzEntry is one entry of a program: the bytes a fuzzer mutates.
type fuzzEntry struct {
	op       byte // see decodeLayers
	mode     uint16
	name     string
	linkname string
	body     string
}

type fuzzProgram []fuzzEntry

// encode writes a program as decodeLayers reads it: op, mode (2 bytes),
// then name, link name and body, each a length byte and the bytes.
func (p fuzzProgram) encode() []byte {
	var b []byte
	for _, e := range p {
		b = append(b, e.op, byte(e.mode>>8), byte(e.mode))
		for _, s := range []string{e.name, e.linkname, e.body} {
			b = append(b, byte(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

// Operations of a program; op%opCount picks one.
const (
	opFile = iota
	opDir
	opSymlink
	opHardlink
	opChar
	opBlock
	opFifo
	opNextLayer // the entries after it go in a new layer
	opXattr     // a file with a PAX xattr named by linkname
	opSparse
	opCount
)

func decodeLayers(t *testing.T, data []byte, out string) [][]byte {
	var layers [][]byte
	var cur []entry
	str := func() string {
		if len(data) == 0 {
			return ""
		}
		n := min(int(data[0]), len(data)-1)
		s := string(data[1 : 1+n])
		data = data[1+n:]
		return strings.ReplaceAll(s, "@OUT", out)
	}
	for len(data) >= 3 && len(layers) < 4 {
		op, mode := data[0]%opCount, int64(data[1])<<8|int64(data[2])
		data = data[3:]
		name, link, body := str(), str(), str()
		h := tar.Header{Name: name, Linkname: link, Mode: mode, ModTime: time.Unix(int64(mode)*1000, 0)}
		switch op {
		case opFile:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(body))
		case opDir:
			h.Typeflag = tar.TypeDir
		case opSymlink:
			h.Typeflag = tar.TypeSymlink
		case opHardlink:
			h.Typeflag = tar.TypeLink
		case opChar:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
		case opBlock:
			h.Typeflag, h.Devmajor = tar.TypeBlock, 8
		case opFifo:
			h.Typeflag = tar.TypeFifo
		case opNextLayer:
			layers = append(layers, fuzzTar(t, cur))
			cur = nil
			continue
		case opXattr:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(body))
			h.PAXRecords = map[string]string{"SCHILY.xattr." + link: body}
			h.Linkname = ""
		case opSparse:
			h.Typeflag, h.Size = tar.TypeGNUSparse, int64(len(body))
		}
		cur = append(cur, entry{hdr: h, body: body})
	}
	return append(layers, fuzzTar(t, cur))
}

// fuzzTar is layerTar for entries the tar writer may refuse: those are
// left out.
func fuzzTar(t *testing.T, entries []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.PAXRecords != nil {
			h.Format = tar.FormatPAX
		}
		if h.Typeflag == tar.TypeGNUSparse {
			h.Format = tar.FormatGNU
		}
		if err := tw.WriteHeader(&h); err != nil {
			continue
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unpackSeeds are the hostile shapes of TestUnpackMalicious and the
// whiteout tests, as programs.
var unpackSeeds = []fuzzProgram{
	{{op: opFile, mode: 0o644, name: "../escape", body: "x"}},
	{{op: opFile, mode: 0o644, name: "a/../../../escape", body: "x"}},
	{{op: opFile, mode: 0o644, name: "@OUT/canary", body: "pwned"}, {op: opFile, mode: 0o644, name: "/etc/abs", body: "abs"}},
	{{op: opSymlink, name: "evil", linkname: "@OUT"}, {op: opFile, mode: 0o644, name: "evil/canary", body: "pwned"}},
	{{op: opSymlink, name: "up", linkname: "../../../../../../../../@OUT"}, {op: opFile, mode: 0o644, name: "up/canary", body: "pwned"}},
	{{op: opSymlink, name: "etc", linkname: "@OUT/etc"}, {op: opNextLayer}, {op: opFile, mode: 0o644, name: "etc/passwd", body: "root::0:0::/:/bin/sh\n"}},
	{{op: opSymlink, name: "passwd", linkname: "@OUT/canary"}, {op: opNextLayer}, {op: opFile, mode: 0o644, name: "passwd", body: "image"}},
	{{op: opHardlink, name: "hl", linkname: "../outside/canary"}},
	{{op: opHardlink, name: "hl", linkname: "@OUT/canary"}},
	{{op: opSymlink, name: "s", linkname: "@OUT"}, {op: opHardlink, name: "hl", linkname: "s/canary"}},
	{{op: opDir, mode: 0o755, name: "d/"}, {op: opHardlink, name: "hl", linkname: "d"}},
	{{op: opFile, mode: 0o644, name: "a", body: "original"}, {op: opHardlink, name: "b", linkname: "a"}, {op: opNextLayer}, {op: opFile, mode: 0o644, name: "b", body: "changed"}},
	{{op: opFile, mode: 0o644, name: "dev/sda", body: "lower"}, {op: opNextLayer}, {op: opBlock, mode: 0o660, name: "dev/sda"}, {op: opChar, mode: 0o666, name: "dev/mem"}, {op: opFifo, mode: 0o644, name: "run/fifo"}, {op: opHardlink, name: "dev/mem2", linkname: "dev/mem"}},
	{{op: opFile, mode: 0o4755, name: "bin/su", body: "x"}, {op: opFile, mode: 0o2755, name: "bin/wall", body: "x"}, {op: opDir, mode: 0o2775, name: "srv/"}},
	{{op: opFile, mode: 0o4755, name: "bin/su", body: "x"}, {op: opHardlink, name: "bin/su2", linkname: "bin/su"}, {op: opSymlink, name: "bin/su3", linkname: "su"}},
	{{op: opDir, mode: 0o755, name: "a/"}, {op: opFile, mode: 0o644, name: "a/f", body: "x"}, {op: opNextLayer}, {op: opFile, name: "a/.wh..wh..opq"}, {op: opFile, mode: 0o644, name: "a/g", body: "y"}, {op: opFile, name: ".wh.a"}},
	{{op: opFile, name: ".wh.."}, {op: opFile, name: "x/.wh..wh.plnk"}, {op: opFile, name: "@OUT/.wh.canary"}},
	{{op: opXattr, mode: 0o644, name: "f", linkname: "security.capability", body: "\x01\x00\x00\x02"}, {op: opXattr, mode: 0o644, name: "g", linkname: "user.x", body: "v"}},
	{{op: opSymlink, name: "l", linkname: "l"}, {op: opFile, mode: 0o644, name: "l/x", body: "loop"}},
	{{op: opFile, mode: 0o644, name: "f", body: "x"}, {op: opFile, mode: 0o644, name: "f/g", body: "under a file"}},
	{{op: opDir, mode: 0, name: "locked/"}, {op: opFile, mode: 0o6777, name: "locked/f", body: "x"}, {op: opDir, mode: 0o7777, name: "locked/"}},
	{{op: opSparse, mode: 0o644, name: "sparse", body: "abc"}, {op: opFile, name: "nul\x00name"}},
}
