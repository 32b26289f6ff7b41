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
func toYAML(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("converting JSON to YAML: %w", err)
	}
	blockStyle(&doc)
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
