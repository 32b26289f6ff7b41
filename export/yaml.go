package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

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

// sexagesimal matches what YAML 1.1 readers (docker-compose v1, PyYAML)
// take for a base-60 number: user: 1000:1000 would become 3601000.
var sexagesimal = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$`)

// blockStyle drops the flow style and quoting that parsing JSON left on
// every node; the encoder then quotes only what would otherwise read as
// another type ("1000:1000" stays a string, "true" gets quotes).
func blockStyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && sexagesimal.MatchString(n.Value) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}
