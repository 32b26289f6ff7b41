package importer

import (
	"github.com/safe-run/safe-run/policy"
)

// Note is one thing the person converting must know.
type Note struct {
	Flag string       // the docker flag as given: --privileged, --volume /a:/b
	Kind string       // one of the Note kinds below
	Rule *policy.Rule // the rule the flag breaks, if any
	Text string
}

// Note kinds, in the order the report lists them.
const (
	Refused     = "refused"     // not carried over: safe-run never does it
	Insecure    = "insecure"    // carried over with an [insecure] item and a TODO reason
	Unsupported = "unsupported" // a manifest cannot express it: left out
	Default     = "default"     // a secure default or a guess was filled in: check it
	Ignored     = "ignored"     // safe-run does it anyway, or it has no meaning here
)

// Result is one converted service.
type Result struct {
	Name     string // the service name
	Manifest []byte
	// Env says the manifest holds environment values (from --env,
	// --env-file, compose's environment or env_file), which may be
	// secrets: its file is for its owner only.
	Env   bool
	Notes []Note
	// Docker is the judgement of the docker command as given, by the same
	// rules audit applies to a running container.
	Docker *policy.Report
}

// Options say where the command came from.
type Options struct {
	// Source is the command or file the manifest says it was made from.
	Source string
	// Dir is where relative paths (--env-file, bind sources, a compose
	// file's paths) start: they are written absolute, since a manifest
	// reads its own relative to itself, wherever it is written.
	Dir string
	// ReadFile reads an --env-file or compose env_file; nil refuses them.
	ReadFile func(path string) ([]byte, error)
	// Output is the file the manifest goes to, for the hint at its top;
	// "" when not known (NAME.toml).
	Output string
	// LookupEnv gives the variables a compose file's ${VAR} refers to (the
	// environment, then the .env file beside it, as compose reads them);
	// nil: none is set, and only defaults apply.
	LookupEnv func(name string) (string, bool)

	// compose is set for a compose service: its env files are read as
	// compose reads them.
	compose *composeService
}

// composeService is what a compose service's conversion needs beside
// docker run's flags.
type composeService struct {
	optionalEnv map[string]bool // env_file entries with required: false
}

// spec is a docker container as the flags describe it: what policy judges,
// and what only the manifest needs.
type spec struct {
	c            policy.Container
	name         string
	nameFromFlag bool
	entrypoint   []string
	entrySet     bool // --entrypoint given, maybe empty
	cmd          []string
	env          []envVar
	envIndex     map[string]int // key -> index in env
	workdir      string
	tty          bool
	restart      string
	stopSignal   string
	stopTimeout  string
	labels       [][2]string
	ports        []string
	published    map[int]bool // container TCP ports of ports, which Landlock lets the service bind
	expose       []int        // TCP ports of --expose / expose:, for landlock_bind
	mounts       []mount
	seccomp      string
	apparmor     string
	reservation  int64
	network      string // none | host | bridge
	bridge       string // bridge mode: the named network
	dns          []string
	ipc, pid     string
	uts          string
	secrets      [][2]string // name, file
	fromExport   bool        // the line carries safe-run's own labels: a safe-run export
	dir          string      // Options.Dir
	notes        []Note
	insecure     []insecureItem
}

type envVar struct {
	key, value string
	comment    string
}

type mount struct {
	typ, source, target string
	anonymous           bool // a volume docker names itself: named after the service and target
	readOnly            bool
	size                int64
	mode                string
	options             []string
	comment             string
}

// insecureItem is an [insecure] allow item with what needs it.
type insecureItem struct {
	item, why string
}

func (s *spec) note(kind, flag string, rule *policy.Rule, text string) {
	s.notes = append(s.notes, Note{Flag: flag, Kind: kind, Rule: rule, Text: text})
}

// allow adds an [insecure] item (once) and the note that says why.
func (s *spec) allow(item, flag string, rule *policy.Rule, text string) {
	s.note(Insecure, flag, rule, text)
	why := flag
	if rule != nil {
		why += " breaks " + rule.ID + " " + rule.Name
	}
	for i, it := range s.insecure {
		if it.item == item {
			s.insecure[i].why += "; " + why
			return
		}
	}
	s.insecure = append(s.insecure, insecureItem{item: item, why: why})
}
