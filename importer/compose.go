package importer

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/interpolation"
	"go.yaml.in/yaml/v3"

	"github.com/safe-run/safe-run/manifest"
)

// Compose converts every service of a compose file. Each service is read
// as the docker run flags compose would use for it, so that a service and
// the equivalent docker run line convert alike; keys that have no flag, or
// no place in a manifest, become notes.
func Compose(data []byte, file string, opts Options) ([]*Result, error) {
	doc, unset, err := readCompose(data, file, opts.LookupEnv)
	if err != nil {
		return nil, err
	}
	if len(doc.Services) == 0 {
		return nil, fmt.Errorf("reading %s: no services (a compose file lists them under services:)", file)
	}
	names := make([]string, 0, len(doc.Services))
	for n := range doc.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	project := composeProject(doc.Name, opts.Dir)
	// Named volumes carry the project's name, as compose names them:
	// two projects' "data" never meet.
	volume := func(n string) string {
		v := doc.Volumes[n]
		switch {
		case v.Name != "":
			return v.Name
		case v.External != nil && v.External != false:
			return n
		}
		return project + "_" + n
	}
	// Each service read as docker run arguments first, so that a volume
	// two of them share is known before either is converted.
	type read struct {
		args     []string
		notes    []Note
		secrets  [][2]string
		optional map[string]bool
	}
	reads := map[string]read{}
	users := map[string][]string{} // named volume: the services that mount it
	for _, name := range names {
		svc, err := extended(doc.Services, name, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: service %s: %w", file, name, err)
		}
		using := func(n string) string {
			v := volume(n)
			if !slices.Contains(users[v], name) {
				users[v] = append(users[v], name)
			}
			return v
		}
		var r read
		if r.args, r.notes, r.secrets, r.optional, err = composeArgs(name, svc, using, project+"_default"); err != nil {
			return nil, fmt.Errorf("%s: service %s: %w", file, name, err)
		}
		reads[name] = r
	}
	for _, v := range slices.Sorted(maps.Keys(users)) {
		us := users[v]
		if len(us) < 2 {
			continue
		}
		for _, name := range us {
			r := reads[name]
			others := slices.DeleteFunc(slices.Clone(us), func(o string) bool { return o == name })
			r.notes = append(r.notes, Note{Flag: "volumes: " + v, Kind: Unsupported,
				Text: "also mounted by " + strings.Join(others, ", ") + ": a safe-run volume belongs to the ids of the one service that first starts with it, and the start of any other is refused; give each service a volume of its own, or bind-mount a host directory whose owner and mode let in every service's ids (each service runs on an id range of its own)"})
			reads[name] = r
		}
	}
	var out []*Result
	seen := map[string]string{}
	for _, name := range names {
		args, notes, secrets, optional := reads[name].args, reads[name].notes, reads[name].secrets, reads[name].optional
		o := opts
		o.compose = &composeService{optionalEnv: optional}
		o.Source = fmt.Sprintf("service %q of %s, read as: docker run %s", name, file, Quote(args))
		r, err := dockerRunWith(args, o, func(s *spec) {
			s.notes = append(notes, s.notes...)
			if len(unset) > 0 {
				s.note(Default, "${"+strings.Join(unset, "}, ${")+"}", nil, "not set when the compose file was read: compose's defaults (or empty strings) were used; set them in the environment or in the .env file beside the compose file, and import again")
			}
			for _, sec := range secrets {
				f := doc.Secrets[sec[0]].File
				if f == "" {
					s.note(Unsupported, "secrets: "+sec[0], nil, "only file secrets carry over to [secrets]")
					continue
				}
				if slices.ContainsFunc(s.secrets, func(o [2]string) bool { return o[0] == sec[1] }) {
					s.note(Unsupported, "secrets: "+sec[0], nil, "secret "+sec[1]+" is given twice: the first is kept")
					continue
				}
				s.secrets = append(s.secrets, [2]string{sec[1], f})
			}
		})
		if err != nil && len(unset) > 0 {
			// An empty string where a variable was meant makes an
			// error that cannot say why on its own (":" is not a
			// user, for ${UID}:${GID}).
			return nil, fmt.Errorf("%s: service %s: %w\n  (${%s} not set when the compose file was read: compose's defaults or empty strings were used; set them in the environment or in the .env file beside the compose file)", file, name, err, strings.Join(unset, "}, ${"))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: service %s: %w", file, name, err)
		}
		if other, ok := seen[r.Name]; ok {
			return nil, fmt.Errorf("%s: services %s and %s both become the manifest %s.toml: rename one, or give it a container_name", file, other, name, r.Name)
		}
		seen[r.Name] = name
		out = append(out, r)
	}
	return out, nil
}

// composeDoc is what the importer reads of a compose file.
type composeDoc struct {
	Name     string                    `yaml:"name"`
	Services map[string]map[string]any `yaml:"services"`
	Volumes  map[string]struct {
		Name     string `yaml:"name"`
		External any    `yaml:"external"`
	} `yaml:"volumes"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// readCompose parses a compose file and interpolates its ${VAR}, ${VAR:-default}
// and friends as compose does (compose-go's own interpolation, on the
// parsed values, so a value cannot inject YAML), and says which variables
// were not set.
func readCompose(data []byte, file string, lookup func(string) (string, bool)) (*composeDoc, []string, error) {
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if err := mappingSizes(&node, file); err != nil {
		return nil, nil, err
	}
	var raw map[string]any
	if err := node.Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", file, err)
	}
	unsetSeen := map[string]bool{}
	raw, err := interpolation.Interpolate(raw, interpolation.Options{LookupValue: func(name string) (string, bool) {
		if lookup != nil {
			if v, ok := lookup(name); ok {
				return v, true
			}
		}
		unsetSeen[name] = true
		return "", false
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", file, err)
	}
	// Back through YAML into the typed view.
	text, err := yaml.Marshal(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", file, err)
	}
	var doc composeDoc
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return &doc, slices.Sorted(maps.Keys(unsetSeen)), nil
}

// appendedKeys are the lists extends: adds to, as compose merges them;
// other values of the service replace the base's.
var appendedKeys = map[string]bool{"ports": true, "expose": true, "dns": true, "dns_search": true, "tmpfs": true, "cap_add": true, "cap_drop": true,
	"devices": true, "security_opt": true, "volumes": true, "secrets": true, "env_file": true, "external_links": true, "links": true}

// extended is a service with what it extends: (a service of the same
// file) merged in, as compose merges it: the service's mappings over the
// base's, lists appended, other values replaced (found by a black-box
// probe: a service with only extends: had no image).
func extended(services map[string]map[string]any, name string, chain []string) (map[string]any, error) {
	svc := services[name]
	ext, ok := svc["extends"]
	if !ok {
		return svc, nil
	}
	if slices.Contains(chain, name) {
		return nil, fmt.Errorf("extends: %s extends itself (%s)", name, strings.Join(append(chain, name), " -> "))
	}
	var base string
	switch e := ext.(type) {
	case string:
		base = e
	case map[string]any:
		if f := str(e["file"]); f != "" {
			return nil, fmt.Errorf("extends: file: %s: safe-run import reads extends: of a service in the same file only (copy the service %s in)", f, str(e["service"]))
		}
		base = str(e["service"])
	}
	if _, ok := services[base]; base == "" || !ok {
		return nil, fmt.Errorf("extends: %q is not a service of this file", base)
	}
	merged, err := extended(services, base, append(chain, name))
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for k, v := range merged {
		out[k] = v
	}
	for k, v := range svc {
		switch bv := out[k].(type) {
		case map[string]any:
			if sv, ok := v.(map[string]any); ok {
				m := map[string]any{}
				for kk, vv := range bv {
					m[kk] = vv
				}
				for kk, vv := range sv {
					m[kk] = vv
				}
				out[k] = m
				continue
			}
		case []any:
			if sv, ok := v.([]any); ok && appendedKeys[k] {
				out[k] = append(append([]any{}, bv...), sv...)
				continue
			}
		}
		out[k] = v
	}
	delete(out, "extends")
	return out, nil
}

// maxMappingKeys bounds the keys of one mapping of a compose file: yaml
// compares each key with every other one when it decodes a mapping, so
// 50,000 environment variables in a 1 MiB file took 17 s (found by a
// black-box probe); no service has a thousand.
const maxMappingKeys = 1000

// mappingSizes refuses a mapping with more than maxMappingKeys keys,
// naming where it is.
func mappingSizes(n *yaml.Node, file string) error {
	if n.Kind == yaml.MappingNode && len(n.Content)/2 > maxMappingKeys {
		return fmt.Errorf("%s:%d: a mapping of %d keys, more than the %d safe-run import reads in one (is it the right file?)", file, n.Line, len(n.Content)/2, maxMappingKeys)
	}
	for _, c := range n.Content {
		if err := mappingSizes(c, file); err != nil {
			return err
		}
	}
	return nil
}

// Quote writes arguments as one shell command line, quoted where a
// shell would split or expand them.
func Quote(args []string) string { return strings.Join(quoteArgs(args), " ") }

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\;&|<>*?()[]{}#~") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			out[i] = a
		}
	}
	return out
}

// composeProject is the project's name as compose makes it: the name:
// key, else the compose file's directory, in lower case, letters, digits,
// '_' and '-' only.
func composeProject(name, dir string) string {
	if name == "" {
		name = path.Base(dir)
	}
	n := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return -1
	}, name)
	n = strings.TrimLeft(n, "_-")
	if n == "" {
		n = "compose"
	}
	return n
}

// composeArgs translates one compose service into docker run arguments;
// volume names a named volume as compose does. Its secrets are the names
// of the compose file's secrets with the name each has in the container.
// defaultNet is the project's default network, which compose puts a service on when it names
// none: its services reach each other by name there.
func composeArgs(name string, svc map[string]any, volume func(string) string, defaultNet string) (args []string, notes []Note, secrets [][2]string, optional map[string]bool, err error) {
	flag := func(f string, vs ...string) {
		for _, v := range vs {
			args = append(args, f, v)
		}
	}
	keys := make([]string, 0, len(svc))
	for k := range svc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	image, _ := svc["image"].(string)
	if image == "" {
		return nil, nil, nil, nil, fmt.Errorf("no image (a service built from a Dockerfile needs image: to name what safe-run runs)")
	}
	if _, ok := svc["container_name"]; !ok {
		flag("--name", name)
	}
	_, hasNets := svc["networks"]
	_, hasMode := svc["network_mode"]
	if !hasNets && !hasMode {
		flag("--network", defaultNet)
	}
	var command []string
	for _, k := range keys {
		v := svc[k]
		if _, isMap := v.(map[string]any); isMap && listKeys[k] {
			return nil, nil, nil, nil, fmt.Errorf("%s: a list is expected, not a mapping (write e.g. %s: [...])", k, k)
		}
		switch k {
		case "image":
		case "container_name":
			flag("--name", str(v))
		case "command":
			command, err = strOrList(v, true)
		case "entrypoint":
			var e []string
			if e, err = strOrList(v, true); err == nil {
				if len(e) > 0 {
					flag("--entrypoint", e[0])
					command = append(e[1:], command...)
				} else {
					flag("--entrypoint", "")
				}
			}
		case "environment":
			flag("--env", mapOrList(v, "=")...)
		case "env_file":
			// A path, or {path, required, format}.
			for _, e := range list(v) {
				m, ok := e.(map[string]any)
				if !ok {
					flag("--env-file", str(e))
					continue
				}
				p := str(m["path"])
				if p == "" {
					return nil, nil, nil, nil, fmt.Errorf("env_file: an entry without path: (write - path: FILE)")
				}
				var required bool
				if required, err = composeBool(m["required"]); err != nil {
					return nil, nil, nil, nil, fmt.Errorf("env_file: %s: required: %w", p, err)
				}
				if m["required"] != nil && !required {
					if optional == nil {
						optional = map[string]bool{}
					}
					optional[p] = true
				}
				if f := str(m["format"]); f != "" {
					return nil, nil, nil, nil, fmt.Errorf("env_file: %s: format %q is not read by safe-run import (convert the file to KEY=value lines)", p, f)
				}
				flag("--env-file", p)
			}
		case "labels":
			flag("--label", mapOrList(v, "=")...)
		case "ports":
			for _, p := range list(v) {
				if m, ok := p.(map[string]any); ok {
					s := str(m["target"])
					if pub := str(m["published"]); pub != "" {
						s = pub + ":" + s
					}
					if ip := str(m["host_ip"]); ip != "" {
						s = ip + ":" + s
					}
					if proto := str(m["protocol"]); proto != "" {
						s += "/" + proto
					}
					flag("--publish", s)
				} else {
					flag("--publish", str(p))
				}
			}
		case "volumes":
			for _, vol := range list(v) {
				if m, ok := vol.(map[string]any); ok {
					parts := []string{"type=" + str(m["type"]), "target=" + str(m["target"])}
					if src := str(m["source"]); src != "" {
						if str(m["type"]) == "volume" {
							src = volume(src)
						}
						parts = append(parts, "source="+src)
					}
					ro, rerr := composeBool(m["read_only"])
					if rerr != nil {
						return nil, nil, nil, nil, fmt.Errorf("volumes: %s: read_only: %w", str(m["target"]), rerr)
					}
					if ro {
						parts = append(parts, "readonly")
					}
					if t, ok := m["tmpfs"].(map[string]any); ok && t["size"] != nil {
						parts = append(parts, "tmpfs-size="+str(t["size"]))
					}
					flag("--mount", strings.Join(parts, ","))
				} else {
					v := str(vol)
					if src, rest, ok := strings.Cut(v, ":"); ok && src != "" && !isHostPath(src) {
						v = volume(src) + ":" + rest
					}
					flag("--volume", v)
				}
			}
		case "tmpfs":
			var ts []string
			ts, err = strOrList(v, false)
			flag("--tmpfs", ts...)
		case "cap_add":
			flag("--cap-add", strs(v)...)
		case "cap_drop":
			flag("--cap-drop", strs(v)...)
		case "privileged", "read_only", "tty", "stdin_open", "init":
			var b bool
			if b, err = composeBool(v); b {
				args = append(args, "--"+map[string]string{"privileged": "privileged", "read_only": "read-only", "tty": "tty", "stdin_open": "interactive", "init": "init"}[k])
			}
		case "network_mode":
			flag("--network", str(v))
		case "networks":
			nets := strs(v)
			if m, ok := v.(map[string]any); ok {
				nets = nets[:0]
				for n := range m {
					nets = append(nets, n)
				}
				sort.Strings(nets)
			}
			if len(nets) > 0 {
				net := nets[0]
				if net == "default" {
					net = defaultNet
				}
				flag("--network", net)
			}
			if m, ok := v.(map[string]any); ok {
				for _, n := range nets {
					nm, _ := m[n].(map[string]any)
					if a := strs(nm["aliases"]); len(a) > 0 {
						notes = append(notes, Note{Flag: "networks: " + n + ": aliases: " + strings.Join(a, ", "), Kind: Unsupported,
							Text: unsupported["network-alias"] + ": a peer that connects to " + a[0] + " must use " + name + " instead"})
					}
				}
			}
			if len(nets) > 1 {
				notes = append(notes, Note{Flag: "networks: " + strings.Join(nets, ", "), Kind: Unsupported,
					Text: "a service joins one bridge: " + nets[0] + " is kept; put the services that must talk on one bridge (a service on " + strings.Join(nets[1:], ", ") + " cannot reach this one)"})
			}
		case "pid", "ipc", "uts", "userns_mode", "user", "working_dir", "restart", "stop_signal", "mem_limit", "mem_reservation", "cpus", "pids_limit", "hostname", "shm_size", "platform", "runtime", "cgroup_parent", "domainname", "mac_address", "cpu_shares", "cpuset", "memswap_limit", "cgroup", "cpu_period", "cpu_quota":
			f := map[string]string{"userns_mode": "userns", "working_dir": "workdir", "mem_limit": "memory", "mem_reservation": "memory-reservation",
				"pids_limit": "pids-limit", "shm_size": "shm-size", "cgroup_parent": "cgroup-parent", "mac_address": "mac-address",
				"cpu_shares": "cpu-shares", "cpuset": "cpuset-cpus", "cpu_period": "cpu-period", "cpu_quota": "cpu-quota", "memswap_limit": "memory-swap", "stop_signal": "stop-signal", "cgroup": "cgroupns"}[k]
			if f == "" {
				f = k
			}
			flag("--"+f, str(v))
		case "stop_grace_period":
			d := str(v)
			if n, perr := parseComposeDuration(d); perr == nil {
				flag("--stop-timeout", strconv.Itoa(n))
			} else {
				notes = append(notes, Note{Flag: "stop_grace_period: " + d, Kind: Unsupported, Text: perr.Error()})
			}
		case "security_opt":
			flag("--security-opt", strs(v)...)
		case "devices":
			flag("--device", strs(v)...)
		case "dns":
			var ds []string
			ds, err = strOrList(v, false)
			flag("--dns", ds...)
		case "expose":
			flag("--expose", strs(v)...)
		case "dns_search", "extra_hosts", "group_add", "links", "external_links", "volumes_from", "sysctls", "ulimits", "logging", "healthcheck", "gpus", "device_cgroup_rules", "storage_opt", "oom_kill_disable", "oom_score_adj", "blkio_config":
			notes = append(notes, Note{Flag: k, Kind: Unsupported, Text: composeUnsupported(k)})
		case "deploy":
			var d []string
			if d, err = deployArgs(v, svc, &notes); err == nil {
				args = append(args, d...)
			}
		case "secrets":
			for _, s := range list(v) {
				if m, ok := s.(map[string]any); ok {
					// target: a name under /run/secrets, or a path.
					src, target := str(m["source"]), str(m["target"])
					if t, ok := strings.CutPrefix(target, "/run/secrets/"); ok {
						target = t
					}
					if target == "" {
						target = src
					}
					if !secretName.MatchString(target) {
						notes = append(notes, Note{Flag: "secrets: " + src, Kind: Unsupported, Text: "target " + str(m["target"]) + " is not a file under /run/secrets: a manifest's secrets are there; point the service at /run/secrets/" + src})
						target = src
					}
					secrets = append(secrets, [2]string{src, target})
				} else {
					secrets = append(secrets, [2]string{str(s), str(s)})
				}
			}
		case "depends_on", "profiles", "build", "pull_policy", "scale", "develop", "attach":
			notes = append(notes, Note{Flag: k, Kind: Ignored, Text: "compose orchestration: each service is a manifest of its own; order them with systemd (After=, Requires=)"})
		default:
			notes = append(notes, Note{Flag: k, Kind: Unsupported, Text: "compose key " + k + " is not read by safe-run import"})
		}
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	args = append(args, image)
	args = append(args, command...)
	return args, notes, secrets, optional, nil
}

func composeUnsupported(k string) string {
	flag := map[string]string{"dns_search": "dns-search", "extra_hosts": "add-host", "group_add": "group-add", "volumes_from": "volumes-from",
		"sysctls": "sysctl", "ulimits": "ulimit", "logging": "log-driver", "healthcheck": "health-cmd", "device_cgroup_rules": "device-cgroup-rule",
		"storage_opt": "storage-opt", "oom_kill_disable": "oom-kill-disable", "oom_score_adj": "oom-score-adj", "blkio_config": "blkio-weight", "links": "link", "external_links": "link"}[k]
	if flag == "" {
		flag = k
	}
	if why := unsupported[flag]; why != "" {
		return why
	}
	return "not in manifest v1"
}

// listKeys are the service keys that take a list (a single value is
// read as a list of one).
var listKeys = map[string]bool{"ports": true, "volumes": true, "secrets": true, "cap_add": true, "cap_drop": true, "devices": true,
	"security_opt": true, "expose": true, "tmpfs": true, "dns": true}

// composeBool reads a boolean as compose does: a YAML boolean, or after
// interpolation the strings true/false, yes/no, y/n, on/off in any case.
func composeBool(v any) (bool, error) {
	switch x := v.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "yes", "y", "on":
			return true, nil
		case "false", "no", "n", "off", "":
			return false, nil
		}
	}
	return false, fmt.Errorf("%q is not a boolean (use true or false)", str(v))
}

// deployArgs reads deploy.resources, which compose applies outside swarm
// too. A limit set both there and as mem_limit or cpus must agree, as
// compose requires.
func deployArgs(v any, svc map[string]any, notes *[]Note) ([]string, error) {
	var args []string
	m, _ := v.(map[string]any)
	res, _ := m["resources"].(map[string]any)
	if lim, ok := res["limits"].(map[string]any); ok {
		if x := str(lim["memory"]); x != "" {
			if o := str(svc["mem_limit"]); o != "" {
				a, err1 := manifest.ParseSize(x)
				b, err2 := manifest.ParseSize(o)
				if err1 != nil || err2 != nil || a != b {
					return nil, fmt.Errorf("resources.limits.memory %s and mem_limit %s differ (compose refuses distinct values too): keep one", x, o)
				}
			}
			args = append(args, "--memory", x)
		}
		if x := str(lim["cpus"]); x != "" {
			if o := str(svc["cpus"]); o != "" {
				a, err1 := strconv.ParseFloat(x, 64)
				b, err2 := strconv.ParseFloat(o, 64)
				if err1 != nil || err2 != nil || a != b {
					return nil, fmt.Errorf("resources.limits.cpus %s and cpus %s differ (compose refuses distinct values too): keep one", x, o)
				}
			}
			args = append(args, "--cpus", x)
		}
		if x := str(lim["pids"]); x != "" {
			args = append(args, "--pids-limit", x)
		}
	}
	if r, ok := res["reservations"].(map[string]any); ok {
		if x := str(r["memory"]); x != "" {
			args = append(args, "--memory-reservation", x)
		}
	}
	for k := range m {
		if k != "resources" {
			*notes = append(*notes, Note{Flag: "deploy." + k, Kind: Ignored, Text: "swarm orchestration: safe-run runs one instance per manifest"})
		}
	}
	slices.SortFunc(*notes, func(a, b Note) int { return strings.Compare(a.Flag, b.Flag) })
	return args, nil
}

func parseComposeDuration(d string) (int, error) {
	var total float64
	rest := d
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || i == len(rest) {
			return 0, fmt.Errorf("%q is not a duration such as 1m30s", d)
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		mult, ok := map[string]float64{"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[rest[i:j]]
		if !ok {
			return 0, fmt.Errorf("%q is not a duration such as 1m30s", d)
		}
		total += n * mult
		rest = rest[j:]
	}
	return int(total + 0.5), nil
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// list reads a compose list; a single value is a list of one (ports: 80),
// never dropped.
func list(v any) []any {
	switch l := v.(type) {
	case nil:
		return nil
	case []any:
		return l
	case map[string]any:
		return nil
	}
	return []any{v}
}

func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, str(x))
	}
	return out
}

// strOrList reads compose's string-or-list values; a string command is
// split as a shell would (compose does the same).
func strOrList(v any, split bool) ([]string, error) {
	if s, ok := v.(string); ok {
		if split {
			return SplitCommand(s)
		}
		return []string{s}, nil
	}
	return strs(v), nil
}

// mapOrList reads compose's KEY: value maps and ["KEY=value"] lists.
func mapOrList(v any, sep string) []string {
	if m, ok := v.(map[string]any); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out []string
		for _, k := range keys {
			if m[k] == nil {
				out = append(out, k)
			} else {
				out = append(out, k+sep+str(m[k]))
			}
		}
		return out
	}
	return strs(v)
}
