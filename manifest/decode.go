package manifest

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decodeValue stores TOML data (as BurntSushi/toml decodes it into
// map[string]any) into v, recording a positioned error for every key it
// cannot store and carrying on with the rest. Decoding straight into the
// struct would stop at the first bad value; a user fixing a manifest wants
// all of them at once.
func decodeValue(fe *fieldErrors, path string, data any, v reflect.Value) {
	if v.CanAddr() {
		// A value of more than one TOML type (egress: a string or an
		// array), with BurntSushi/toml's Unmarshaler signature.
		if u, ok := v.Addr().Interface().(interface{ UnmarshalTOML(any) error }); ok {
			var entry *entryError
			switch err := u.UnmarshalTOML(data); {
			case errors.As(err, &entry):
				fe.add(indexPath(path, entry.index), "%s", entry.msg)
			case err != nil:
				fe.add(path, "%s", err.Error())
			}
			return
		}
		if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
			decodeText(fe, path, data, v, u)
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		decodeValue(fe, path, data, elem.Elem())
		v.Set(elem)
	case reflect.Struct:
		table, ok := data.(map[string]any)
		if !ok {
			header := "[" + path + "]"
			if i := strings.LastIndexByte(path, '['); i > 0 && strings.HasSuffix(path, "]") {
				header = "[[" + path[:i] + "]]" // an entry of an array of tables
			}
			fe.add(path, "%s must be a table (write %s with keys below it)", describe(data), header)
			return
		}
		decodeStruct(fe, path, table, v)
	case reflect.Map:
		table, ok := data.(map[string]any)
		if !ok {
			fe.add(path, "%s must be a table (e.g. %s = { KEY = \"value\" })", describe(data), path)
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(table))
		for _, k := range sortedKeys(table) {
			elem := reflect.New(v.Type().Elem()).Elem()
			decodeValue(fe, joinKey(path, k), table[k], elem)
			m.SetMapIndex(reflect.ValueOf(k), elem)
		}
		v.Set(m)
	case reflect.Slice:
		list, ok := asList(data)
		if !ok {
			fe.add(path, "%s must be an array (e.g. %s = [...])", describe(data), path)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(list), len(list))
		for i, item := range list {
			decodeValue(fe, indexPath(path, i), item, s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		s, ok := data.(string)
		if !ok {
			fe.add(path, "%s must be a string (put it in double quotes)", describe(data))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := data.(bool)
		if !ok {
			fe.add(path, "%s must be true or false (without quotes)", describe(data))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := data.(int64)
		if f, isFloat := data.(float64); isFloat {
			// TOML's 10.0 is a float, which fmt prints as 10.
			fix := "write a whole number"
			if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				fix = fmt.Sprintf("write %d", int64(f))
			}
			lit := strconv.FormatFloat(f, 'g', -1, 64)
			if !strings.ContainsAny(lit, ".eNI") { // not 1e+06, NaN, +Inf
				lit += ".0"
			}
			fe.add(path, "%s is a float: floats are not allowed here (%s)", lit, fix)
			return
		}
		if !ok {
			fe.add(path, "%s must be a whole number (without quotes)", describe(data))
			return
		}
		v.SetInt(n)
	case reflect.Float64:
		switch n := data.(type) {
		case float64:
			v.SetFloat(n)
		case int64:
			v.SetFloat(float64(n))
		default:
			fe.add(path, "%s must be a number (without quotes, e.g. 1.5)", describe(data))
		}
	default:
		// A field type the manifest does not use; a programming error.
		fe.add(path, "cannot be decoded into %s", v.Type())
	}
}

// textExamples are what the error for a non-string value suggests.
var textExamples = map[reflect.Type]string{
	reflect.TypeFor[Size]():       `a string with a unit, e.g. "512M"`,
	reflect.TypeFor[Duration]():   `a string with a unit, e.g. "10s"`,
	reflect.TypeFor[FileMode]():   `a string of octal digits, e.g. "1777"`,
	reflect.TypeFor[Capability](): `a string, e.g. "NET_BIND_SERVICE"`,
	reflect.TypeFor[Signal]():     `a string, e.g. "SIGTERM"`,
}

func decodeText(fe *fieldErrors, path string, data any, v reflect.Value, u encoding.TextUnmarshaler) {
	var text string
	switch d := data.(type) {
	case string:
		text = d
	case int64:
		if v.Type() == reflect.TypeFor[Signal]() {
			text = fmt.Sprint(d)
			break
		}
		fe.add(path, "%d is a bare number (use %s)", d, textExamples[v.Type()])
		return
	default:
		fe.add(path, "%s must be %s", describe(data), textExamples[v.Type()])
		return
	}
	if err := u.UnmarshalText([]byte(text)); err != nil {
		fe.add(path, "%s", err.Error())
	}
}

func decodeStruct(fe *fieldErrors, path string, table map[string]any, v reflect.Value) {
	fields := map[string]int{}
	var names []string
	for i := range v.NumField() {
		tag := v.Type().Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	for _, k := range sortedKeys(table) {
		i, ok := fields[k]
		if !ok {
			fe.add(joinKey(path, k), "unknown key (%s)", suggest(k, names, path))
			continue
		}
		decodeValue(fe, joinKey(path, k), table[k], v.Field(i))
	}
}

// suggest names the closest valid key, or lists them all.
func suggest(key string, names []string, table string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(key), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	where := "top-level keys"
	if table != "" {
		where = "keys of " + table
	}
	return where + " are: " + strings.Join(names, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// asList accepts both an inline array and an array of tables.
func asList(data any) ([]any, bool) {
	switch d := data.(type) {
	case []any:
		return d, true
	case []map[string]any:
		out := make([]any, len(d))
		for i, t := range d {
			out[i] = t
		}
		return out, true
	}
	return nil, false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// describe renders a decoded TOML value for an error message.
func describe(data any) string {
	switch d := data.(type) {
	case string:
		return fmt.Sprintf("%q", d)
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	case time.Time:
		return "a date" // not its Go rendering, "2024-01-01 00:00:00 +0000 date-local"
	default:
		return fmt.Sprint(d)
	}
}
