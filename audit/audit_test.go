package audit

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/safe-run/safe-run/policy"
)

// TestContainerPorts: docker inspect's port bindings become the ports the
// rules judge (SR034 publish-all-addresses), an empty HostIp included,
// which is docker's every address.
func TestContainerPorts(t *testing.T) {
	var ins apiContainer
	if err := json.Unmarshal([]byte(`{"HostConfig": {"NetworkMode": "app", "PortBindings": {
		"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
		"53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}, {"HostIp": "::", "HostPort": "5353"}]}}}`), &ins); err != nil {
		t.Fatal(err)
	}
	want := []policy.ContainerPort{
		{HostIP: "127.0.0.1", HostPort: "5353", ContainerPort: "53", Proto: "udp"},
		{HostIP: "::", HostPort: "5353", ContainerPort: "53", Proto: "udp"},
		{HostIP: "", HostPort: "8080", ContainerPort: "80", Proto: "tcp"},
	}
	c := container(&ins)
	if !reflect.DeepEqual(c.Ports, want) {
		t.Errorf("ports %+v, want %+v", c.Ports, want)
	}
	n := 0
	for _, f := range policy.ContainerFindings(c) {
		if f.Rule.ID == "SR034" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d SR034 findings, want 2 (:: and the empty HostIp)", n)
	}
}
