package profiles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/safe-run/safe-run/manifest"
)

// document is a JSON file decoded into a Go value, with the position of
// every key and list element kept, so that mistakes found after decoding
// can still name their line and column. encoding/json alone reports no
// positions for unknown keys and none at all once decoding has succeeded.
type document struct {
	file    string
	data    []byte
	offsets map[string]int // key path → offset of the key, or of the list element
}

// decodeDocument decodes data into v, a pointer to a struct, strictly:
// an unknown or repeated key, or a value of the wrong kind, is an error.
// The decoding itself is encoding/json's; a first pass over the tokens
// checks the document against v's type and records positions.
func decodeDocument(file string, data []byte, v any) (*document, error) {
	d := &document{file: file, data: data, offsets: map[string]int{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, d.errorAt(0, "", "the file is empty (want a seccomp profile in Docker's JSON format)")
	}
	w := &walker{doc: d, dec: json.NewDecoder(bytes.NewReader(data))}
	w.dec.UseNumber()
	d.offsets[""] = w.next()
	if err := w.value("", reflect.TypeOf(v).Elem(), d.offsets[""]); err != nil {
		return nil, err
	}
	if _, err := w.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, w.syntaxError(err)
		}
		return nil, d.errorAt(w.last, "", "unexpected data after the profile's closing brace")
	}
	if len(w.errs) > 0 {
		return nil, errors.Join(w.errs...)
	}
	if err := json.Unmarshal(data, v); err != nil {
		// The first pass accepts only what encoding/json decodes.
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return d, nil
}

// errorAt returns a manifest.FieldError at byte offset off.
func (d *document) errorAt(off int, path, format string, args ...any) *manifest.FieldError {
	off = min(max(off, 0), len(d.data))
	before := d.data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := off - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return &manifest.FieldError{File: d.file, Line: line, Column: col, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// errorf returns a manifest.FieldError at path, or at the nearest enclosing path the
// file has (a missing key is reported at its object).
func (d *document) errorf(path, format string, args ...any) *manifest.FieldError {
	for p := path; ; p = manifest.ParentPath(p) {
		if off, ok := d.offsets[p]; ok {
			return d.errorAt(off, path, format, args...)
		}
		if p == "" {
			return d.errorAt(0, path, format, args...)
		}
	}
}

// walker checks a token stream against a Go type.
type walker struct {
	doc  *document
	dec  *json.Decoder
	last int // offset of the token last read
	errs []error
}

// next returns the offset where the next token starts: past the end of the
// last one, white space and the separators the decoder does not return.
func (w *walker) next() int {
	off := int(w.dec.InputOffset())
	for off < len(w.doc.data) && strings.IndexByte(" \t\r\n,:", w.doc.data[off]) >= 0 {
		off++
	}
	return off
}

func (w *walker) token() (json.Token, error) {
	w.last = w.next()
	tok, err := w.dec.Token()
	if err != nil {
		return nil, w.syntaxError(err)
	}
	return tok, nil
}

// syntaxError turns a decoder error into a manifest.FieldError at its offset. A
// syntax error is the end of the walk: nothing after it can be trusted.
func (w *walker) syntaxError(err error) error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		// The decoder's offsets are off by a token at times; Unmarshal's
		// scanner always stops just past the offending byte.
		if err := json.Unmarshal(w.doc.data, new(any)); err != nil {
			if se2, ok := errors.AsType[*json.SyntaxError](err); ok {
				se = se2
			}
		}
		off := int(se.Offset) - 1
		if off >= 0 && off < len(w.doc.data) && (w.doc.data[off] == ']' || w.doc.data[off] == '}') {
			// The most common mistake by far, and encoding/json's
			// message does not name it.
			prev := len(bytes.TrimRight(w.doc.data[:off], " \t\r\n")) - 1
			if prev >= 0 && w.doc.data[prev] == ',' {
				return w.doc.errorAt(prev, "", "a comma before %q: JSON allows no trailing comma (remove it)", w.doc.data[off])
			}
		}
		return w.doc.errorAt(off, "", "%v", se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return w.doc.errorAt(len(w.doc.data), "", "unexpected end of file (a bracket or brace is not closed)")
	}
	return w.doc.errorAt(w.last, "", "%v", err)
}

// value reads one value at path and checks it against t. Mistakes are
// reported at offset at: the value's key, or the list element itself.
// Mistakes that leave the token stream intact are collected in w.errs and
// the walk goes on; a syntax error is returned.
func (w *walker) value(path string, t reflect.Type, at int) error {
	tok, err := w.token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil // null leaves the field unset, as in encoding/json
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	got := kindOf(tok)
	if want := describeType(t); got != kindOfType(t) {
		w.errs = append(w.errs, w.doc.errorAt(at, path, "want %s, not %s", want, describeToken(tok)))
		return w.skip(tok)
	}
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '{' {
			return w.object(path, t)
		}
		for i := 0; w.dec.More(); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			w.doc.offsets[p] = w.next()
			if err := w.value(p, t.Elem(), w.doc.offsets[p]); err != nil {
				return err
			}
		}
		_, err := w.token() // ]
		return err
	case json.Number:
		if _, err := strconv.ParseUint(tok.String(), 10, t.Bits()); err != nil {
			msg := "%s is not a whole number from 0 up"
			if errors.Is(err, strconv.ErrRange) {
				msg = "%s is too large"
			}
			w.errs = append(w.errs, w.doc.errorAt(at, path, msg, tok))
		}
	}
	return nil
}

// object reads the members of an object whose { has been read.
func (w *walker) object(path string, t reflect.Type) error {
	fields, names := jsonFields(t)
	for w.dec.More() {
		tok, err := w.token()
		if err != nil {
			return err
		}
		key, at := tok.(string), w.last // the decoder only returns strings as keys
		p := key
		if path != "" {
			p = path + "." + key
		}
		ft, known := fields[key]
		if prev, dup := w.doc.offsets[p]; dup && known {
			line := w.doc.errorAt(prev, "", "").Line
			w.errs = append(w.errs, w.doc.errorAt(at, p, "repeated key (first set on line %d)", line))
		}
		if !known {
			w.errs = append(w.errs, w.doc.errorAt(at, p, "unknown key%s", keyHint(key, names)))
			if err := w.skipValue(); err != nil {
				return err
			}
			continue
		}
		if _, dup := w.doc.offsets[p]; !dup {
			w.doc.offsets[p] = at
		}
		if err := w.value(p, ft, at); err != nil {
			return err
		}
	}
	_, err := w.token() // }
	return err
}

// keyHint suggests the known key a mistyped one was meant to be.
func keyHint(key string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return fmt.Sprintf(" (did you mean %q?)", n)
		}
	}
	return " (use " + strings.Join(names, ", ") + ")"
}

func (w *walker) skipValue() error {
	tok, err := w.token()
	if err != nil {
		return err
	}
	return w.skip(tok)
}

// skip consumes the rest of a value whose first token was tok.
func (w *walker) skip(tok json.Token) error {
	if d, ok := tok.(json.Delim); !ok || (d != '{' && d != '[') {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := w.token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// jsonFields returns the JSON keys of a struct type and their types, and
// the keys in declaration order for messages.
func jsonFields(t reflect.Type) (map[string]reflect.Type, []string) {
	fields := map[string]reflect.Type{}
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	return fields, names
}

// kindOf names the JSON kind of a token; kindOfType the kind a Go type
// decodes from.
func kindOf(tok json.Token) string {
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '{' {
			return "object"
		}
		return "list"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}

func kindOfType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		return "object"
	case reflect.Slice:
		return "list"
	case reflect.String:
		return "string"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "number"
	case reflect.Bool:
		return "boolean"
	}
	return t.Kind().String()
}

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch k := kindOfType(t); k {
	case "object":
		return "an object"
	case "list":
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "an "), "a ") + "s"
	case "number":
		return "a whole number"
	default:
		return "a " + k
	}
}

func describeToken(tok json.Token) string {
	switch tok := tok.(type) {
	case string:
		return strconv.Quote(tok)
	case json.Number:
		return tok.String()
	case bool:
		return strconv.FormatBool(tok)
	}
	k := kindOf(tok)
	if k == "object" {
		return "an object"
	}
	return "a " + k
}
