package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// toYAML writes v as YAML through its JSON encoding, so that one set of
// json tags (the field names of the Kubernetes and compose references,
// with their omitempty) decides the keys and their order.
func toYAML(v any) ([]byte, error) { return toYAMLEdited(v, nil) }

// toYAMLEdited is toYAML with edit applied to the document's nodes
// before they are written.
func toYAMLEdited(v any, edit func(*yaml.Node)) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("converting JSON to YAML: %w", err)
	}
	blockStyle(&doc)
	if edit != nil {
		edit(&doc)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sexagesimal reports whether YAML 1.1 readers (docker-compose v1, PyYAML)
// take s for a base-60 number, [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?:
// user: 33:33 (www-data) would become 1983. Not a regexp: a package-level one
// would be compiled on every container start (see doc.go).
func sexagesimal(s string) bool {
	s = strings.TrimLeft(s, "+-")
	head, rest, ok := strings.Cut(s, ":")
	if !ok || head == "" || head[0] < '0' || head[0] > '9' || strings.Trim(head, "0123456789_") != "" {
		return false
	}
	rest, frac, _ := strings.Cut(rest, ".")
	if strings.Trim(frac, "0123456789_") != "" {
		return false
	}
	for _, g := range strings.Split(rest, ":") {
		switch {
		case len(g) == 1 && g[0] >= '0' && g[0] <= '9':
		case len(g) == 2 && g[0] >= '0' && g[0] <= '5' && g[1] >= '0' && g[1] <= '9':
		default:
			return false
		}
	}
	return true
}

// blockStyle drops the flow style and quoting that parsing JSON left on
// every node; the encoder then quotes only what would otherwise read as
// another type ("1000:1000" stays a string, "true" gets quotes).
func blockStyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && sexagesimal(n.Value) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// escapeDollars doubles every $ in the string values of a compose file
// except keep: compose interpolates ${VAR} and $VAR in every value (not in
// keys: compose-go's interpolation.recursiveInterpolate), so a command's
// "$HOME" or a password "pa$word" would otherwise become the variables of
// whoever runs compose. "$$" is compose's literal $.
func escapeDollars(n *yaml.Node, keep string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != keep {
			n.Value = strings.ReplaceAll(n.Value, "$", "$$")
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			escapeDollars(n.Content[i], keep)
		}
	default:
		for _, c := range n.Content {
			escapeDollars(c, keep)
		}
	}
}
