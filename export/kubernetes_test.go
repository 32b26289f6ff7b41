package export

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/pod-security-admission/api"
	psa "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// decodeStrict decodes the Kubernetes YAML into v, refusing any field the
// k8s.io/api type does not have: a misspelt field would be dropped by the
// API server without a word.
func decodeStrict(t *testing.T, text []byte, v any) {
	t.Helper()
	j, err := yaml.YAMLToJSON(text)
	if err != nil {
		t.Fatalf("not YAML: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("does not decode into %T: %v\n%s", v, err, text)
	}
}

// podSecurity evaluates a pod against Pod Security "restricted", as the
// admission controller does, and returns "reason: detail" per violation.
func podSecurity(t *testing.T, meta *corev1.Pod, version api.Version) []string {
	t.Helper()
	eval, err := psa.NewEvaluator(psa.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range eval.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: version}, &meta.ObjectMeta, &meta.Spec) {
		if !r.Allowed {
			out = append(out, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	slices.Sort(out)
	return out
}

func TestKubernetesPodSecurity(t *testing.T) {
	insecure := []string{
		`allowPrivilegeEscalation != false: container "loose" must set securityContext.allowPrivilegeEscalation=false`,
		`forbidden AppArmor profile: pod must not set AppArmor profile type to "Unconfined"`,
		`host namespaces: hostNetwork=true`,
		`restricted volume types: volume "bind-0" uses restricted volume type "hostPath"`,
		`runAsNonRoot != true: pod or container "loose" must set securityContext.runAsNonRoot=true`,
		`runAsUser=0: pod must not set runAsUser=0`,
		`seccompProfile: pod must not set securityContext.seccompProfile.type to "Unconfined"`,
		`unrestricted capabilities: container "loose" must not include "CHOWN", "NET_ADMIN" in securityContext.capabilities.add`,
	}
	for _, tc := range []struct {
		manifest string
		// Pod Security restricted violations at the latest policy
		// version, and at 1.34, the last before root in a user
		// namespace became acceptable.
		latest, v134 []string
	}{
		{"hardened", nil, nil},
		// root, but the image has a non-root user to run as.
		{"root", nil, nil},
		// root, and the image has no other user: hostUsers: false.
		{"rootonly", nil, []string{
			`runAsNonRoot != true: pod or container "rootonly" must set securityContext.runAsNonRoot=true`,
			`runAsUser=0: pod must not set runAsUser=0`,
		}},
		// root on the host network: no user namespace either.
		{"insecure", insecure, insecure},
	} {
		t.Run(tc.manifest, func(t *testing.T) {
			p := prepare(t, tc.manifest)
			out, err := Kubernetes(p, goldenOpts)
			if err != nil {
				t.Fatal(err)
			}
			var pod corev1.Pod
			decodeStrict(t, out.Text, &pod)
			if pod.Kind != "Pod" || pod.APIVersion != "v1" {
				t.Errorf("kind %s/%s, want v1/Pod", pod.APIVersion, pod.Kind)
			}
			got := podSecurity(t, &pod, api.LatestVersion())
			if !slices.Equal(got, tc.latest) {
				t.Errorf("Pod Security restricted violations:\n got %q\nwant %q", got, tc.latest)
			}
			got134 := podSecurity(t, &pod, api.MajorMinorVersion(1, 34))
			if !slices.Equal(got134, tc.v134) {
				t.Errorf("Pod Security restricted v1.34 violations:\n got %q\nwant %q", got134, tc.v134)
			}
			// Every violation is also a warning of the export.
			for _, v := range append(got, got134...) {
				reason, _, _ := strings.Cut(v, ":")
				if !slices.ContainsFunc(out.Warnings, func(w string) bool { return strings.Contains(w, reason) }) {
					t.Errorf("violation %q has no warning among %q", v, out.Warnings)
				}
			}
			if len(got)+len(got134) == 0 && slices.ContainsFunc(out.Warnings, func(w string) bool { return strings.HasPrefix(w, "Pod Security") }) {
				t.Errorf("no violation, but warnings %q", out.Warnings)
			}

			var dep appsv1.Deployment
			out, err = Kubernetes(p, Options{Dir: "/export", Kind: KindDeployment})
			if err != nil {
				t.Fatal(err)
			}
			decodeStrict(t, out.Text, &dep)
			tpl := &corev1.Pod{ObjectMeta: dep.Spec.Template.ObjectMeta, Spec: dep.Spec.Template.Spec}
			if got := podSecurity(t, tpl, api.LatestVersion()); !slices.Equal(got, tc.latest) {
				t.Errorf("Deployment template violations:\n got %q\nwant %q", got, tc.latest)
			}
			if dep.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
				t.Errorf("Deployment restartPolicy %q, want Always", dep.Spec.Template.Spec.RestartPolicy)
			}
			if sel := dep.Spec.Selector.MatchLabels; len(sel) == 0 || dep.Spec.Template.Labels["app.kubernetes.io/name"] != sel["app.kubernetes.io/name"] {
				t.Errorf("selector %v does not select the template's labels %v", sel, dep.Spec.Template.Labels)
			}
		})
	}
}

// TestKubernetesHardened checks the settings of the hardened manifest field
// by field in the k8s.io/api types.
func TestKubernetesHardened(t *testing.T) {
	out, err := Kubernetes(prepare(t, "hardened"), goldenOpts)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	decodeStrict(t, out.Text, &pod)
	s := pod.Spec
	c := s.Containers[0]
	check := func(what string, got, want any) {
		t.Helper()
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Errorf("%s = %s, want %s", what, g, w)
		}
	}
	no, yes := false, true
	uid := int64(1000)
	check("hostUsers", s.HostUsers, &no)
	check("runAsNonRoot", s.SecurityContext.RunAsNonRoot, &yes)
	check("runAsUser", s.SecurityContext.RunAsUser, &uid)
	check("runAsGroup", s.SecurityContext.RunAsGroup, &uid)
	check("seccompProfile", s.SecurityContext.SeccompProfile, &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr("safe-run/web.json")})
	check("appArmorProfile", s.SecurityContext.AppArmorProfile, &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: ptr("safe-run-web")})
	check("allowPrivilegeEscalation", c.SecurityContext.AllowPrivilegeEscalation, &no)
	check("readOnlyRootFilesystem", c.SecurityContext.ReadOnlyRootFilesystem, &yes)
	check("capabilities", c.SecurityContext.Capabilities, &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}})
	check("limits.memory", c.Resources.Limits.Memory().Value(), int64(256<<20))
	check("requests.memory", c.Resources.Requests.Memory().Value(), int64(128<<20))
	check("limits.cpu", c.Resources.Limits.Cpu().MilliValue(), int64(1500))
	check("requests.cpu", c.Resources.Requests.Cpu().MilliValue(), int64(1500))
	check("restartPolicy", s.RestartPolicy, corev1.RestartPolicyAlways)
	check("terminationGracePeriodSeconds", s.TerminationGracePeriodSeconds, ptr(int64(20)))
	check("automountServiceAccountToken", s.AutomountServiceAccountToken, &no)
	check("command", c.Command, []string{"/bin/server", "--port", "80"})
	check("tmpfs", s.Volumes[0].EmptyDir.Medium, corev1.StorageMediumMemory)
	check("tmpfs size", s.Volumes[0].EmptyDir.SizeLimit.Value(), int64(64<<20))
	check("secret mode", s.Volumes[4].Secret.DefaultMode, ptr(int32(0o400)))
	check("annotation", pod.Annotations["org.opencontainers.image.source"], "https://example.org/web")
	if len(out.Files) != 1 || out.Files[0].Name != "web.seccomp.json" {
		t.Errorf("files %v, want web.seccomp.json", out.Files)
	}
}

func ptr[T any](v T) *T { return &v }

// TestKubernetesNetwork: bridge mode writes the pod's ports, a Service
// and a NetworkPolicy, each decoding strictly into its k8s.io/api type;
// mode none a NetworkPolicy that denies everything; mode host nothing.
func TestKubernetesNetwork(t *testing.T) {
	for _, tc := range []struct {
		manifest string
		objects  int
		egress   int // rules; -1: no egress policy
	}{
		{"bridged", 3, 4},      // DNS, peers, two ipBlocks (the host name is a warning)
		{"bridged-own", 3, -1}, // egress = "all"
		{"insecure", 1, -1},    // host network: no policy applies
	} {
		t.Run(tc.manifest, func(t *testing.T) {
			out, err := Kubernetes(prepare(t, tc.manifest), goldenOpts)
			if err != nil {
				t.Fatal(err)
			}
			docs := strings.Split(string(out.Text), "\n---\n")
			if len(docs) != tc.objects {
				t.Fatalf("%d objects, want %d", len(docs), tc.objects)
			}
			var pod corev1.Pod
			decodeStrict(t, []byte(docs[0]), &pod)
			if tc.objects == 1 {
				return
			}
			var svc corev1.Service
			decodeStrict(t, []byte(docs[1]), &svc)
			var pol networkingv1.NetworkPolicy
			decodeStrict(t, []byte(docs[2]), &pol)
			if got := len(pod.Spec.Containers[0].Ports); got != len(svc.Spec.Ports) {
				t.Errorf("%d container ports, %d service ports", got, len(svc.Spec.Ports))
			}
			hasEgress := slices.Contains(pol.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			if tc.egress < 0 && hasEgress || tc.egress >= 0 && (!hasEgress || len(pol.Spec.Egress) != tc.egress) {
				t.Errorf("policy types %v, %d egress rules, want %d", pol.Spec.PolicyTypes, len(pol.Spec.Egress), tc.egress)
			}
			for k, v := range pol.Spec.PodSelector.MatchLabels {
				if pod.Labels[k] != v || svc.Spec.Selector[k] != v {
					t.Errorf("selector %s=%s does not select the pod (%v) or is not the service's (%v)", k, v, pod.Labels, svc.Spec.Selector)
				}
			}
		})
	}
}

// TestKubernetesNetworkNone: network mode none (loopback only) becomes a
// NetworkPolicy selecting the pod with both policy types and no rule:
// no ingress, no egress, as safe-run gives the service. It was once no
// policy at all, which left the pod the whole cluster network.
func TestKubernetesNetworkNone(t *testing.T) {
	for _, kind := range []string{KindPod, KindDeployment} {
		t.Run(kind, func(t *testing.T) {
			out, err := Kubernetes(prepare(t, "hardened"), Options{Dir: "/export", Kind: kind})
			if err != nil {
				t.Fatal(err)
			}
			docs := strings.Split(string(out.Text), "\n---\n")
			if len(docs) != 2 {
				t.Fatalf("%d objects, want the workload and a NetworkPolicy:\n%s", len(docs), out.Text)
			}
			var podLabels map[string]string
			if kind == KindPod {
				var pod corev1.Pod
				decodeStrict(t, []byte(docs[0]), &pod)
				podLabels = pod.Labels
			} else {
				var dep appsv1.Deployment
				decodeStrict(t, []byte(docs[0]), &dep)
				podLabels = dep.Spec.Template.Labels
			}
			var pol networkingv1.NetworkPolicy
			decodeStrict(t, []byte(docs[1]), &pol)
			if want := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}; !slices.Equal(pol.Spec.PolicyTypes, want) {
				t.Errorf("policyTypes %v, want %v", pol.Spec.PolicyTypes, want)
			}
			if pol.Spec.Ingress != nil || pol.Spec.Egress != nil {
				t.Errorf("rules ingress %v egress %v, want none", pol.Spec.Ingress, pol.Spec.Egress)
			}
			if len(pol.Spec.PodSelector.MatchLabels) == 0 {
				t.Fatal("the policy selects every pod of the namespace")
			}
			for k, v := range pol.Spec.PodSelector.MatchLabels {
				if podLabels[k] != v {
					t.Errorf("selector %s=%s does not select the pod (%v)", k, v, podLabels)
				}
			}
			if !strings.Contains(docs[0], "# NetworkPolicy: denies all ingress and egress") {
				t.Errorf("no comment says what the policy does:\n%s", docs[0])
			}
		})
	}
}

// TestKubernetesDollar: the kubelet expands $(VAR) in a container's
// command, args and env values and reads $$ as $; every $ of the
// manifest is written $$, so the container gets the manifest's words.
func TestKubernetesDollar(t *testing.T) {
	path := writeTestManifest(t, `version = 1
name = "dollar"
[image]
rootfs = "$ROOTFS"
[process]
command = ["/bin/sh", "-c", "echo $(HOSTNAME) pid=$$ $HOME"]
env = { PASS = "pa$(word)$$" }
user = "1000:1000"
[resources]
memory = "64M"
cpus = 0.5
`)
	out, err := Kubernetes(prepareFile(t, path), goldenOpts)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	decodeStrict(t, []byte(strings.Split(string(out.Text), "\n---\n")[0]), &pod)
	c := pod.Spec.Containers[0]
	// What the kubelet runs: $$ -> $, $(VAR) expanded (here: none is).
	unescape := func(s string) string { return strings.ReplaceAll(s, "$$", "$") }
	if got, want := c.Command, []string{"/bin/sh", "-c", "echo $$(HOSTNAME) pid=$$$$ $$HOME"}; !slices.Equal(got, want) {
		t.Errorf("command %q, want %q", got, want)
	}
	if got := unescape(c.Command[2]); got != "echo $(HOSTNAME) pid=$$ $HOME" {
		t.Errorf("the kubelet runs %q", got)
	}
	if len(c.Env) != 1 || unescape(c.Env[0].Value) != "pa$(word)$$" {
		t.Errorf("env %v, want PASS=pa$$(word)$$$$", c.Env)
	}
}

// TestKubernetesNames: every name the export writes is one the API server
// accepts: a Service's a DNS-1035 label (a letter first: "1web" was
// written as it is), containers', volumes' and ports' DNS-1123 labels,
// other objects' DNS-1123 subdomains, label values valid ones.
func TestKubernetesNames(t *testing.T) {
	long := "1" + strings.Repeat("x", 61) + "_"
	for _, name := range []string{"1web", "9", "a..b_c", "x_y.z-", "web", long} {
		t.Run(name, func(t *testing.T) {
			path := writeTestManifest(t, `version = 1
name = "`+name+`"
[image]
rootfs = "$ROOTFS"
[process]
command = ["/bin/server"]
user = "1000:1000"
[resources]
memory = "64M"
cpus = 0.5
[[mounts]]
type = "volume"
source = "`+name+`-Data_"
target = "/data"
[[mounts]]
type = "bind"
source = "`+filepath.Join(testdata, "config")+`"
target = "/etc/x..y_"
[network]
mode = "bridge"
bridge = "b_r_"
ports = ["8080:80", "127.0.0.1:5353:53/udp"]
[secrets]
"db_Pass.word" = { file = "`+filepath.Join(testdata, "db-password")+`" }
`)
			out, err := Kubernetes(prepareFile(t, path), goldenOpts)
			if err != nil {
				t.Fatal(err)
			}
			docs := strings.Split(string(out.Text), "\n---\n")
			if len(docs) != 3 {
				t.Fatalf("%d objects, want a Pod, a Service and a NetworkPolicy", len(docs))
			}
			var pod corev1.Pod
			decodeStrict(t, []byte(docs[0]), &pod)
			var svc corev1.Service
			decodeStrict(t, []byte(docs[1]), &svc)
			var pol networkingv1.NetworkPolicy
			decodeStrict(t, []byte(docs[2]), &pol)
			check := func(what, value string, errs []string) {
				t.Helper()
				if len(errs) > 0 {
					t.Errorf("%s %q: %s", what, value, strings.Join(errs, "; "))
				}
			}
			subdomain := func(what, v string) { check(what, v, validation.IsDNS1123Subdomain(v)) }
			label := func(what, v string) { check(what, v, validation.IsDNS1123Label(v)) }
			labels := func(what string, m map[string]string) {
				for k, v := range m {
					check(what+" key", k, validation.IsQualifiedName(k))
					check(what+" value", v, validation.IsValidLabelValue(v))
				}
			}
			subdomain("Pod", pod.Name)
			check("Service", svc.Name, validation.IsDNS1035Label(svc.Name))
			subdomain("NetworkPolicy", pol.Name)
			labels("pod label", pod.Labels)
			labels("service label", svc.Labels)
			labels("selector", svc.Spec.Selector)
			labels("policy selector", pol.Spec.PodSelector.MatchLabels)
			for _, r := range pol.Spec.Ingress {
				for _, p := range r.From {
					if p.PodSelector != nil {
						labels("peer selector", p.PodSelector.MatchLabels)
					}
				}
			}
			for _, c := range pod.Spec.Containers {
				label("container", c.Name)
			}
			for _, p := range svc.Spec.Ports {
				label("service port", p.Name)
			}
			for _, v := range pod.Spec.Volumes {
				label("volume", v.Name)
				switch {
				case v.PersistentVolumeClaim != nil:
					subdomain("claim", v.PersistentVolumeClaim.ClaimName)
				case v.ConfigMap != nil:
					subdomain("ConfigMap", v.ConfigMap.Name)
				case v.Secret != nil:
					subdomain("Secret", v.Secret.SecretName)
					for _, it := range v.Secret.Items {
						check("secret key", it.Key, validation.IsConfigMapKey(it.Key))
					}
				}
			}
			if svc.Name != dnsName(name, false) && !strings.Contains(docs[0], "# Service: named "+svc.Name) {
				t.Errorf("the Service is named %s, and no comment says so", svc.Name)
			}
		})
	}
}
