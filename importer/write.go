package importer

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/policy"
)

// tomlWriter writes manifest text: keys in design.md's order, one comment
// where a value needs the reader's attention.
type tomlWriter struct {
	b strings.Builder
}

func (w *tomlWriter) comment(format string, args ...any) {
	for _, l := range strings.Split(fmt.Sprintf(format, args...), "\n") {
		w.b.WriteString(strings.TrimRight("# "+commentText(l), " ") + "\n")
	}
}

func (w *tomlWriter) table(name string) {
	w.b.WriteString("\n[" + name + "]\n")
}

// kv writes key = value, with a trailing comment when one is given.
func (w *tomlWriter) kv(key, value, comment string) {
	line := tomlKey(key) + " = " + value
	if comment != "" {
		line += "  # " + commentText(comment)
	}
	w.b.WriteString(line + "\n")
}

// commentText makes s fit in a TOML comment, which ends at a newline
// and may hold no other control character: a value quoted in a comment
// (the image name, an option's argument) keeps them escaped, as in Go
// (found by FuzzDockerRun: a NUL in the image name).
func commentText(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func tomlKey(k string) string {
	if bareKey.MatchString(k) {
		return k
	}
	return tomlString(k)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tomlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// write renders the manifest and checks that it loads.
func (s *spec) write(name string, docker *policy.Report, opts Options) (*Result, error) {
	var w tomlWriter
	w.comment("Imported by safe-run import from:")
	src := opts.Source
	if len(src) > 0 {
		w.comment("  %s", wrap(src, 90, "    "))
	}
	file := opts.Output
	if file == "" {
		file = name + ".toml"
	}
	w.comment("Review every TODO, then: safe-run check %s", file)
	w.kv("version", "1", "")
	w.kv("name", tomlString(name), "")

	w.table("image")
	ref, imgComment := s.c.Image, ""
	if !manifest.ValidRef(ref) {
		// A line from a README often has a shell variable for the tag
		// (IMAGE:$VERSION); the tag goes, and the TODO says so.
		ref = refWithoutTag(ref)
		imgComment = "TODO: the tag in " + s.c.Image + " is not a tag (a shell variable?): set it, then pin. "
	}
	if !policy.Pinned(ref) {
		r := policy.Lookup("unpinned-image")
		imgComment += "TODO " + r.ID + " " + r.Name + ": pin it, ref = \"" + refWithoutTag(ref) + "@sha256:...\""
	}
	w.kv("ref", tomlString(ref), imgComment)

	s.writeProcess(&w)
	s.writeSecurity(&w)
	s.writeResources(&w)
	s.writeMounts(&w, name)
	s.writeNetwork(&w)
	if len(s.secrets) > 0 {
		w.table("secrets")
		for _, sec := range s.secrets {
			w.kv(sec[0], "{ file = "+tomlString(s.abs(sec[1]))+" }", "")
		}
	}
	if len(s.labels) > 0 {
		w.table("labels")
		seen := map[string]bool{}
		for _, l := range s.labels {
			if !seen[l[0]] && strings.TrimSpace(l[0]) != "" {
				w.kv(l[0], tomlString(l[1]), "")
			}
			seen[l[0]] = true
		}
	}
	if len(s.insecure) > 0 {
		w.table("insecure")
		w.kv("reason", tomlString("TODO: say in one sentence why this service needs what allow lists"), "")
		w.b.WriteString("allow = [\n")
		for _, it := range s.insecure {
			w.b.WriteString("  " + tomlString(it.item) + ",  # TODO reason: " + commentText(it.why) + "\n")
		}
		w.b.WriteString("]\n")
	}
	text := w.b.String()
	dir := opts.Dir
	if dir == "" {
		dir = "/"
	}
	if len(text) > MaxInputSize {
		// manifest.Load would refuse it.
		return nil, fmt.Errorf("the manifest would be %d bytes, more than the %d a manifest may be: the input is too long to be one service (%d environment variables, %d mounts)", len(text), MaxInputSize, len(s.env), len(s.mounts))
	}
	if _, err := manifest.Parse(name+".toml", dir, []byte(text)); err != nil {
		return nil, cannotImport(err, text)
	}
	return &Result{Name: name, Manifest: []byte(text), Notes: orderNotes(s.notes), Docker: docker, Env: len(s.env) > 0}, nil
}

func (s *spec) writeProcess(w *tomlWriter) {
	var lines tomlWriter
	command := append(append([]string{}, s.entrypoint...), s.cmd...)
	if len(command) > 0 {
		c := ""
		if !s.entrySet {
			c = "TODO: prepend the image's ENTRYPOINT, if it has one"
		}
		lines.kv("command", tomlList(command), c)
	}
	if s.c.User != "" {
		lines.kv("user", tomlString(s.c.User), "")
	}
	if s.workdir != "" {
		lines.kv("workdir", tomlString(s.workdir), "")
	}
	if s.tty {
		lines.kv("tty", "true", "")
	}
	if s.stopSignal != "" {
		lines.kv("stop_signal", tomlString(s.stopSignal), "")
	}
	if s.stopTimeout != "" {
		lines.kv("stop_timeout", tomlString(s.stopTimeout), "")
	}
	if s.restart != "" {
		lines.kv("restart", tomlString(s.restart), "")
	}
	if lines.b.Len() > 0 || len(s.env) > 0 {
		w.table("process")
		w.b.WriteString(lines.b.String())
	}
	if len(s.env) > 0 {
		w.table("process.env")
		for _, e := range s.env {
			w.kv(e.key, tomlString(e.value), e.comment)
		}
	}
}

func (s *spec) writeSecurity(w *tomlWriter) {
	w.table("security")
	var caps []string
	seen := map[string]bool{}
	for _, c := range s.c.CapAdd {
		cap, err := manifest.ParseCapability(c)
		if err != nil || seen[cap.Short()] {
			continue
		}
		seen[cap.Short()] = true
		caps = append(caps, cap.Short())
	}
	comment := ""
	if h := hintFor(s.c.Image); len(h.caps) > 0 && !s.c.DropsAll() && !s.c.Privileged {
		added := false
		for _, c := range h.caps {
			if !seen[c] {
				caps = append(caps, c)
				seen[c] = true
				added = true
			}
		}
		if added {
			comment = "of docker's defaults, what " + imageBase(s.c.Image) + " needs: " + h.why
		}
	}
	if len(caps) > 0 || comment != "" {
		w.kv("capabilities", tomlList(caps), comment)
	}
	if s.seccomp != "" {
		w.kv("seccomp", tomlString(s.seccomp), "")
	}
	if s.apparmor != "" {
		w.kv("apparmor", tomlString(s.apparmor), "")
	}
	if ports, comment := s.landlockBind(); len(ports) > 0 {
		q := make([]string, len(ports))
		for i, p := range ports {
			q[i] = strconv.Itoa(p)
		}
		w.kv("landlock_bind", "["+strings.Join(q, ", ")+"]", comment)
	} else if len(s.published) == 0 {
		w.comment("TODO: Landlock lets the service bind (listen on) only the container ports of [network] ports and")
		w.comment("landlock_bind: if it listens, list its TCP ports, e.g. landlock_bind = [8080]")
	}
	w.comment("no_new_privileges and read_only_rootfs keep safe-run's defaults (true)")
}

func (s *spec) writeResources(w *tomlWriter) {
	w.table("resources")
	if s.c.Memory > 0 {
		w.kv("memory", tomlString(sizeString(s.c.Memory)), "")
	} else {
		w.kv("memory", `"512M"`, "TODO: a guess (docker run set no limit): measure and adjust")
	}
	if s.reservation > 0 && s.reservation <= s.memoryLimit() {
		w.kv("memory_reservation", tomlString(sizeString(s.reservation)), "")
	}
	if s.c.CPUs > 0 {
		w.kv("cpus", strconv.FormatFloat(s.c.CPUs, 'f', -1, 64), "")
	} else {
		w.kv("cpus", "1.0", "TODO: a guess (docker run set no limit)")
	}
	if s.c.PidsLimit > 0 {
		w.kv("pids", strconv.FormatInt(s.c.PidsLimit, 10), "")
	}
}

func (s *spec) writeMounts(w *tomlWriter, name string) {
	mounts := append([]mount{}, s.mounts...)
	h := hintFor(s.c.Image)
	add := func(m mount) {
		for _, o := range mounts {
			if o.target == m.target {
				return
			}
		}
		mounts = append(mounts, m)
	}
	if !s.c.ReadonlyRootfs {
		add(mount{typ: manifest.MountTmpfs, target: "/tmp", comment: "docker's writable root let the service write here"})
		for _, t := range h.tmpfs {
			add(mount{typ: manifest.MountTmpfs, target: t, comment: imageBase(s.c.Image) + " writes here"})
		}
	}
	for _, v := range h.volumes {
		add(mount{typ: manifest.MountVolume, anonymous: true, target: v, comment: "the image declares VOLUME " + v + "; docker made an anonymous volume"})
	}
	for _, m := range mounts {
		if m.anonymous {
			m.source = volumeName(name, m.target)
		}
		w.b.WriteString("\n[[mounts]]")
		if m.comment != "" {
			w.b.WriteString("  # " + commentText(m.comment))
		}
		w.b.WriteString("\n")
		w.kv("type", tomlString(m.typ), "")
		if m.source != "" {
			w.kv("source", tomlString(m.source), "")
		}
		w.kv("target", tomlString(m.target), "")
		switch m.typ {
		case manifest.MountBind:
			if !m.readOnly {
				w.kv("read_only", "false", "")
			}
		case manifest.MountVolume:
			if m.readOnly {
				w.kv("read_only", "true", "")
			}
		case manifest.MountTmpfs:
			if m.size > 0 {
				w.kv("size", tomlString(sizeString(m.size)), "")
			}
			if m.mode != "" {
				if mode, err := modeString(m.mode); err == nil {
					w.kv("mode", tomlString(mode), "")
				}
			}
			if len(m.options) > 0 {
				w.kv("options", tomlList(m.options), "")
			}
		}
	}
}

func (s *spec) writeNetwork(w *tomlWriter) {
	if s.network != manifest.NetworkNone || len(s.ports) > 0 {
		w.table("network")
		w.kv("mode", tomlString(s.network), "")
		if s.bridge != "" {
			w.kv("bridge", tomlString(s.bridge), "")
		}
		if len(s.ports) > 0 {
			w.kv("ports", tomlList(s.ports), "")
		}
		if s.network == manifest.NetworkBridge {
			w.kv("egress", tomlString(manifest.EgressNone), "TODO: docker allowed every outbound connection: list what the service connects to")
		}
		if len(s.dns) > 0 {
			w.kv("dns", tomlList(s.dns), "")
		}
	}
	if s.pid != "" || s.ipc != "" || s.uts != "" {
		w.table("namespaces")
		for _, ns := range [][2]string{{"pid", s.pid}, {"ipc", s.ipc}, {"uts", s.uts}} {
			if ns[1] != "" {
				w.kv(ns[0], tomlString(ns[1]), "")
			}
		}
	}
}

// refWithoutTag drops the tag from an image reference, keeping a registry
// port: localhost:5000/web:1 -> localhost:5000/web.
func refWithoutTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon]
	}
	return ref
}

// wrap breaks a long command line into comment lines at spaces, never
// inside single quotes, so that each line pastes back into a shell.
func wrap(s string, width int, indent string) string {
	var lines []string
	cur := ""
	for _, word := range shellFields(s) {
		if cur != "" && len(cur)+1+len(word) > width {
			lines = append(lines, cur+" \\")
			cur = indent + word
			continue
		}
		if cur == "" {
			cur = word
		} else {
			cur += " " + word
		}
	}
	lines = append(lines, cur)
	return strings.Join(lines, "\n")
}

// shellFields splits s at spaces outside single quotes.
func shellFields(s string) []string {
	var out []string
	start, quoted := -1, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && !quoted && i+1 < len(s):
			if start < 0 {
				start = i
			}
			i++
		case c == '\'':
			quoted = !quoted
			if start < 0 {
				start = i
			}
		case (c == ' ' || c == '\t' || c == '\n') && !quoted:
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

var noteOrder = map[string]int{Refused: 0, Insecure: 1, Unsupported: 2, Default: 3, Ignored: 4}

// orderNotes lists the notes by kind, most important first, keeping the
// command line's order within a kind.
func orderNotes(ns []Note) []Note {
	out := make([]Note, 0, len(ns))
	for k := 0; k <= 5; k++ {
		for _, n := range ns {
			if noteOrder[n.Kind] == k {
				out = append(out, n)
			}
		}
	}
	return out
}

// WriteNotes writes the notes for a person, one per line:
//
//	refused      --privileged  [SR020 privileged] not carried over: ...
func WriteNotes(w *strings.Builder, r *Result) {
	for _, n := range r.Notes {
		rule := ""
		if n.Rule != nil {
			rule = "[" + n.Rule.ID + " " + n.Rule.Name + "] "
		}
		fmt.Fprintf(w, "  %-11s %s: %s%s\n", n.Kind, n.Flag, rule, n.Text)
	}
}

// dockerOptions names the docker run option behind each manifest key the
// importer writes, longest key first.
var dockerOptions = []struct{ key, option string }{
	{"resources.memory_reservation", "--memory-reservation"},
	{"resources.memory", "--memory"},
	{"resources.cpus", "--cpus"},
	{"resources.pids", "--pids-limit"},
	{"process.command", "the command"},
	{"process.env", "--env"},
	{"process.user", "--user"},
	{"process.workdir", "--workdir"},
	{"process.stop_signal", "--stop-signal"},
	{"process.stop_timeout", "--stop-timeout"},
	{"process.restart", "--restart"},
	{"security.capabilities", "--cap-add"},
	{"security", "--security-opt"}, // apparmor=NAME, seccomp=FILE (found by FuzzDockerRun: apparmor=!)
	{"mounts", "--volume, --mount or --tmpfs"},
	{"network", "--network or --publish"},
	{"namespaces", "--pid, --ipc or --uts"},
	{"labels", "--label"},
	{"secrets", "secrets"},
	{"image", "the image"},
	{"name", "--name"},
}

// cannotImport explains why the manifest written from a docker run line
// does not load: each problem under the option that set its key. Options
// docker itself refuses (--memory 1b, --workdir relative) come this way. A
// problem no option explains is the importer's own.
func cannotImport(err error, text string) error {
	var lines []string
	for _, f := range manifest.FieldErrors(err) {
		i := slices.IndexFunc(dockerOptions, func(o struct{ key, option string }) bool {
			return f.Path == o.key || strings.HasPrefix(f.Path, o.key+".") || strings.HasPrefix(f.Path, o.key+"[")
		})
		if i < 0 {
			return fmt.Errorf("safe-run import wrote a manifest that does not load (a bug; please report it with the command): %w\n%s", err, text)
		}
		lines = append(lines, dockerOptions[i].option+": "+f.Path+": "+f.Msg)
	}
	return fmt.Errorf("the line cannot become a manifest:\n  %s", strings.Join(lines, "\n  "))
}
