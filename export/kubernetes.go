package export

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/plan"
)

// The Kubernetes objects, as k8s.io/api/core/v1 and apps/v1 name their
// fields (the tests decode the output into those types, refusing unknown
// fields). Only what the export sets is here.
type (
	k8sObject struct {
		APIVersion string  `json:"apiVersion"`
		Kind       string  `json:"kind"`
		Metadata   k8sMeta `json:"metadata"`
		Spec       any     `json:"spec"`
	}
	k8sMeta struct {
		Name        string            `json:"name,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	k8sDeploymentSpec struct {
		Replicas int            `json:"replicas"`
		Selector k8sSelector    `json:"selector"`
		Strategy k8sStrategy    `json:"strategy"`
		Template k8sPodTemplate `json:"template"`
	}
	k8sSelector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	k8sStrategy struct {
		Type string `json:"type"`
	}
	k8sPodTemplate struct {
		Metadata k8sMeta    `json:"metadata"`
		Spec     k8sPodSpec `json:"spec"`
	}
	k8sPodSpec struct {
		HostUsers                    *bool                 `json:"hostUsers,omitempty"`
		HostNetwork                  bool                  `json:"hostNetwork,omitempty"`
		HostPID                      bool                  `json:"hostPID,omitempty"`
		HostIPC                      bool                  `json:"hostIPC,omitempty"`
		Hostname                     string                `json:"hostname,omitempty"`
		AutomountServiceAccountToken *bool                 `json:"automountServiceAccountToken"`
		EnableServiceLinks           *bool                 `json:"enableServiceLinks"`
		RestartPolicy                string                `json:"restartPolicy"`
		TerminationGracePeriod       int64                 `json:"terminationGracePeriodSeconds"`
		SecurityContext              k8sPodSecurityContext `json:"securityContext"`
		Containers                   []k8sContainer        `json:"containers"`
		Volumes                      []k8sVolume           `json:"volumes,omitempty"`
	}
	k8sPodSecurityContext struct {
		RunAsNonRoot       *bool       `json:"runAsNonRoot,omitempty"`
		RunAsUser          *int64      `json:"runAsUser,omitempty"`
		RunAsGroup         *int64      `json:"runAsGroup,omitempty"`
		SupplementalGroups []int64     `json:"supplementalGroups,omitempty"`
		FSGroup            *int64      `json:"fsGroup,omitempty"`
		SeccompProfile     *k8sProfile `json:"seccompProfile,omitempty"`
		AppArmorProfile    *k8sProfile `json:"appArmorProfile,omitempty"`
	}
	k8sProfile struct {
		Type             string `json:"type"`
		LocalhostProfile string `json:"localhostProfile,omitempty"`
	}
	k8sContainer struct {
		Name            string             `json:"name"`
		Image           string             `json:"image"`
		Command         []string           `json:"command,omitempty"`
		Args            []string           `json:"args,omitempty"`
		WorkingDir      string             `json:"workingDir,omitempty"`
		Env             []k8sEnv           `json:"env,omitempty"`
		Ports           []k8sContainerPort `json:"ports,omitempty"`
		Resources       k8sResources       `json:"resources"`
		VolumeMounts    []k8sVolumeMount   `json:"volumeMounts,omitempty"`
		SecurityContext k8sSecurityContext `json:"securityContext"`
		Stdin           bool               `json:"stdin,omitempty"`
		TTY             bool               `json:"tty,omitempty"`
	}
	k8sEnv struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	k8sResources struct {
		Requests map[string]string `json:"requests,omitempty"`
		Limits   map[string]string `json:"limits,omitempty"`
	}
	k8sVolumeMount struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		SubPath   string `json:"subPath,omitempty"`
		ReadOnly  bool   `json:"readOnly,omitempty"`
	}
	k8sSecurityContext struct {
		AllowPrivilegeEscalation *bool           `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool           `json:"readOnlyRootFilesystem"`
		Capabilities             k8sCapabilities `json:"capabilities"`
	}
	k8sCapabilities struct {
		Add  []string `json:"add,omitempty"`
		Drop []string `json:"drop"`
	}
	k8sVolume struct {
		Name                  string        `json:"name"`
		EmptyDir              *k8sEmptyDir  `json:"emptyDir,omitempty"`
		PersistentVolumeClaim *k8sClaim     `json:"persistentVolumeClaim,omitempty"`
		Secret                *k8sSecretVol `json:"secret,omitempty"`
		ConfigMap             *k8sConfigMap `json:"configMap,omitempty"`
		HostPath              *k8sHostPath  `json:"hostPath,omitempty"`
	}
	k8sEmptyDir struct {
		Medium    string `json:"medium,omitempty"`
		SizeLimit string `json:"sizeLimit,omitempty"`
	}
	k8sClaim struct {
		ClaimName string `json:"claimName"`
		ReadOnly  bool   `json:"readOnly,omitempty"`
	}
	k8sSecretVol struct {
		SecretName  string         `json:"secretName"`
		DefaultMode *int32         `json:"defaultMode,omitempty"`
		Items       []k8sKeyToPath `json:"items,omitempty"`
	}
	k8sConfigMap struct {
		Name  string         `json:"name"`
		Items []k8sKeyToPath `json:"items,omitempty"`
	}
	k8sKeyToPath struct {
		Key  string `json:"key"`
		Path string `json:"path"`
	}
	k8sHostPath struct {
		Path string `json:"path"`
		Type string `json:"type"`
	}
)

// Kubernetes writes a Pod or Deployment with the service's confinement,
// the seccomp profile beside it when it is not the runtime's default, and
// warnings for what Pod Security "restricted" will refuse.
func Kubernetes(p *plan.Job, opts Options) (*Output, error) {
	kind := opts.Kind
	if kind == "" {
		kind = KindPod
	}
	if kind != KindPod && kind != KindDeployment {
		return nil, fmt.Errorf("kind %q is not a Kubernetes workload safe-run writes (use %s or %s)", kind, KindPod, KindDeployment)
	}
	s, spec := p.Service, p.Spec
	out := &Output{}
	var notes []string
	note := func(l ...string) { notes = append(notes, l...) }
	warn := func(format string, args ...any) { out.Warnings = append(out.Warnings, fmt.Sprintf(format, args...)) }
	yes, no := true, false

	name := dnsName(s.Name, true)
	selector := map[string]string{"app.kubernetes.io/name": dnsName(s.Name, false)}
	pod := k8sPodSpec{
		AutomountServiceAccountToken: &no,
		EnableServiceLinks:           &no,
		TerminationGracePeriod:       seconds(s.Process.StopTimeout),
	}
	hostNS := false
	if s.Network.Mode == manifest.NetworkHost {
		pod.HostNetwork, hostNS = true, true
		warn("Pod Security baseline: host namespaces (hostNetwork=true): the manifest shares the host's network")
	}
	if s.Namespaces.PID == "host" {
		pod.HostPID, hostNS = true, true
		warn("Pod Security baseline: host namespaces (hostPID=true): the manifest shares the host's PID namespace")
	}
	if s.Namespaces.IPC == "host" {
		pod.HostIPC, hostNS = true, true
		warn("Pod Security baseline: host namespaces (hostIPC=true): the manifest shares the host's IPC namespace")
	}
	if s.Namespaces.UTS == "host" {
		note("The manifest shares the host's UTS namespace; Kubernetes has no such setting (the pod gets its own).")
	}
	if hostNS {
		note("hostUsers: not set, since Kubernetes allows no user namespace with host namespaces.")
	} else {
		pod.HostUsers = &no
		warn("hostUsers: false puts the pod in its own user namespace, as safe-run does, from Kubernetes 1.33 (UserNamespacesSupport) with idmap-capable file systems; an API server without the feature drops the field, and the pod's users are then the node's users of the same ids")
	}
	switch s.Process.Restart {
	case "always":
		pod.RestartPolicy = "Always"
	case "on-failure":
		pod.RestartPolicy = "OnFailure"
	default:
		pod.RestartPolicy = "Never"
	}
	if kind == KindDeployment && pod.RestartPolicy != "Always" {
		note(fmt.Sprintf("restart = %q: a Deployment always restarts its pod (use --kind pod for %s).", s.Process.Restart, pod.RestartPolicy))
		pod.RestartPolicy = "Always"
	}

	// Who the process runs as.
	sc := &pod.SecurityContext
	u := spec.Process.User
	uid, gid := int64(u.UID), int64(u.GID)
	_, _, notNumeric := plan.LookupUser("", s.Process.User)
	if p.ImageUnknown && (s.Process.User == "" || notNumeric != nil) {
		// The image's user, which the export could not read: the pod
		// must not run as root, which the kubelet checks where it runs.
		sc.RunAsNonRoot = &yes
		who := "the image's user"
		if s.Process.User != "" {
			who = fmt.Sprintf("%q from the image's /etc/passwd", s.Process.User)
		}
		note(fmt.Sprintf("user: %s, which the export could not read: runAsNonRoot: true makes", who),
			"the kubelet refuse the pod where that is root or a name rather than numeric ids",
			"(set [process] user = \"UID:GID\").")
	} else if uid == 0 {
		nonRoot, err := imageUser(p.Image.Rootfs)
		if err != nil {
			return nil, err
		}
		switch {
		case nonRoot != nil:
			uid, gid = int64(nonRoot.Uid), int64(nonRoot.Gid)
			warn("the manifest runs the process as root (uid 0, unprivileged in its user namespace); Pod Security restricted wants a non-root user, so the pod runs as %s (%d:%d) from the image's /etc/passwd: check that the service works as that user, or set [process] user", nonRoot.Name, uid, gid)
		case hostNS:
			warn("Pod Security restricted: runAsNonRoot != true, runAsUser=0: the manifest runs the process as root, the image's /etc/passwd has no non-root user to run it as instead, and host namespaces rule out hostUsers: false (add a user to the image, or set [process] user)")
		default:
			warn("Pod Security restricted: runAsNonRoot != true, runAsUser=0 before policy version 1.35: the manifest runs the process as root and the image's /etc/passwd has no non-root user to run it as instead; from 1.35 restricted accepts root in the pod's own user namespace (hostUsers: false), older policy versions refuse it (add a user to the image, or set [process] user)")
		}
	}
	switch {
	case sc.RunAsNonRoot != nil:
	case uid != 0:
		sc.RunAsNonRoot, sc.RunAsUser, sc.RunAsGroup = &yes, &uid, &gid
	default:
		sc.RunAsUser, sc.RunAsGroup = &uid, &gid
	}
	for _, g := range u.AdditionalGids {
		sc.SupplementalGroups = append(sc.SupplementalGroups, int64(g))
	}

	// Seccomp and AppArmor.
	switch s.Security.Seccomp {
	case "default":
		sc.SeccompProfile = &k8sProfile{Type: "RuntimeDefault"}
		if s.Security.SeccompLog {
			warn("seccomp: RuntimeDefault, the container runtime's own filter, stands in for safe-run's default one (a like allowlist), and it does not log denials as seccomp_log = true asks")
		} else {
			note("seccomp: RuntimeDefault, the container runtime's own filter, stands in for safe-run's default one (a like allowlist).")
		}
	case "unconfined":
		sc.SeccompProfile = &k8sProfile{Type: "Unconfined"}
		warn("Pod Security restricted: seccompProfile: the manifest runs without a seccomp filter ([security] seccomp = \"unconfined\")")
	default:
		f, err := seccompOutput(p)
		if err != nil {
			return nil, err
		}
		if f == nil {
			sc.SeccompProfile = &k8sProfile{Type: "RuntimeDefault"}
			warn("seccomp: the spec holds no profile, so the pod gets the runtime's default one, not the manifest's %q", s.Security.Seccomp)
			break
		}
		out.Files = append(out.Files, *f)
		local := "safe-run/" + s.Name + ".json"
		sc.SeccompProfile = &k8sProfile{Type: "Localhost", LocalhostProfile: local}
		note(fmt.Sprintf("seccomp: copy %s to every node as <kubelet root>/seccomp/%s", filepath.Join(opts.Dir, f.Name), local),
			"(by default /var/lib/kubelet/seccomp); a pod whose profile is missing does not start.")
	}
	if name := appArmorProfile(s); name != "" {
		sc.AppArmorProfile = &k8sProfile{Type: "Localhost", LocalhostProfile: name}
		if s.Security.AppArmor == "generated" {
			note(fmt.Sprintf("AppArmor: load safe-run's generated profile %s on every node.", name))
		}
	} else {
		sc.AppArmorProfile = &k8sProfile{Type: "Unconfined"}
		warn("Pod Security baseline: forbidden AppArmor profile (Unconfined): the manifest runs without AppArmor ([security] apparmor = \"unconfined\")")
	}

	c := k8sContainer{
		Name:       dnsName(s.Name, false),
		Image:      k8sImage(s),
		WorkingDir: processWorkdir(p),
		Stdin:      s.Process.TTY,
		TTY:        s.Process.TTY,
		SecurityContext: k8sSecurityContext{
			AllowPrivilegeEscalation: boolPtr(!s.Security.NoNewPrivileges),
			ReadOnlyRootFilesystem:   boolPtr(s.Security.ReadOnlyRootfs),
			Capabilities:             k8sCapabilities{Drop: []string{"ALL"}},
		},
	}
	if !s.Security.NoNewPrivileges {
		warn("Pod Security restricted: allowPrivilegeEscalation != false: the manifest allows new privileges")
	}
	var extraCaps []string
	for _, cp := range s.Security.Capabilities {
		c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, cp.Short())
		if cp.Short() != "NET_BIND_SERVICE" {
			extraCaps = append(extraCaps, cp.Short())
		}
	}
	if len(extraCaps) > 0 {
		warn("Pod Security restricted: unrestricted capabilities: only NET_BIND_SERVICE may be added, the manifest adds %s", strings.Join(extraCaps, ", "))
	}
	if s.Process.Init {
		note("init: Kubernetes has no init option; the container runtime's shim reaps, and",
			"the service is PID 1 of its container (shareProcessNamespace would put the pause",
			"process there instead, at the cost of sharing PIDs between containers).")
	}
	if s.Process.Notify {
		note("notify = true: Kubernetes does not pass NOTIFY_SOCKET; give the container a readinessProbe instead.")
	}
	cmd := command(p)
	if len(s.Process.Command) > 0 {
		c.Command = k8sLiteral(cmd)
	} else if s.Image.Ref == "" {
		c.Command = k8sLiteral(cmd)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Process.Env)) {
		c.Env = append(c.Env, k8sEnv{Name: k, Value: k8sLiteral([]string{s.Process.Env[k]})[0]})
	}

	// Resources. Requests are what the scheduler reserves: the soft limit
	// when there is one.
	r := s.Resources
	c.Resources.Limits, c.Resources.Requests = map[string]string{}, map[string]string{}
	if r.Memory > 0 {
		c.Resources.Limits["memory"] = k8sQuantity(r.Memory)
		c.Resources.Requests["memory"] = k8sQuantity(r.Memory)
	}
	if r.MemoryReservation > 0 {
		c.Resources.Requests["memory"] = k8sQuantity(r.MemoryReservation)
	}
	if r.CPUs > 0 {
		cpu := strconv.FormatInt(int64(r.CPUs*1000+0.5), 10) + "m"
		c.Resources.Limits["cpu"], c.Resources.Requests["cpu"] = cpu, cpu
		if _, period := plan.CPUQuota(r.CPUs); period != 100000 {
			note(fmt.Sprintf("cpus = %g: safe-run enforces it in a CFS period of %d ms; the kubelet's is per node (cpuCFSQuotaPeriod, 100 ms unless set).", r.CPUs, period/1000))
		}
	}
	if r.Pids > 0 {
		warn("pids = %d: Kubernetes has no pids limit per pod, only the node's (kubelet podPidsLimit, unlimited unless set)", r.Pids)
	}

	// Mounts.
	hasWritableVolume := false
	for i, m := range s.Mounts {
		vname := fmt.Sprintf("%s-%d", m.Type, i)
		vm := k8sVolumeMount{Name: vname, MountPath: m.Target, ReadOnly: !m.Writable()}
		switch m.Type {
		case manifest.MountTmpfs:
			vm.ReadOnly = false
			pod.Volumes = append(pod.Volumes, k8sVolume{Name: vname, EmptyDir: &k8sEmptyDir{Medium: "Memory", SizeLimit: sizeLimit(m.Size)}})
			warn("tmpfs %s: an emptyDir in memory, mounted with the kubelet's options: the manifest's mode and options (%s) do not carry over, and programs may run from it", m.Target, strings.Join(tmpfsOptions(p, m), ","))
		case manifest.MountVolume:
			// A safe-run volume outlives the container; an emptyDir
			// would not outlive the pod.
			claim := dnsName(m.Source, true)
			pod.Volumes = append(pod.Volumes, k8sVolume{Name: vname, PersistentVolumeClaim: &k8sClaim{ClaimName: claim, ReadOnly: !m.Writable()}})
			note(fmt.Sprintf("volume %s: create the PersistentVolumeClaim %q (its size and storage class are yours to choose).", m.Source, claim))
			hasWritableVolume = hasWritableVolume || m.Writable()
		default:
			if m.Writable() {
				pod.Volumes = append(pod.Volumes, k8sVolume{Name: vname, HostPath: &k8sHostPath{Path: m.Source, Type: "Directory"}})
				warn("Pod Security restricted: restricted volume types (hostPath): the manifest binds %s writable; use a PersistentVolumeClaim where you can", m.Source)
				break
			}
			cm := dnsName(s.Name+"-"+strings.Trim(strings.ReplaceAll(m.Target, "/", "-"), "-"), true)
			vol := k8sVolume{Name: vname, ConfigMap: &k8sConfigMap{Name: cm}}
			if isFile(m.Source) {
				key := path.Base(m.Source)
				vol.ConfigMap.Items = []k8sKeyToPath{{Key: key, Path: key}}
				vm.SubPath = key
				note(fmt.Sprintf("bind %s: from the ConfigMap %s: kubectl create configmap %s --from-file=%s", m.Target, cm, cm, shellQuote(m.Source)))
			} else {
				note(fmt.Sprintf("bind %s: from the ConfigMap %s (files at its top level only):", m.Target, cm),
					fmt.Sprintf("  kubectl create configmap %s --from-file=%s", cm, shellQuote(m.Source)))
			}
			pod.Volumes = append(pod.Volumes, vol)
		}
		c.VolumeMounts = append(c.VolumeMounts, vm)
	}
	if len(s.Secrets) > 0 {
		secret := dnsName(s.Name+"-secrets", true)
		mode := int32(0o400)
		vol := k8sVolume{Name: "secrets", Secret: &k8sSecretVol{SecretName: secret, DefaultMode: &mode}}
		from := ""
		for _, k := range slices.Sorted(maps.Keys(s.Secrets)) {
			vol.Secret.Items = append(vol.Secret.Items, k8sKeyToPath{Key: k, Path: k})
			from += " --from-file=" + k + "=" + shellQuote(s.Secrets[k].File)
		}
		pod.Volumes = append(pod.Volumes, vol)
		c.VolumeMounts = append(c.VolumeMounts, k8sVolumeMount{Name: "secrets", MountPath: plan.SecretsPath, ReadOnly: true})
		note("secrets: from the Secret "+secret+":", "  kubectl create secret generic "+secret+from)
	}
	if uid != 0 && (hasWritableVolume || len(s.Secrets) > 0) {
		// Volumes and 0400 secrets become the group's (0440), so that
		// the non-root user can use them.
		sc.FSGroup = &gid
	}
	out.Warnings = append(out.Warnings, landlockWarning(s, "Kubernetes")...)
	netLabels, netObjs := k8sNetwork(s, &c, selector, warn, note)
	pod.Containers = []k8sContainer{c}
	podLabels := selector
	if netLabels != nil {
		podLabels = maps.Clone(selector)
		maps.Copy(podLabels, netLabels)
	}

	annotations := labels(p)
	var obj k8sObject
	if kind == KindPod {
		obj = k8sObject{APIVersion: "v1", Kind: "Pod",
			Metadata: k8sMeta{Name: name, Labels: podLabels, Annotations: annotations}, Spec: pod}
	} else {
		obj = k8sObject{APIVersion: "apps/v1", Kind: "Deployment",
			Metadata: k8sMeta{Name: name, Labels: selector, Annotations: annotations},
			Spec: k8sDeploymentSpec{
				Replicas: 1,
				Selector: k8sSelector{MatchLabels: selector},
				// One instance at a time, as safe-run runs it: its
				// volumes are not shared between two copies.
				Strategy: k8sStrategy{Type: "Recreate"},
				Template: k8sPodTemplate{Metadata: k8sMeta{Labels: podLabels, Annotations: annotations}, Spec: pod},
			}}
	}
	y, err := toYAML(obj)
	if err != nil {
		return nil, err
	}
	for _, o := range netObjs {
		more, err := toYAML(o)
		if err != nil {
			return nil, err
		}
		y = append(append(y, "---\n"...), more...)
	}
	var b strings.Builder
	lines := append(header(p, "kubernetes"), unknownImageNote(p)...)
	if s.Image.Ref == "" {
		lines = append(lines, "Image: the manifest names a root filesystem directory, not a registry image:",
			"push it to your registry and replace the image below with its name@sha256:digest.")
	}
	lines = append(lines, warningLines(out)...)
	writeComments(&b, append(lines, notes...)...)
	b.Write(y)
	out.Text = []byte(b.String())
	return out, nil
}

func boolPtr(b bool) *bool { return &b }

// k8sLiteral escapes words for the container's command, args and env
// values, where the kubelet expands $(VAR) and reads $$ as $: every $
// doubled is a literal one, as the manifest means it.
func k8sLiteral(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = strings.ReplaceAll(w, "$", "$$")
	}
	return out
}

func k8sImage(s *manifest.Service) string {
	if s.Image.Ref != "" {
		return s.Image.Ref
	}
	return "REPLACE-ME/" + dnsName(s.Name, false) + "@sha256:REPLACE-ME"
}

// k8sQuantity writes a size as a Kubernetes binary quantity.
func k8sQuantity(s manifest.Size) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"Ti", 40}, {"Gi", 30}, {"Mi", 20}, {"Ki", 10}} {
		if s != 0 && int64(s)%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(s)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

func sizeLimit(s manifest.Size) string {
	if s == 0 {
		return ""
	}
	return k8sQuantity(s)
}

// dnsName turns a safe-run name into a Kubernetes object name: a DNS-1123
// subdomain when dots are allowed (Pods, Deployments, NetworkPolicies,
// ConfigMaps, Secrets, claims), else a DNS-1123 label (containers, label
// values). Kept to 63 characters either way, as a pod's name is its
// hostname. Never empty for a validated manifest's names, which start
// with a letter or digit.
func dnsName(name string, dots bool) string {
	if !dots {
		return dnsLabel(name)
	}
	// Each dot-separated part a label of its own: "a..b" and "a_.b" are
	// no subdomains.
	var parts []string
	for _, l := range strings.Split(name, ".") {
		if l = dnsLabel(l); l != "" {
			parts = append(parts, l)
		}
	}
	n := strings.Join(parts, ".")
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-.")
	}
	return n
}

// dnsLabel is [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters.
func dnsLabel(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	n := strings.Trim(string(b), "-")
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-")
	}
	return n
}

// serviceName is the name of a Service, a DNS-1035 label: a DNS-1123
// label that starts with a letter, since the name becomes a DNS name in
// the cluster. A name starting with a digit gets "svc-" in front; renamed
// says so.
func serviceName(name string) (n string, renamed bool) {
	n = dnsLabel(name)
	if n != "" && n[0] >= 'a' && n[0] <= 'z' {
		return n, false
	}
	return dnsLabel("svc-" + n), true
}

// imageUser finds the non-root user a pod may run as instead of root: the
// image's regular user with the lowest uid (1000 up, nobody aside).
func imageUser(rootfs string) (*user.User, error) {
	if rootfs == "" {
		return nil, nil
	}
	// Resolved inside the root: a symlink the image planted as
	// /etc/passwd cannot point at a host file.
	h, err := pathrs.OpenInRoot(rootfs, "/etc/passwd")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the image's /etc/passwd: %w", err)
	}
	defer h.Close()
	if st, err := h.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, nil
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("reading the image's /etc/passwd: %w", err)
	}
	defer f.Close()
	users, err := user.ParsePasswdFilter(io.LimitReader(f, 16<<20), func(u user.User) bool {
		return u.Uid >= 1000 && u.Uid < 65534
	})
	if err != nil {
		return nil, fmt.Errorf("reading the image's /etc/passwd: %w", err)
	}
	if len(users) == 0 {
		return nil, nil
	}
	slices.SortFunc(users, func(a, b user.User) int { return a.Uid - b.Uid })
	return &users[0], nil
}
