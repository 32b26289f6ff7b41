package manifest

import (
	"strconv"
	"strings"
)

// lineIndex maps a key path (resources.memory, mounts[1].target,
// process.command[0]) to the line where the file sets it.
//
// BurntSushi/toml reports lines for its own errors but does not export key
// positions, and keeps one position per key name, so every [[mounts]] entry
// would share the last entry's line. The manifest's own checks need the
// line of each key, hence this small scanner. It runs only on text the TOML
// parser has already accepted, so it can be lenient.
type lineIndex map[string]int

// lineOf returns the line of path, or of its nearest enclosing key.
func (ix lineIndex) lineOf(path string) int {
	for path != "" {
		if l, ok := ix[path]; ok {
			return l
		}
		path = ParentPath(path)
	}
	return 0
}

var bareKey = compileLater(`^[A-Za-z0-9_-]+$`)

// joinKey appends a key to a path, quoting it when it is not a bare key.
func joinKey(path, key string) string {
	if !bareKey().MatchString(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// maxIndexedPath bounds the key paths the index records below: a
// manifest's deepest key (mounts[12].options[3]) is far shorter, and
// hostile nesting (a = [[[[...]]]] or a.a.a.a... = 1) must not cost the
// square of its depth in time and memory. Deeper keys share the line of
// their ancestor at the bound.
const maxIndexedPath = 256

func (s *lineScanner) join(path, key string) string {
	if len(path) > maxIndexedPath {
		return path
	}
	return joinKey(path, key)
}

func (s *lineScanner) index(path string, i int) string {
	if len(path) > maxIndexedPath {
		return path
	}
	return indexPath(path, i)
}

type lineScanner struct {
	src    string
	pos    int
	line   int
	ix     lineIndex
	arrays map[string]int // array-of-tables path -> entries seen
}

func indexLines(src string) lineIndex {
	s := &lineScanner{src: src, line: 1, ix: lineIndex{}, arrays: map[string]int{}}
	prefix := ""
	for {
		s.skipSpace(true)
		if s.pos >= len(s.src) {
			return s.ix
		}
		switch {
		case strings.HasPrefix(s.src[s.pos:], "[["):
			s.pos += 2
			keys := s.keys()
			s.skipPast("]]")
			path := s.resolve(keys[:len(keys)-1])
			path = s.join(path, keys[len(keys)-1])
			n := s.arrays[path]
			s.arrays[path] = n + 1
			s.set(path)
			prefix = s.index(path, n)
			s.set(prefix)
		case s.src[s.pos] == '[':
			s.pos++
			keys := s.keys()
			s.skipPast("]")
			prefix = s.resolve(keys)
			s.set(prefix)
		default:
			path := prefix
			for _, k := range s.keys() {
				path = s.join(path, k)
				s.set(path)
			}
			s.skipSpace(false)
			if s.peek() == '=' {
				s.pos++
			}
			s.value(path)
		}
	}
}

// resolve turns header keys into a path, indexing arrays of tables by their
// latest entry as TOML does.
func (s *lineScanner) resolve(keys []string) string {
	path := ""
	for _, k := range keys {
		path = s.join(path, k)
		if n, ok := s.arrays[path]; ok {
			path = s.index(path, n-1)
		}
	}
	return path
}

func (s *lineScanner) set(path string) {
	if _, ok := s.ix[path]; !ok {
		s.ix[path] = s.line
	}
}

func (s *lineScanner) peek() byte {
	if s.pos < len(s.src) {
		return s.src[s.pos]
	}
	return 0
}

// skipSpace skips blanks and comments, and newlines when newlines is set.
func (s *lineScanner) skipSpace(newlines bool) {
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.pos++
		case c == '\n' && newlines:
			s.pos++
			s.line++
		case c == '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

func (s *lineScanner) skipPast(end string) {
	if i := strings.Index(s.src[s.pos:], end); i >= 0 {
		s.pos += i + len(end)
	} else {
		s.pos = len(s.src)
	}
}

// keys reads a dotted key: bare, "basic" or 'literal' parts.
func (s *lineScanner) keys() []string {
	var keys []string
	for {
		s.skipSpace(false)
		switch c := s.peek(); c {
		case '"', '\'':
			keys = append(keys, s.str())
		default:
			start := s.pos
			for s.pos < len(s.src) && (bareKey().MatchString(s.src[s.pos : s.pos+1])) {
				s.pos++
			}
			keys = append(keys, s.src[start:s.pos])
		}
		s.skipSpace(false)
		if s.peek() != '.' {
			return keys
		}
		s.pos++
	}
}

// str reads a string of any of the four TOML kinds and returns its content
// (escapes in basic strings are decoded as Go would, which covers keys).
func (s *lineScanner) str() string {
	q := s.src[s.pos]
	triple := strings.Repeat(string(q), 3)
	if strings.HasPrefix(s.src[s.pos:], triple) {
		s.pos += 3
		start := s.pos
		for s.pos < len(s.src) && !strings.HasPrefix(s.src[s.pos:], triple) {
			if s.src[s.pos] == '\\' && q == '"' {
				s.pos++
				// A line-ending backslash: the newline it escapes is
				// still a line of the file.
				if s.pos < len(s.src) && s.src[s.pos] == '\n' {
					s.line++
				}
			} else if s.src[s.pos] == '\n' {
				s.line++
			}
			s.pos++
		}
		content := s.src[start:min(s.pos, len(s.src))]
		s.pos = min(s.pos+3, len(s.src))
		for s.peek() == q { // up to two quotes may close a multi-line string
			s.pos++
		}
		return content
	}
	s.pos++
	start := s.pos
	for s.pos < len(s.src) && s.src[s.pos] != q && s.src[s.pos] != '\n' {
		if s.src[s.pos] == '\\' && q == '"' {
			s.pos++
		}
		s.pos++
	}
	raw := s.src[start:min(s.pos, len(s.src))]
	s.pos = min(s.pos+1, len(s.src))
	if q == '"' {
		if v, err := strconv.Unquote(`"` + raw + `"`); err == nil {
			return v
		}
	}
	return raw
}

// value skips one value, indexing the keys of inline tables and the
// elements of arrays under path.
func (s *lineScanner) value(path string) {
	s.skipSpace(false)
	switch c := s.peek(); c {
	case '"', '\'':
		s.str()
	case '{':
		s.pos++
		for {
			s.skipSpace(true)
			if s.pos >= len(s.src) || s.peek() == '}' {
				s.pos = min(s.pos+1, len(s.src))
				return
			}
			if s.peek() == ',' {
				s.pos++
				continue
			}
			p := path
			for _, k := range s.keys() {
				p = s.join(p, k)
				s.set(p)
			}
			s.skipSpace(false)
			if s.peek() == '=' {
				s.pos++
			}
			s.value(p)
		}
	case '[':
		s.pos++
		for i := 0; ; {
			s.skipSpace(true)
			if s.pos >= len(s.src) || s.peek() == ']' {
				s.pos = min(s.pos+1, len(s.src))
				return
			}
			if s.peek() == ',' {
				s.pos++
				continue
			}
			p := s.index(path, i)
			s.set(p)
			s.value(p)
			i++
		}
	default:
		for s.pos < len(s.src) && !strings.ContainsRune(",]}\n#", rune(s.src[s.pos])) {
			s.pos++
		}
	}
}
