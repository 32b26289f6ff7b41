package importer

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// SplitCommand splits a shell command line as sh would, for the command
// lines users paste: single and double quotes, backslash escapes, and
// backslash-newline continuations. Variables ($X) and other expansions are
// kept literally; the caller's shell has not run. Shell operators are
// kept as words too, as compose keeps them in a string command (it splits
// with shlex and runs no shell).
func SplitCommand(line string) ([]string, error) {
	return splitWords(line, false)
}

// MaxInputSize bounds a compose file, an env file and a command line read
// from stdin, as manifest.Load bounds a manifest: what import reads is a
// short text file, and a hostile one (/dev/zero, a FIFO) must not make it
// read forever or run out of memory.
const MaxInputSize = 1 << 20

// CommandLine reads one pasted command line (from stdin, or given as one
// argument) into the arguments of docker run, after "run": see RunArgs
// for what may stand before them. Unlike SplitCommand it refuses what a
// shell would run besides the one command: a pipe, &&, ;, a redirection,
// a second command on a line of its own. Errors name the offending word,
// never the whole line, which may hold passwords.
func CommandLine(line string) ([]string, error) {
	words, err := splitWords(strings.ReplaceAll(line, "\r\n", "\n"), true)
	if err != nil {
		return nil, err
	}
	return RunArgs(words)
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// sudoValueFlags are sudo's options that take a value.
var sudoValueFlags = map[string]bool{"-u": true, "-g": true, "-h": true, "-C": true, "-D": true, "-p": true, "-r": true, "-t": true, "-U": true, "-T": true, "-R": true}

// globalValueFlags are docker's and podman's options before the
// subcommand that take a value; globalBoolFlags those that do not.
var (
	globalValueFlags = map[string]bool{"--config": true, "-c": true, "--context": true, "-H": true, "--host": true, "-l": true, "--log-level": true,
		"--tlscacert": true, "--tlscert": true, "--tlskey": true,
		// podman
		"--url": true, "--connection": true, "--identity": true, "--root": true, "--runroot": true, "--storage-driver": true,
		"--cgroup-manager": true, "--events-backend": true, "--runtime": true, "--network-cmd-path": true, "--tmpdir": true, "--module": true}
	globalBoolFlags = map[string]bool{"-D": true, "--debug": true, "--tls": true, "--tlsverify": true, "--remote": true, "-r": true, "--syslog": true}
)

// RunArgs takes the words of a docker run command line and returns the
// arguments after "run". Before them it accepts what a pasted line has:
// a "$ " prompt, variable assignments (DOCKER_HOST=... docker run),
// sudo and its options, docker by any path (/usr/bin/docker) or podman
// (whose run takes docker's flags), docker's global options (--context,
// -H), and "container run" or "create" for "run".
func RunArgs(words []string) ([]string, error) {
	const usage = "write: safe-run import -- docker run [flags] IMAGE [COMMAND...]"
	i := 0
	skipAssignments := func() {
		for i < len(words) && assignment.MatchString(words[i]) {
			i++
		}
	}
	if i < len(words) && words[i] == "$" {
		i++
	}
	skipAssignments()
	if i < len(words) && path.Base(words[i]) == "sudo" {
		for i++; i < len(words) && strings.HasPrefix(words[i], "-"); i++ {
			if words[i] == "--" {
				i++
				break
			}
			if sudoValueFlags[words[i]] {
				i++
			}
		}
		skipAssignments()
	}
	if i >= len(words) {
		return nil, errors.New("no command (" + usage + ")")
	}
	switch path.Base(words[i]) {
	case "docker", "podman", "nerdctl":
	default:
		return nil, fmt.Errorf("the command is %q, not docker run (%s)", words[i], usage)
	}
	tool := path.Base(words[i])
	for i++; i < len(words) && strings.HasPrefix(words[i], "-"); i++ {
		name, _, hasValue := strings.Cut(words[i], "=")
		switch {
		case globalValueFlags[name] && !hasValue:
			i++
		case globalValueFlags[name], globalBoolFlags[name]:
		default:
			return nil, fmt.Errorf("%s option %q is not known to safe-run import (give the run command's flags after \"run\")", tool, name)
		}
	}
	switch {
	case i < len(words) && (words[i] == "run" || words[i] == "create"):
		return words[i+1:], nil
	case i+1 < len(words) && words[i] == "container" && (words[i+1] == "run" || words[i+1] == "create"):
		return words[i+2:], nil
	case i < len(words):
		return nil, fmt.Errorf("%s %s is not a run command (%s)", tool, words[i], usage)
	}
	return nil, fmt.Errorf("%s names no command (%s)", tool, usage)
}

// splitWords is SplitCommand; strict refuses shell operators and a
// second command.
func splitWords(line string, strict bool) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
		lineN = 1
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == 0 && strict:
			return nil, fmt.Errorf("line %d holds a NUL byte: not a command line", lineN)
		case c == '\\':
			if i+1 < len(line) {
				i++
				if line[i] == '\n' {
					lineN++
					continue
				}
				cur.WriteByte(line[i])
				inArg = true
			}
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			lineN += strings.Count(line[i+1:i+1+j], "\n")
			i += j + 1
			inArg = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\n' {
					lineN++
				}
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte("$`\"\\\n", line[i+1]) >= 0 {
					i++
					if line[i] == '\n' {
						lineN++
						continue
					}
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errors.New("unterminated double quote")
			}
			inArg = true
		case strict && strings.IndexByte("|&;<>`", c) >= 0:
			j := i
			for j < len(line) && strings.IndexByte("|&;<>`", line[j]) >= 0 {
				j++
			}
			return nil, fmt.Errorf("line %d: %q is a shell operator: safe-run import reads one docker run command (quote the character if it belongs to an argument, or give the docker run command alone)", lineN, line[i:j])
		case c == '\n' && strict:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
			lineN++
			if len(args) > 0 && strings.TrimSpace(stripComments(line[i+1:])) != "" {
				return nil, fmt.Errorf("line %d: a second command (a line without a trailing \\ ends the command): safe-run import reads one docker run command; import each on its own", lineN)
			}
		case c == ' ' || c == '\t' || c == '\n':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
			if c == '\n' {
				lineN++
			}
		case c == '#' && !inArg:
			// A comment runs to the end of the line.
			for i+1 < len(line) && line[i+1] != '\n' {
				i++
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// stripComments drops the comment lines of what follows a command.
func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(t)
		}
	}
	return b.String()
}
