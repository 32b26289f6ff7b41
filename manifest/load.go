package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// maxManifestSize bounds what Load reads: a manifest is a few hundred lines,
// and a hostile path (a FIFO, /dev/zero) must not make safe-run read forever.
const maxManifestSize = 1 << 20

// Load reads and validates the manifest at path; see Parse for what it
// returns beside an error.
func Load(path string) (*Service, error) {
	// Stat before opening: opening a FIFO blocks until a writer comes,
	// and Go catches SIGTERM, so safe-run would hang for good.
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("reading manifest %s: not a regular file (pass the path of a .toml file)", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("reading manifest %s: not a regular file (pass the path of a .toml file)", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("reading manifest %s: larger than %d bytes (a manifest is a short TOML file)", path, maxManifestSize)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	return Parse(path, dir, data)
}

// Parse validates manifest text. file names it in errors; dir is the
// absolute directory that relative paths in it start from.
//
// When the text is TOML but some values are wrong, Parse returns the
// Service too, those values left at their defaults, beside the error:
// later stages (the policy) can then report their problems in the same
// run (see Merge). Nothing may run from it.
func Parse(file, dir string, data []byte) (*Service, error) {
	if line := tooDeep(data); line > 0 {
		return nil, &FieldError{File: file, Line: line, Msg: fmt.Sprintf("nested more than %d levels deep (a manifest's arrays and inline tables are shallow)", maxNesting)}
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, syntaxError(file, data, err)
	}
	fe := &fieldErrors{file: file, lines: indexLines(string(data))}
	svc := defaults()
	decodeValue(fe, "", raw, reflect.ValueOf(&svc).Elem())
	sum := sha256.Sum256(data)
	svc.File, svc.Dir, svc.Digest = file, dir, "sha256:"+hex.EncodeToString(sum[:])
	svc.lines = fe.lines
	validate(&svc, fe)
	return &svc, fe.err()
}

func syntaxError(file string, data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := strings.TrimSuffix(pe.Message, ".")
		line := pe.Position.Line
		// BurntSushi/toml sometimes counts an offending newline as the
		// start of the next line ("[image" reported on the line after
		// it); the line is the one that newline ends.
		if st := pe.Position.Start; st >= 0 && st < len(data) && data[st] == '\n' {
			line = 1 + bytes.Count(data[:st], []byte("\n"))
		}
		// It also counts a control character at the start of a line
		// as on the line before (a NUL on line 11 was "line 10"): the
		// line is the one the first such byte is on.
		if strings.Contains(msg, "control character") {
			if i := bytes.IndexFunc(data, tomlControl); i >= 0 {
				line = 1 + bytes.Count(data[:i], []byte("\n"))
			}
		}
		return &FieldError{File: file, Line: line, Msg: msg + " (TOML syntax; see https://toml.io)"}
	}
	return &FieldError{File: file, Msg: err.Error()}
}

// tomlControl is a control character TOML allows nowhere: all but tab,
// and newline and carriage return (which end lines).
func tomlControl(r rune) bool {
	return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f
}

// Line returns the line of the manifest that sets path (or the nearest
// enclosing key), 0 if none does.
func (s *Service) Line(path string) int { return s.lines.lineOf(path) }

// Errorf returns a FieldError at path for later stages (policy, image,
// launcher) that find a problem with what the manifest says. Like
// fmt.Errorf, it wraps what %w formats, so errors.Is and errors.As see the
// cause.
func (s *Service) Errorf(path, format string, args ...any) *FieldError {
	w := fmt.Errorf(format, args...)
	var cause error
	switch u := w.(type) {
	case interface{ Unwrap() error }:
		cause = u.Unwrap()
	case interface{ Unwrap() []error }:
		cause = errors.Join(u.Unwrap()...)
	}
	return &FieldError{File: s.File, Line: s.Line(path), Path: path, Msg: w.Error(), Err: cause}
}

// maxNesting bounds the nesting of arrays and inline tables. The TOML
// parser's time grows with the square of the depth (BurntSushi/toml#496),
// and `safe-run check` may be handed hostile files.
const maxNesting = 32

// tooDeep returns the line where data nests arrays or inline tables deeper
// than maxNesting, or 0. Strings and comments are skipped; the count is
// rough but never low.
func tooDeep(data []byte) int {
	depth, line := 0, 1
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '\n':
			line++
		case '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
			i--
		case '"', '\'':
			for i++; i < len(data) && data[i] != c && data[i] != '\n'; i++ {
				if c == '"' && data[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			if depth++; depth > maxNesting {
				return line
			}
		case ']', '}':
			depth = max(depth-1, 0)
		}
	}
	return 0
}
