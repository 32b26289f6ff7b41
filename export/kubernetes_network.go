package export

import (
	"fmt"
	"strings"

	"github.com/safe-run/safe-run/manifest"
)

// The Kubernetes objects that carry a bridge-mode [network]: the
// container's ports, a Service for the published ones, and a
// NetworkPolicy for who reaches the pod and what it reaches.
type (
	k8sContainerPort struct {
		Name          string `json:"name,omitempty"`
		ContainerPort uint16 `json:"containerPort"`
		Protocol      string `json:"protocol"`
	}
	k8sServiceSpec struct {
		Type     string            `json:"type"`
		Selector map[string]string `json:"selector"`
		Ports    []k8sServicePort  `json:"ports"`
	}
	k8sServicePort struct {
		Name       string `json:"name"`
		Port       uint16 `json:"port"`
		TargetPort uint16 `json:"targetPort"`
		Protocol   string `json:"protocol"`
	}
	k8sNetworkPolicySpec struct {
		PodSelector k8sSelector      `json:"podSelector"`
		PolicyTypes []string         `json:"policyTypes"`
		Ingress     []k8sIngressRule `json:"ingress,omitempty"` // none: no pod may connect
		Egress      []k8sEgressRule  `json:"egress,omitempty"`
	}
	k8sIngressRule struct {
		From  []k8sPeer       `json:"from,omitempty"`
		Ports []k8sPolicyPort `json:"ports,omitempty"`
	}
	k8sEgressRule struct {
		To    []k8sPeer       `json:"to,omitempty"`
		Ports []k8sPolicyPort `json:"ports,omitempty"`
	}
	k8sPeer struct {
		PodSelector       *k8sSelector `json:"podSelector,omitempty"`
		NamespaceSelector *k8sSelector `json:"namespaceSelector,omitempty"`
		IPBlock           *k8sIPBlock  `json:"ipBlock,omitempty"`
	}
	k8sIPBlock struct {
		CIDR string `json:"cidr"`
	}
	k8sPolicyPort struct {
		Protocol string `json:"protocol"`
		Port     uint16 `json:"port,omitempty"`
	}
)

// bridgeLabel marks the pods of one bridge: the NetworkPolicy lets pods
// with the same value reach each other, as services on one bridge do.
const bridgeLabel = "run.safe-run/bridge"

// cniWarning: nothing in the pod enforces a NetworkPolicy; without a
// plugin that does, the pod reaches and is reached by everything.
const cniWarning = "NetworkPolicy: enforced only where the cluster's network plugin implements it (Calico, Cilium...); elsewhere the pod reaches, and is reached by, every address"

// labelValue makes a bridge name a label value: at most 63 characters of
// [A-Za-z0-9_.-], alphanumeric at both ends ("br_" is a bridge, not a
// label value).
func labelValue(v string) string {
	const edges = "_.-"
	v = strings.Trim(v, edges)
	if len(v) > 63 {
		v = strings.TrimRight(v[:63], edges)
	}
	return v
}

// k8sProto is a manifest protocol in Kubernetes' spelling.
func k8sProto(p string) string { return strings.ToUpper(p) }

// k8sNetwork fills the container's ports and returns the pod's extra
// labels and the objects that follow the workload: a Service when ports
// are published, and the NetworkPolicy.
func k8sNetwork(s *manifest.Service, c *k8sContainer, selector map[string]string, warn func(string, ...any), note func(...string)) (labels map[string]string, objs []k8sObject) {
	n := s.Network
	name := dnsName(s.Name, false)
	switch n.Mode {
	case manifest.NetworkHost:
		// A pod on the host's network is not subject to NetworkPolicy.
		return nil, nil
	case manifest.NetworkNone:
		// Mode none: safe-run gives the service loopback only, nothing in
		// or out. A pod always gets the cluster's network; a policy that
		// selects it, with both policy types and no rules, denies all its
		// ingress and egress (loopback inside the pod is not filtered).
		note("NetworkPolicy: denies all ingress and egress, as network mode none gives the",
			"service loopback only (which the pod keeps).")
		warn("%s", cniWarning)
		objs = append(objs, k8sObject{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy", Metadata: k8sMeta{Name: name, Labels: selector},
			Spec: k8sNetworkPolicySpec{PodSelector: k8sSelector{MatchLabels: selector}, PolicyTypes: []string{"Ingress", "Egress"}}})
		return nil, objs
	}
	seen := map[string]bool{}
	var svcPorts []k8sServicePort
	var ingressPorts []k8sPolicyPort
	for _, p := range n.Published {
		key := fmt.Sprintf("%d/%s", p.ContainerPort, p.Proto)
		if !seen[key] {
			seen[key] = true
			c.Ports = append(c.Ports, k8sContainerPort{ContainerPort: p.ContainerPort, Protocol: k8sProto(p.Proto)})
			ingressPorts = append(ingressPorts, k8sPolicyPort{Protocol: k8sProto(p.Proto), Port: p.ContainerPort})
		}
		svcPorts = append(svcPorts, k8sServicePort{Name: fmt.Sprintf("%s-%d", p.Proto, p.HostPort), Port: p.HostPort, TargetPort: p.ContainerPort, Protocol: k8sProto(p.Proto)})
	}
	if len(svcPorts) > 0 {
		svcName, renamed := serviceName(s.Name)
		if renamed {
			note(fmt.Sprintf("Service: named %s, since a Service's name must start with a letter (DNS-1035):", svcName),
				fmt.Sprintf("peers reach the service as %s, not %s.", svcName, s.Name))
		}
		objs = append(objs, k8sObject{APIVersion: "v1", Kind: "Service", Metadata: k8sMeta{Name: svcName, Labels: selector},
			Spec: k8sServiceSpec{Type: "ClusterIP", Selector: selector, Ports: svcPorts}})
		warn("Service: ClusterIP: what the manifest publishes on 127.0.0.1 or on one host address, Kubernetes exposes to every pod the NetworkPolicy lets in")
		note("Service: ClusterIP, reachable inside the cluster; to reach it from outside, put an",
			"Ingress or a LoadBalancer in front.")
	}

	pol := k8sNetworkPolicySpec{PodSelector: k8sSelector{MatchLabels: selector}, PolicyTypes: []string{"Ingress"}, Ingress: []k8sIngressRule{}}
	var peers []k8sPeer
	if n.Bridge != "" {
		labels = map[string]string{bridgeLabel: labelValue(n.Bridge)}
		peers = []k8sPeer{{PodSelector: &k8sSelector{MatchLabels: labels}}}
		pol.Ingress = append(pol.Ingress, k8sIngressRule{From: peers})
	}
	if len(ingressPorts) > 0 {
		pol.Ingress = append(pol.Ingress, k8sIngressRule{Ports: ingressPorts})
	}
	if !n.Egress.All {
		pol.PolicyTypes = append(pol.PolicyTypes, "Egress")
		// DNS, to the cluster's resolver, as safe-run lets every
		// service reach its bridge's.
		dns := k8sEgressRule{
			To: []k8sPeer{{
				NamespaceSelector: &k8sSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
				PodSelector:       &k8sSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			}},
			Ports: []k8sPolicyPort{{Protocol: "UDP", Port: 53}, {Protocol: "TCP", Port: 53}},
		}
		pol.Egress = append(pol.Egress, dns)
		if peers != nil {
			pol.Egress = append(pol.Egress, k8sEgressRule{To: peers})
		}
		var hosts []string
		for _, r := range n.Egress.Rules {
			if r.Host != "" {
				hosts = append(hosts, r.String())
				continue
			}
			rule := k8sEgressRule{To: []k8sPeer{{IPBlock: &k8sIPBlock{CIDR: r.Prefix.String()}}}}
			if r.Port != 0 {
				for _, proto := range []string{"tcp", "udp"} {
					if r.Proto == "" || r.Proto == proto {
						rule.Ports = append(rule.Ports, k8sPolicyPort{Protocol: k8sProto(proto), Port: r.Port})
					}
				}
			}
			pol.Egress = append(pol.Egress, rule)
		}
		if len(hosts) > 0 {
			warn("NetworkPolicy: egress to host names cannot be expressed (%s): allow their addresses as ipBlock entries, or use a CNI with DNS-based policies", strings.Join(hosts, ", "))
		}
	}
	if len(n.Resolvers) > 0 {
		note("dns: the pod uses the cluster's resolver; the manifest's upstreams (" + joinAddrs(n) + ") belong in its configuration.")
	}
	warn("%s", cniWarning)
	objs = append(objs, k8sObject{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy", Metadata: k8sMeta{Name: name, Labels: selector}, Spec: pol})
	return labels, objs
}

func joinAddrs(n manifest.Network) string {
	var out []string
	for _, a := range n.Resolvers {
		out = append(out, a.String())
	}
	return strings.Join(out, ", ")
}
