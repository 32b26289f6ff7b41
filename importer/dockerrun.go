package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/spf13/pflag"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

// valueFlags are docker run's flags that take a value (docker 28), as
// long name and shorthand; boolFlags those that do not. Every flag docker
// knows is listed, so that a flag the importer cannot express is reported
// by name rather than mistaken for the image.
var valueFlags = [][2]string{
	{"attach", "a"}, {"add-host", ""}, {"annotation", ""}, {"blkio-weight", ""}, {"blkio-weight-device", ""},
	{"cap-add", ""}, {"cap-drop", ""}, {"cgroup-parent", ""}, {"cgroupns", ""}, {"cidfile", ""},
	{"cpu-count", ""}, {"cpu-percent", ""}, {"cpu-period", ""}, {"cpu-quota", ""}, {"cpu-rt-period", ""},
	{"cpu-rt-runtime", ""}, {"cpu-shares", "c"}, {"cpus", ""}, {"cpuset-cpus", ""}, {"cpuset-mems", ""},
	{"detach-keys", ""}, {"device", ""}, {"device-cgroup-rule", ""}, {"device-read-bps", ""},
	{"device-read-iops", ""}, {"device-write-bps", ""}, {"device-write-iops", ""}, {"dns", ""},
	{"dns-option", ""}, {"dns-opt", ""}, {"dns-search", ""}, {"domainname", ""}, {"entrypoint", ""}, {"env", "e"},
	{"env-file", ""}, {"expose", ""}, {"gpus", ""}, {"group-add", ""}, {"health-cmd", ""},
	{"health-interval", ""}, {"health-retries", ""}, {"health-start-interval", ""}, {"health-start-period", ""},
	{"health-timeout", ""}, {"hostname", "h"}, {"io-maxbandwidth", ""}, {"io-maxiops", ""}, {"ip", ""},
	{"ip6", ""}, {"ipc", ""}, {"isolation", ""}, {"kernel-memory", ""}, {"label", "l"}, {"label-file", ""},
	{"link", ""}, {"link-local-ip", ""}, {"log-driver", ""}, {"log-opt", ""}, {"mac-address", ""},
	{"memory", "m"}, {"memory-reservation", ""}, {"memory-swap", ""}, {"memory-swappiness", ""},
	{"mount", ""}, {"name", ""}, {"network", ""}, {"net", ""}, {"network-alias", ""}, {"net-alias", ""},
	{"oom-score-adj", ""}, {"pid", ""}, {"pids-limit", ""}, {"platform", ""}, {"publish", "p"}, {"pull", ""},
	{"restart", ""}, {"runtime", ""}, {"security-opt", ""}, {"shm-size", ""}, {"stop-signal", ""},
	{"stop-timeout", ""}, {"storage-opt", ""}, {"sysctl", ""}, {"tmpfs", ""}, {"ulimit", ""}, {"user", "u"},
	{"userns", ""}, {"uts", ""}, {"volume", "v"}, {"volume-driver", ""}, {"volumes-from", ""}, {"workdir", "w"},
}

var boolFlags = [][2]string{
	{"detach", "d"}, {"disable-content-trust", ""}, {"help", ""}, {"init", ""}, {"interactive", "i"},
	{"no-healthcheck", ""}, {"oom-kill-disable", ""}, {"privileged", ""}, {"publish-all", "P"},
	{"quiet", "q"}, {"read-only", ""}, {"rm", ""}, {"sig-proxy", ""}, {"tty", "t"}, {"use-api-socket", ""},
}

// unsupported says, per flag a manifest cannot express, why.
var unsupported = map[string]string{
	"add-host":              "a manifest has no extra /etc/hosts entries; bind a hosts file read-only instead",
	"annotation":            "", // carried into [labels]; see labels
	"blkio-weight":          "block I/O weights are not in manifest v1",
	"blkio-weight-device":   "block I/O weights are not in manifest v1",
	"cgroup-parent":         "safe-run places the service's cgroup under its own",
	"cgroupns":              "safe-run always gives the service a private cgroup namespace",
	"cpu-shares":            "CPU shares are not in manifest v1: safe-run sets them from cpus (cpus x 1024)",
	"cpuset-cpus":           "CPU pinning is not in manifest v1",
	"cpuset-mems":           "memory node pinning is not in manifest v1",
	"cpu-rt-period":         "real-time scheduling is not in manifest v1",
	"cpu-rt-runtime":        "real-time scheduling is not in manifest v1",
	"device":                "safe-run passes no host devices to a service",
	"device-cgroup-rule":    "safe-run passes no host devices to a service",
	"device-read-bps":       "block I/O limits are not in manifest v1",
	"device-read-iops":      "block I/O limits are not in manifest v1",
	"device-write-bps":      "block I/O limits are not in manifest v1",
	"device-write-iops":     "block I/O limits are not in manifest v1",
	"dns-option":            "resolver options are not in manifest v1 (safe-run's resolver answers the service)",
	"dns-opt":               "resolver options are not in manifest v1 (safe-run's resolver answers the service)",
	"dns-search":            "search domains are not in manifest v1 (peers on the bridge answer to their service name)",
	"domainname":            "a manifest has no domain name",
	"gpus":                  "safe-run passes no GPUs to a service",
	"group-add":             "supplementary groups are not in manifest v1",
	"health-cmd":            "health checks are not in manifest v1 (systemd watchdogs via process.notify)",
	"health-interval":       "health checks are not in manifest v1",
	"health-retries":        "health checks are not in manifest v1",
	"health-start-interval": "health checks are not in manifest v1",
	"health-start-period":   "health checks are not in manifest v1",
	"health-timeout":        "health checks are not in manifest v1",
	"hostname":              "a manifest has no hostname: the service's UTS namespace is named after the service",
	"ip":                    "safe-run assigns the addresses on a bridge itself (peers reach the service by name)",
	"ip6":                   "safe-run assigns the addresses on a bridge itself (peers reach the service by name)",
	"kernel-memory":         "kernel memory limits are gone from the kernel (cgroup v2)",
	"label-file":            "read the labels into [labels] by hand",
	"link":                  "put both services on one bridge: peers reach each other by name",
	"link-local-ip":         "safe-run assigns the addresses on a bridge itself (peers reach the service by name)",
	"log-driver":            "safe-run writes the service's output to its own stdout and stderr (the journal under systemd)",
	"log-opt":               "safe-run writes the service's output to its own stdout and stderr",
	"mac-address":           "safe-run assigns the addresses on a bridge itself (peers reach the service by name)",
	"memory-swap":           "swap is never added to the memory limit",
	"memory-swappiness":     "swappiness is not in manifest v1",
	"network-alias":         "a peer answers to its service name (and NAME.BRIDGE) only",
	"net-alias":             "a peer answers to its service name (and NAME.BRIDGE) only",
	"oom-kill-disable":      "safe-run keeps the kernel's OOM killer: a service without it can hang the host",
	"oom-score-adj":         "OOM score adjustment is not in manifest v1",
	"platform":              "the image stage picks the host's platform",
	"publish-all":           "publish each port with -p instead: the manifest lists every published port",
	"runtime":               "safe-run is the runtime",
	"shm-size":              "/dev/shm is safe-run's own; size a tmpfs mount instead",
	"storage-opt":           "the root filesystem is read-only; storage options do not apply",
	"sysctl":                "namespaced sysctls are not in manifest v1",
	"ulimit":                "rlimits are not in manifest v1",
	"volume-driver":         "volumes live in safe-run's data directory",
	"volumes-from":          "a service shares no other container's mounts; name the volumes",
	"cpu-count":             "Windows only",
	"cpu-percent":           "Windows only",
	"io-maxbandwidth":       "Windows only",
	"io-maxiops":            "Windows only",
	"isolation":             "Windows only",
}

// ignored are flags safe-run's behaviour already covers.
var ignored = map[string]string{
	"detach":                "safe-run stays in the foreground; run it as a systemd service to keep it in the background",
	"rm":                    "safe-run always removes what it made when the service ends",
	"interactive":           "safe-run passes its stdin to the service",
	"init":                  "process.init = true is the default",
	"attach":                "safe-run passes stdin, stdout and stderr through",
	"cidfile":               "safe-run keeps its state under its state directory",
	"detach-keys":           "safe-run stays in the foreground",
	"sig-proxy":             "safe-run forwards signals to the service",
	"pull":                  "the image stage pulls what the manifest pins",
	"disable-content-trust": "digests are verified on every pull",
	"quiet":                 "",
	"no-healthcheck":        "there are no health checks to disable",
}

// DockerRun converts the arguments of `docker run` (after "run") into a
// manifest.
func DockerRun(args []string, opts Options) (*Result, error) {
	return dockerRunWith(args, opts, nil)
}

// dockerRunWith converts, letting compose add what has no docker run flag
// (file secrets) and its own notes before the manifest is written.
func dockerRunWith(args []string, opts Options, extra func(*spec)) (*Result, error) {
	// A manifest is UTF-8 text (TOML), comments included: an argument
	// that is not would make one that does not load (found by
	// FuzzDockerRun).
	for _, a := range args {
		if !utf8.ValidString(a) {
			return nil, fmt.Errorf("docker run argument %s is not UTF-8 text, which a manifest must be (convert it, e.g. with iconv)", strconv.QuoteToASCII(a))
		}
	}
	fs := pflag.NewFlagSet("docker run", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.Usage = func() {}
	fs.SetOutput(discard{})
	values := map[string]*[]string{}
	for _, f := range valueFlags {
		values[f[0]] = fs.StringArrayP(f[0], f[1], nil, "")
	}
	bools := map[string]*bool{}
	for _, f := range boolFlags {
		bools[f[0]] = fs.BoolP(f[0], f[1], false, "")
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("reading docker run flags: %w (safe-run import knows docker 28's flags)", err)
	}
	if fs.NArg() == 0 {
		return nil, errors.New("docker run names no image (write: safe-run import -- docker run [flags] IMAGE [COMMAND...])")
	}
	s := &spec{dir: opts.Dir}
	s.c.Image = fs.Arg(0)
	s.cmd = fs.Args()[1:]
	changed := func(name string) bool { return fs.Changed(name) }
	get := func(name string) []string {
		if !changed(name) {
			return nil
		}
		return *values[name]
	}
	last := func(name string) string {
		v := get(name)
		if len(v) == 0 {
			return ""
		}
		return v[len(v)-1]
	}
	// Aliases docker keeps for old spellings.
	for alias, name := range map[string]string{"net": "network", "net-alias": "network-alias", "dns-opt": "dns-option"} {
		if changed(alias) {
			*values[name] = append(*values[name], *values[alias]...)
			fs.Lookup(name).Changed = true
		}
	}
	if changed("help") {
		return nil, errors.New("docker run --help: nothing to import")
	}

	s.name, s.nameFromFlag = last("name"), changed("name")
	s.c.Name = s.name
	s.c.Privileged = *bools["privileged"]
	s.c.CapAdd, s.c.CapDrop = splitLists(get("cap-add")), splitLists(get("cap-drop"))
	s.c.Devices = get("device")
	s.c.ReadonlyRootfs = *bools["read-only"]
	s.c.User = last("user")
	s.c.SecurityOpt = get("security-opt")
	s.workdir = last("workdir")
	s.tty = *bools["tty"]
	if changed("entrypoint") {
		s.entrySet = true
		if e := last("entrypoint"); e != "" {
			s.entrypoint = []string{e}
		}
	}
	for _, f := range []string{"label", "annotation"} {
		for _, kv := range get(f) {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, manifest.ReservedLabelPrefix) {
				// An export writes them (the manifest's path and
				// digest); the manifest may not: safe-run adds its own.
				s.fromExport = true
				s.note(Ignored, "--"+f+" "+k, nil, manifest.ReservedLabelPrefix+"* is what safe-run records about a service itself (a safe-run export wrote it): dropped")
				continue
			}
			s.labels = append(s.labels, [2]string{k, v})
		}
	}
	if err := s.readEnv(get("env"), get("env-file"), opts); err != nil {
		return nil, err
	}
	if err := s.resources(last, changed); err != nil {
		return nil, err
	}
	if err := s.readMounts(get("volume"), get("mount"), get("tmpfs")); err != nil {
		return nil, err
	}
	s.exposeFlags(get("expose"))
	s.namespaces(last("network"), get("publish"), splitLists(get("dns")), last("pid"), last("ipc"), last("uts"), last("userns"))
	if err := s.process(last("restart"), last("stop-signal"), last("stop-timeout")); err != nil {
		return nil, err
	}
	if *bools["use-api-socket"] {
		s.note(Refused, "--use-api-socket", policy.Lookup("sensitive-mount"), "not carried over: it hands the container docker's API, which is root on the host")
	}
	for _, f := range valueFlags {
		name := f[0]
		if why, ok := unsupported[name]; ok && why != "" && changed(name) {
			for _, v := range get(name) {
				if same := s.alreadySo(name, v); same != "" {
					s.note(Ignored, "--"+name+" "+v, nil, same)
					continue
				}
				s.note(Unsupported, "--"+name+" "+v, ruleForFlag(name), why)
			}
		}
	}
	for _, f := range append(valueFlags, boolFlags...) {
		if why, ok := ignored[f[0]]; ok && why != "" && changed(f[0]) {
			s.note(Ignored, "--"+f[0], nil, why)
		}
	}
	if *bools["oom-kill-disable"] {
		s.note(Unsupported, "--oom-kill-disable", nil, unsupported["oom-kill-disable"])
	}
	if *bools["publish-all"] {
		s.note(Unsupported, "--publish-all", nil, unsupported["publish-all"])
	}
	s.security()
	if extra != nil {
		extra(s)
	}
	return s.result(opts)
}

// alreadySo says why an option a manifest cannot express is what safe-run
// does anyway with this value, as a safe-run export writes it; "" when
// it is not.
func (s *spec) alreadySo(flag, v string) string {
	switch flag {
	case "hostname":
		if v == serviceName(s.name, s.c.Image) {
			return "the service's UTS namespace is named after the service already"
		}
	case "memory-swap":
		if n, err := manifest.ParseSize(v); err == nil && int64(n) == s.c.Memory && s.c.Memory > 0 {
			return "equal to --memory, it adds no swap, and safe-run never adds swap to the memory limit"
		}
	case "cpu-shares":
		if n, err := strconv.ParseFloat(v, 64); err == nil && s.c.CPUs > 0 && n == math.Round(s.c.CPUs*1024) {
			return "safe-run sets them from cpus (cpus x 1024), as here"
		}
	}
	return ""
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// splitLists accepts docker's comma-separated values too (--cap-add A,B).
func splitLists(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func ruleForFlag(name string) *policy.Rule {
	switch name {
	case "device", "device-cgroup-rule", "gpus":
		return policy.Lookup("host-device")
	}
	return nil
}

func (s *spec) readEnv(env, files []string, opts Options) error {
	for _, f := range files {
		if opts.ReadFile == nil {
			s.note(Unsupported, "--env-file "+f, nil, "env files are not read here: copy the variables into [process.env]")
			continue
		}
		p := f
		if !path.IsAbs(p) && opts.Dir != "" {
			p = path.Join(opts.Dir, p)
		}
		data, err := opts.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) && opts.compose != nil && opts.compose.optionalEnv[f] {
			s.note(Ignored, "env_file "+f, nil, "not there, and required: false")
			continue
		}
		if err != nil {
			if opts.compose != nil {
				return fmt.Errorf("reading env_file %s: %w", f, err)
			}
			return fmt.Errorf("reading --env-file %s: %w", f, err)
		}
		if !utf8.Valid(data) {
			return fmt.Errorf("reading --env-file %s: not UTF-8 text, which a manifest must be (convert it, e.g. with iconv)", f)
		}
		if opts.compose != nil {
			// compose's own syntax: export, quotes, ${VAR}, comments.
			vars, err := dotenv.ParseWithLookup(bytes.NewReader(data), opts.LookupEnv)
			if err != nil {
				return fmt.Errorf("reading env_file %s: %w", f, err)
			}
			for _, k := range slices.Sorted(maps.Keys(vars)) {
				s.addEnv(k+"="+vars[k], "env_file "+f)
			}
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			s.addEnv(line, "--env-file "+f)
		}
	}
	for _, kv := range env {
		s.addEnv(kv, "--env")
	}
	return nil
}

func (s *spec) addEnv(kv, flag string) {
	k, v, hasValue := strings.Cut(kv, "=")
	e := envVar{key: k, value: v}
	if !hasValue {
		e.comment = "TODO: docker run passed $" + k + " from the caller's environment: set the value"
		s.note(Default, flag+" "+k, nil, "takes the value from the caller's environment: write it into the manifest, or into [secrets] if it is one")
	}
	if policy.SecretLooking(k) {
		r := policy.Lookup("secret-in-env")
		e.comment = "TODO " + r.ID + " " + r.Name + ": move it to [secrets] and read /run/secrets/" + strings.ToLower(k)
		s.note(Default, flag+" "+k, r, "carried over, but a secret belongs in [secrets]: a file the service reads at /run/secrets/"+strings.ToLower(k))
	}
	// An index, not a scan: an env file may hold thousands of lines
	// (found by a black-box probe: 20k took 3.4 s).
	if i, ok := s.envIndex[k]; ok {
		s.env[i] = e
		return
	}
	if s.envIndex == nil {
		s.envIndex = map[string]int{}
	}
	s.envIndex[k] = len(s.env)
	s.env = append(s.env, e)
	s.c.Env = append(s.c.Env, k+"="+v)
}

func (s *spec) resources(last func(string) string, changed func(string) bool) error {
	if m := last("memory"); m != "" {
		v, err := manifest.ParseSize(m)
		if err != nil {
			return fmt.Errorf("--memory: %w", err)
		}
		s.c.Memory = int64(v)
	}
	if m := last("memory-reservation"); m != "" {
		v, err := manifest.ParseSize(m)
		if err != nil {
			return fmt.Errorf("--memory-reservation: %w", err)
		}
		s.reservation = int64(v)
	}
	if c := last("cpus"); c != "" && c != "0" {
		v, err := strconv.ParseFloat(c, 64)
		if err != nil || v <= 0 || math.IsNaN(v) {
			return fmt.Errorf("--cpus %q is not a number of CPUs (use e.g. 1.5)", c)
		}
		if err := cpusInRange("--cpus "+c, v); err != nil {
			return err
		}
		s.c.CPUs = v
	} else if q := last("cpu-quota"); q != "" {
		quota, err1 := strconv.ParseInt(q, 10, 64)
		period := int64(100000)
		var err2 error
		if p := last("cpu-period"); p != "" {
			period, err2 = strconv.ParseInt(p, 10, 64)
		}
		if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
			return fmt.Errorf("--cpu-quota %q / --cpu-period: not whole numbers of microseconds", q)
		}
		s.c.CPUs = float64(quota) / float64(period)
		if err := cpusInRange("--cpu-quota "+q, s.c.CPUs); err != nil {
			return err
		}
		s.note(Default, "--cpu-quota "+q, nil, fmt.Sprintf("written as cpus = %g (quota / period)", s.c.CPUs))
	} else if changed("cpu-period") {
		s.note(Ignored, "--cpu-period", nil, "without --cpu-quota it limits nothing")
	}
	if p := last("pids-limit"); p != "" {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return fmt.Errorf("--pids-limit %q is not a whole number", p)
		}
		s.c.PidsLimit = v
	}
	return nil
}

var rtSignal = regexp.MustCompile(`^(SIG)?RTM(IN|AX)[+-][0-9]+$`)

// process reads the restart policy and how to stop the service.
func (s *spec) process(restart, signal, timeout string) error {
	switch policyName, _, _ := strings.Cut(restart, ":"); policyName {
	case "":
	case "no", "always":
		s.restart = policyName
	case "on-failure":
		s.restart = policyName
		if strings.Contains(restart, ":") {
			s.note(Unsupported, "--restart "+restart, nil, "the retry count is not in manifest v1: restart = \"on-failure\" retries without a bound (systemd's StartLimitBurst bounds it)")
		}
	case "unless-stopped":
		s.restart = "always"
		s.note(Default, "--restart unless-stopped", nil, "written as restart = \"always\": a stopped systemd unit stays stopped, as unless-stopped does")
	default:
		return fmt.Errorf("--restart %q is not a restart policy (docker takes no, on-failure[:N], always, unless-stopped)", restart)
	}
	if signal != "" {
		sig, err := manifest.ParseSignal(signal)
		switch {
		case err == nil:
			s.stopSignal = sig.Name
		case rtSignal.MatchString(strings.ToUpper(signal)):
			// systemd in a container stops on SIGRTMIN+3; a manifest
			// names SIGRTMIN and SIGRTMAX only.
			s.note(Unsupported, "--stop-signal "+signal, nil, "real-time signals other than SIGRTMIN and SIGRTMAX are not in manifest v1: stop_signal stays SIGTERM (systemd as PID 1 ignores it: stop it with safe-run kill -s "+strings.ToUpper(signal)+" NAME first)")
		default:
			return fmt.Errorf("--stop-signal: %w", err)
		}
	}
	if timeout != "" {
		n, err := strconv.Atoi(timeout)
		if err != nil || n < 0 {
			return fmt.Errorf("--stop-timeout %q is not a number of seconds", timeout)
		}
		s.stopTimeout = strconv.Itoa(n) + "s"
	}
	return nil
}

// cpusInRange refuses a CPU limit a manifest cannot hold, naming the
// option: docker would refuse most of these at the start, on some host.
func cpusInRange(opt string, cpus float64) error {
	switch {
	case cpus < manifest.MinCPUs:
		return fmt.Errorf("%s: %g CPUs is below the smallest limit, %g (use e.g. 0.5)", opt, cpus, manifest.MinCPUs)
	case cpus > manifest.MaxCPUs:
		return fmt.Errorf("%s: %g CPUs is more than any host has (at most %d; use e.g. 2)", opt, cpus, manifest.MaxCPUs)
	}
	return nil
}
