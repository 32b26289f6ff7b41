package importer

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/interpolation"
	"go.yaml.in/yaml/v3"
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
	var out []*Result
	for _, name := range names {
		svc := doc.Services[name]
		args, notes, secrets, err := composeArgs(name, svc)
		if err != nil {
			return nil, fmt.Errorf("%s: service %s: %w", file, name, err)
		}
		o := opts
		o.Source = fmt.Sprintf("service %q of %s, read as: docker run %s", name, file, strings.Join(quoteArgs(args), " "))
		r, err := dockerRunWith(args, o, func(s *spec) {
			s.notes = append(notes, s.notes...)
			if len(unset) > 0 {
				s.note(Default, "${"+strings.Join(unset, "}, ${")+"}", nil, "not set when the compose file was read: compose's defaults (or empty strings) were used; set them in the environment or in the .env file beside the compose file, and import again")
			}
			for _, sec := range secrets {
				f := doc.Secrets[sec].File
				if f == "" {
					s.note(Unsupported, "secrets: "+sec, nil, "only file secrets carry over to [secrets]")
					continue
				}
				s.secrets = append(s.secrets, [2]string{sec, f})
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
		out = append(out, r)
	}
	return out, nil
}

// composeDoc is what the importer reads of a compose file.
type composeDoc struct {
	Services map[string]map[string]any `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// readCompose parses a compose file and interpolates its ${VAR}, ${VAR:-default}
// and friends as compose does (compose-go's own interpolation, on the
// parsed values, so a value cannot inject YAML), and says which variables
// were not set.
func readCompose(data []byte, file string, lookup func(string) (string, bool)) (*composeDoc, []string, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
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

// composeArgs translates one compose service into docker run arguments.
func composeArgs(name string, svc map[string]any) (args []string, notes []Note, secrets []string, err error) {
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
		return nil, nil, nil, fmt.Errorf("no image (a service built from a Dockerfile needs image: to name what safe-run runs)")
	}
	if _, ok := svc["container_name"]; !ok {
		flag("--name", name)
	}
	var command []string
	for _, k := range keys {
		v := svc[k]
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
			var fs []string
			fs, err = strOrList(v, false)
			flag("--env-file", fs...)
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
						parts = append(parts, "source="+src)
					}
					if b, _ := m["read_only"].(bool); b {
						parts = append(parts, "readonly")
					}
					if t, ok := m["tmpfs"].(map[string]any); ok && t["size"] != nil {
						parts = append(parts, "tmpfs-size="+str(t["size"]))
					}
					flag("--mount", strings.Join(parts, ","))
				} else {
					flag("--volume", str(vol))
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
			if b, _ := v.(bool); b {
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
				flag("--network", nets[0])
			}
			if len(nets) > 1 {
				notes = append(notes, Note{Flag: "networks: " + strings.Join(nets, ", "), Kind: Unsupported,
					Text: "a service joins one bridge: " + nets[0] + " is kept; put the services that must talk on one bridge (a service on " + strings.Join(nets[1:], ", ") + " cannot reach this one)"})
			}
		case "pid", "ipc", "uts", "userns_mode", "user", "working_dir", "restart", "stop_signal", "mem_limit", "mem_reservation", "cpus", "pids_limit", "hostname", "shm_size", "platform", "runtime", "cgroup_parent", "domainname", "mac_address", "cpu_shares", "cpuset", "memswap_limit", "cgroup":
			f := map[string]string{"userns_mode": "userns", "working_dir": "workdir", "mem_limit": "memory", "mem_reservation": "memory-reservation",
				"pids_limit": "pids-limit", "shm_size": "shm-size", "cgroup_parent": "cgroup-parent", "mac_address": "mac-address",
				"cpu_shares": "cpu-shares", "cpuset": "cpuset-cpus", "memswap_limit": "memory-swap", "stop_signal": "stop-signal", "cgroup": "cgroupns"}[k]
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
			notes = append(notes, Note{Flag: k, Kind: Ignored, Text: ignored["expose"]})
		case "dns_search", "extra_hosts", "group_add", "links", "external_links", "volumes_from", "sysctls", "ulimits", "logging", "healthcheck", "gpus", "device_cgroup_rules", "storage_opt", "oom_kill_disable", "oom_score_adj", "blkio_config":
			notes = append(notes, Note{Flag: k, Kind: Unsupported, Text: composeUnsupported(k)})
		case "deploy":
			args = append(args, deployArgs(v, &notes)...)
		case "secrets":
			for _, s := range list(v) {
				if m, ok := s.(map[string]any); ok {
					secrets = append(secrets, str(m["source"]))
				} else {
					secrets = append(secrets, str(s))
				}
			}
		case "depends_on", "profiles", "build", "pull_policy", "scale", "develop", "attach":
			notes = append(notes, Note{Flag: k, Kind: Ignored, Text: "compose orchestration: each service is a manifest of its own; order them with systemd (After=, Requires=)"})
		default:
			notes = append(notes, Note{Flag: k, Kind: Unsupported, Text: "compose key " + k + " is not read by safe-run import"})
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	args = append(args, image)
	args = append(args, command...)
	return args, notes, secrets, nil
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

// deployArgs reads deploy.resources, which compose applies outside swarm too.
func deployArgs(v any, notes *[]Note) []string {
	var args []string
	m, _ := v.(map[string]any)
	res, _ := m["resources"].(map[string]any)
	if lim, ok := res["limits"].(map[string]any); ok {
		if x := str(lim["memory"]); x != "" {
			args = append(args, "--memory", x)
		}
		if x := str(lim["cpus"]); x != "" {
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
	return args
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

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, str(x))
	}
	if s, ok := v.(string); ok {
		out = append(out, s)
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
