package manifest

import (
	"strings"
	"testing"
)

func TestSyntaxErrors(t *testing.T) {
	runErrCases(t, []errCase{
		// A control character is on its own line, not the one before
		// (found by a black-box probe: a NUL on line 11 was "line 10").
		{"NUL starting a line", with("\x00\n"), `web.toml:13: TOML files cannot contain control characters: '0x00' (TOML syntax; see https://toml.io)`},
		{"NUL alone at the end", with("\x00"), `web.toml:13: TOML files cannot contain control characters: '0x00' (TOML syntax; see https://toml.io)`},
		{"NUL in a string", edit(`name = "web"`, "name = \"w\x00b\""), `web.toml:2: TOML files cannot contain control characters: '0x00' (TOML syntax; see https://toml.io)`},
		{"ESC in a comment", with("# a\x1b[2J\n"), `web.toml:13: TOML files cannot contain control characters: '0x1b' (TOML syntax; see https://toml.io)`},
		{"duplicate key", edit(`name = "web"`, "name = \"web\"\nname = \"db\""), `web.toml:3: Key 'name' has already been defined (TOML syntax; see https://toml.io)`},
		{"duplicate table", with("\n[resources]\npids = 1\n"), `web.toml:14: Key 'resources' has already been defined (TOML syntax; see https://toml.io)`},
		{"unterminated string", edit(`name = "web"`, `name = "web`), `web.toml:2: strings cannot contain newlines (TOML syntax; see https://toml.io)`},
		{"bad escape", edit(`name = "web"`, `name = "w\qb"`), "web.toml:2: invalid escape in string '\\q' (TOML syntax; see https://toml.io)"},
		{"newline in string", edit(`name = "web"`, "name = \"w\neb\""), `web.toml:2: strings cannot contain newlines (TOML syntax; see https://toml.io)`},
		{"missing value", edit(`name = "web"`, `name =`), "web.toml:2: expected value but found '\\n' instead (TOML syntax; see https://toml.io)"},
		{"bare word value", edit(`name = "web"`, `name = web`), `web.toml:2: expected value but found "web" instead (TOML syntax; see https://toml.io)`},
		{"unclosed array", edit(`command = ["/bin/web"]`, `command = ["/bin/web"`), `web.toml:10: expected a comma (',') or array terminator (']'), but got '[' (TOML syntax; see https://toml.io)`},
		{"unclosed table header", edit(`[image]`, `[image`), "web.toml:4: expected '.' or ']' to end table name, but got '\\n' instead (TOML syntax; see https://toml.io)"},
		{"mixed array", edit(`command = ["/bin/web"]`, `command = ["/bin/web", 1]`), `web.toml:8: process.command[1]: 1 must be a string (put it in double quotes)`},
		{"table redefined as key", with("\n[image.rootfs]\nx = 1\n"), `web.toml:14: Key 'image.rootfs' has already been defined (TOML syntax; see https://toml.io)`},
		{"NUL byte in file", "version = 1\x00\n", `web.toml:1: TOML files cannot contain control characters: '0x00' (TOML syntax; see https://toml.io)`},
		{"invalid UTF-8", "version = 1\nname = \"\xff\"\n", `web.toml:2: invalid UTF-8 byte: 0xff (TOML syntax; see https://toml.io)`},
	})
}

func TestUnknownKeys(t *testing.T) {
	runErrCases(t, []errCase{
		{"top level, close", edit(`name = "web"`, "name = \"web\"\nnmae = \"x\""), `web.toml:3: nmae: unknown key (did you mean name?)`},
		{"top level, far", edit(`name = "web"`, "name = \"web\"\ndescription = \"x\""), `web.toml:3: description: unknown key (top-level keys are: version, name, image, process, security, resources, mounts, network, namespaces, secrets, labels, insecure)`},
		{"top-level table", with("\n[resource]\npids = 1\n"), `web.toml:14: resource: unknown key (did you mean resources?)`},
		{"image", edit(`rootfs = "rootfs"`, "rootfs = \"rootfs\"\nroot = \"x\""), `web.toml:6: image.root: unknown key (did you mean rootfs?)`},
		{"process", proc("comand = [\"x\"]\n"), `web.toml:9: process.comand: unknown key (did you mean command?)`},
		{"process, far", proc("description = \"x\"\n"), `web.toml:9: process.description: unknown key (keys of process are: command, env, user, workdir, init, tty, notify, stop_signal, stop_timeout, restart)`},
		{"security", with("\n[security]\nno_new_privilege = true\n"), `web.toml:15: security.no_new_privilege: unknown key (did you mean no_new_privileges?)`},
		{"resources", with("memroy = \"1G\"\n"), `web.toml:13: resources.memroy: unknown key (did you mean memory?)`},
		{"resources, uppercase", with("Memory = \"1G\"\n"), `web.toml:13: resources.Memory: unknown key (did you mean memory?)`},
		{"mounts", with("\n[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/tmp\"\nreadonly = true\n"), `web.toml:17: mounts[0].readonly: unknown key (did you mean read_only?)`},
		{"network", with("\n[network]\nmod = \"none\"\n"), `web.toml:15: network.mod: unknown key (did you mean mode?)`},
		{"namespaces", with("\n[namespaces]\nnet = \"host\"\n"), `web.toml:15: namespaces.net: unknown key (keys of namespaces are: pid, ipc, uts)`},
		{"secret", with("\n[secrets]\ndb = { file = \"/etc/db\", mode = \"0400\" }\n"), `web.toml:15: secrets.db.mode: unknown key (keys of secrets.db are: file)`},
		{"insecure", with("\n[insecure]\nreasons = \"x\"\n"), `web.toml:15: insecure.reasons: unknown key (did you mean reason?)`},
		{"dotted", with("limits.memory = \"1G\"\n"), `web.toml:13: resources.limits: unknown key (keys of resources are: memory, memory_reservation, cpus, pids)`},
	})
}

func TestWrongTypes(t *testing.T) {
	runErrCases(t, []errCase{
		{"string for number", edit("cpus = 0.5", `cpus = "0.5"`), `web.toml:12: resources.cpus: "0.5" must be a number (without quotes, e.g. 1.5)`},
		{"string for whole number", with(`pids = "100"` + "\n"), `web.toml:13: resources.pids: "100" must be a whole number (without quotes)`},
		{"float for whole number", with("pids = 1.5\n"), `web.toml:13: resources.pids: 1.5 is a float: floats are not allowed here (write a whole number)`},
		// Found by a black-box probe: "10 must be a whole number".
		{"whole float for whole number", with("pids = 10.0\n"), `web.toml:13: resources.pids: 10.0 is a float: floats are not allowed here (write 10)`},
		{"exponent float for whole number", with("pids = 1e3\n"), `web.toml:13: resources.pids: 1000.0 is a float: floats are not allowed here (write 1000)`},
		{"string for version", edit("version = 1", `version = "1"`), `web.toml:1: version: "1" must be a whole number (without quotes)`},
		{"number for string", edit(`name = "web"`, `name = 7`), `web.toml:2: name: 7 must be a string (put it in double quotes)`},
		{"table for string", edit(`name = "web"`, `name = { x = 1 }`), `web.toml:2: name: a table must be a string (put it in double quotes)`},
		{"array for string", edit(`name = "web"`, `name = ["web"]`), `web.toml:2: name: an array must be a string (put it in double quotes)`},
		{"bool for string", proc("user = true\n"), `web.toml:9: process.user: true must be a string (put it in double quotes)`},
		{"string for bool", proc(`init = "false"` + "\n"), `web.toml:9: process.init: "false" must be true or false (without quotes)`},
		{"number for bool", proc("tty = 1\n"), `web.toml:9: process.tty: 1 must be true or false (without quotes)`},
		{"string for array", edit(`command = ["/bin/web"]`, `command = "/bin/web --port 80"`), `web.toml:8: process.command: "/bin/web --port 80" must be an array (e.g. process.command = [...])`},
		{"number in array", edit(`command = ["/bin/web"]`, `command = ["/bin/web", 80]`), `web.toml:8: process.command[1]: 80 must be a string (put it in double quotes)`},
		{"string for table", edit("[image]\nrootfs = \"rootfs\"\n", "image = \"rootfs\"\n"), `web.toml:4: image: "rootfs" must be a table (write [image] with keys below it)`},
		{"string for map", proc(`env = "A=1"` + "\n"), `web.toml:9: process.env: "A=1" must be a table (e.g. process.env = { KEY = "value" })`},
		{"number in map", proc("env = { PORT = 80 }\n"), `web.toml:9: process.env.PORT: 80 must be a string (put it in double quotes)`},
		{"string for mounts", edit("version = 1\n", "version = 1\nmounts = \"/tmp\"\n"), `web.toml:2: mounts: "/tmp" must be an array (e.g. mounts = [...])`},
		{"string in mounts", edit("version = 1\n", "version = 1\nmounts = [\"/tmp\"]\n"), `web.toml:2: mounts[0]: "/tmp" must be a table (write [[mounts]] with keys below it)`},
		{"string for secret", with("\n[secrets]\ndb = \"/etc/db\"\n"), `web.toml:15: secrets.db: "/etc/db" must be a table (write [secrets.db] with keys below it)`},
		{"number for size", edit(`memory = "256M"`, "memory = 256"), `web.toml:11: resources.memory: 256 is a bare number (use a string with a unit, e.g. "512M")`},
		{"float for size", edit(`memory = "256M"`, "memory = 0.5"), `web.toml:11: resources.memory: 0.5 must be a string with a unit, e.g. "512M"`},
		{"bool for size", edit(`memory = "256M"`, "memory = true"), `web.toml:11: resources.memory: true must be a string with a unit, e.g. "512M"`},
		{"number for duration", proc("stop_timeout = 10\n"), `web.toml:9: process.stop_timeout: 10 is a bare number (use a string with a unit, e.g. "10s")`},
		{"table for duration", proc("stop_timeout = { s = 10 }\n"), `web.toml:9: process.stop_timeout: a table must be a string with a unit, e.g. "10s"`},
		{"number for capability", with("\n[security]\ncapabilities = [12]\n"), `web.toml:15: security.capabilities[0]: 12 is a bare number (use a string, e.g. "NET_BIND_SERVICE")`},
		{"date for string", edit(`name = "web"`, "name = 2024-01-01"), `web.toml:2: name: a date must be a string (put it in double quotes)`},
	})
}

func TestValueErrors(t *testing.T) {
	mem := func(v string) string { return edit(`memory = "256M"`, "memory = "+v) }
	stop := func(k, v string) string { return proc(k + " = " + v + "\n") }
	caps := func(v string) string { return with("\n[security]\ncapabilities = [" + v + "]\n") }
	mode := func(v string) string {
		return with("\n[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/tmp\"\nmode = " + v + "\n")
	}
	runErrCases(t, []errCase{
		{"size 512M", mem(`"512M"`), ""},
		{"size 512Mi", mem(`"512Mi"`), ""},
		{"size 1G", mem(`"1G"`), ""},
		{"size 1.5G", mem(`"1.5G"`), ""},
		{"size bad unit", mem(`"12X"`), `web.toml:11: resources.memory: "12X" is not a size (use e.g. 512M)`},
		{"size word", mem(`"lots"`), `web.toml:11: resources.memory: "lots" is not a size (use e.g. 512M)`},
		{"size negative", mem(`"-1M"`), `web.toml:11: resources.memory: "-1M" is not a size (use e.g. 512M)`},
		{"size i without a unit", mem(`"512i"`), `web.toml:11: resources.memory: "512i" is not a size (use e.g. 512M)`},
		{"memory written as 0", mem(`"0"`), `web.toml:11: resources.memory: 0 sets no limit (use e.g. "512M"; to run without one, remove the key and acknowledge [insecure] allow = ["no_resource_limits"])`},
		{"cpus written as 0", edit("cpus = 0.5", "cpus = 0"), `web.toml:12: resources.cpus: 0 sets no limit (use e.g. 0.5; to run without one, remove the key and acknowledge [insecure] allow = ["no_resource_limits"])`},
		{"nested too deep", proc("command = " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n"), `web.toml:9: nested more than 32 levels deep (a manifest's arrays and inline tables are shallow)`},
		{"size empty", mem(`""`), `web.toml:11: resources.memory: "" is not a size (use e.g. 512M)`},
		{"size too large", mem(`"9000000T"`), `web.toml:11: resources.memory: "9000000T" is too large (use e.g. 512M or 64G)`},
		{"size below minimum", mem(`"1M"`), `web.toml:11: resources.memory: 1M is below the minimum 6M (the runtime itself needs a few MiB)`},
		{"duration 10s", stop("stop_timeout", `"10s"`), ""},
		{"duration 1m30s", stop("stop_timeout", `"1m30s"`), ""},
		{"duration no unit", stop("stop_timeout", `"10"`), `web.toml:9: process.stop_timeout: "10" has no unit (use e.g. 10s)`},
		{"duration negative", stop("stop_timeout", `"-1s"`), `web.toml:9: process.stop_timeout: "-1s" is negative (use a positive duration such as 10s)`},
		{"duration zero", stop("stop_timeout", `"0s"`), `web.toml:9: process.stop_timeout: must be longer than zero (use e.g. "10s")`},
		{"duration bad", stop("stop_timeout", `"10 seconds"`), `web.toml:9: process.stop_timeout: "10 seconds" is not a duration (use e.g. 10s or 1m30s)`},
		{"duration too large", stop("stop_timeout", `"9999999h"`), `web.toml:9: process.stop_timeout: "9999999h" is too large (at most 2562047h47m16s)`},
		{"duration too large in ns", stop("stop_timeout", `"9223372036854775808ns"`), `web.toml:9: process.stop_timeout: "9223372036854775808ns" is too large (at most 2562047h47m16s)`},
		{"duration inf", stop("stop_timeout", `"inf"`), `web.toml:9: process.stop_timeout: "inf" is not a duration (use e.g. 10s or 1m30s)`},
		{"capability CAP_X", caps(`"CAP_NET_BIND_SERVICE"`), ""},
		{"capability lower case", caps(`"net_bind_service"`), ""},
		{"capability unknown with prefix", caps(`"CAP_X"`), `web.toml:15: security.capabilities[0]: "CAP_X" is not a Linux capability (use a name such as NET_BIND_SERVICE; see capabilities(7))`},
		{"capability unknown", caps(`"x"`), `web.toml:15: security.capabilities[0]: "x" is not a Linux capability (use a name such as NET_BIND_SERVICE; see capabilities(7))`},
		{"capability ALL", caps(`"ALL"`), `web.toml:15: security.capabilities[0]: "ALL" is not a Linux capability (use a name such as NET_BIND_SERVICE; see capabilities(7))`},
		{"capability twice", caps(`"CHOWN", "cap_chown"`), `web.toml:15: security.capabilities[1]: CHOWN is listed twice (keep one)`},
		{"signal SIGTERM", stop("stop_signal", `"SIGTERM"`), ""},
		{"signal term", stop("stop_signal", `"term"`), ""},
		{"signal 15 as string", stop("stop_signal", `"15"`), ""},
		{"signal 15 as number", stop("stop_signal", `15`), ""},
		{"signal unknown", stop("stop_signal", `"SIGFOO"`), `web.toml:9: process.stop_signal: "SIGFOO" is not a signal (use a name such as SIGTERM, SIGINT or SIGQUIT)`},
		{"signal number unknown", stop("stop_signal", `99`), `web.toml:9: process.stop_signal: "99" is not a signal number (use a name such as SIGTERM)`},
		{"signal SIGKILL refused", stop("stop_signal", `"SIGKILL"`), `web.toml:9: process.stop_signal: SIGKILL gives the service no chance to stop cleanly (use SIGTERM; safe-run sends SIGKILL itself after stop_timeout)`},
		{"signal 9 refused", stop("stop_signal", `9`), `web.toml:9: process.stop_signal: SIGKILL gives the service no chance to stop cleanly (use SIGTERM; safe-run sends SIGKILL itself after stop_timeout)`},
		{"signal SIGSTOP refused", stop("stop_signal", `"stop"`), `web.toml:9: process.stop_signal: SIGSTOP does not stop a service, it pauses it (use SIGTERM)`},
		{"signal bool", stop("stop_signal", `true`), `web.toml:9: process.stop_signal: true must be a string, e.g. "SIGTERM"`},
		{"mode 1777", mode(`"1777"`), ""},
		{"mode 0o700", mode(`"0o700"`), ""},
		{"mode integer", mode(`1777`), `web.toml:17: mounts[0].mode: 1777 is a bare number (use a string of octal digits, e.g. "1777")`},
		{"mode not octal", mode(`"999"`), `web.toml:17: mounts[0].mode: "999" is not an octal mode (use e.g. "1777" or "0755")`},
		{"mode too large", mode(`"17777"`), `web.toml:17: mounts[0].mode: "17777" is not an octal mode (use e.g. "1777" or "0755")`},
		{"mode zero", mode(`"0"`), `web.toml:17: mounts[0].mode: "0" gives no one access (use e.g. "0700" or "1777")`},
	})
}

func TestValidationErrors(t *testing.T) {
	sec := func(lines string) string { return with("\n[security]\n" + lines) }
	mount := func(lines string) string { return with("\n[[mounts]]\n" + lines) }
	runErrCases(t, []errCase{
		// version and name
		{"version missing", edit("version = 1\n", ""), `web.toml: version: missing (add version = 1 at the top of the file)`},
		{"version 2", edit("version = 1", "version = 2"), `web.toml:1: version: 2 is not supported (this safe-run reads manifest version 1)`},
		{"name missing", edit("name = \"web\"\n", ""), `web.toml: name: missing (add name = "web": lowercase letters, digits, '_', '.', '-')`},
		{"name upper case", edit(`name = "web"`, `name = "Web"`), `web.toml:2: name: "Web" is not a valid name (use 1-63 lowercase letters, digits, '_', '.', '-', starting with a letter or digit)`},
		{"name leading dash", edit(`name = "web"`, `name = "-web"`), `web.toml:2: name: "-web" is not a valid name (use 1-63 lowercase letters, digits, '_', '.', '-', starting with a letter or digit)`},
		{"name too long", edit(`name = "web"`, `name = "`+strings.Repeat("a", 64)+`"`), `web.toml:2: name: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" is not a valid name (use 1-63 lowercase letters, digits, '_', '.', '-', starting with a letter or digit)`},
		{"name 63", edit(`name = "web"`, `name = "`+strings.Repeat("a", 63)+`"`), ""},
		{"name slash", edit(`name = "web"`, `name = "a/b"`), `web.toml:2: name: "a/b" is not a valid name (use 1-63 lowercase letters, digits, '_', '.', '-', starting with a letter or digit)`},
		// image
		{"image missing", edit("[image]\nrootfs = \"rootfs\"\n", ""), `web.toml: image: no image source (set exactly one of image.rootfs, image.oci, image.archive or image.ref)`},
		{"image empty table", edit("rootfs = \"rootfs\"\n", ""), `web.toml:4: image: no image source (set exactly one of image.rootfs, image.oci, image.archive or image.ref)`},
		{"image two sources", edit(`rootfs = "rootfs"`, "rootfs = \"rootfs\"\narchive = \"web.tar\""), `web.toml:6: image.archive: image.rootfs and image.archive are both set (keep exactly one image source)`},
		// (image.oci, archive and ref in detail: image_test.go)
		{"image oci", edit(`rootfs = "rootfs"`, `oci = "layout:latest"`), ""},
		{"image archive", edit(`rootfs = "rootfs"`, `archive = "web.tar"`), ""},
		{"image ref", edit(`rootfs = "rootfs"`, `ref = "registry.example/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`), ""},
		{"image ref short digest", edit(`rootfs = "rootfs"`, `ref = "registry.example/web@sha256:0123"`), `web.toml:5: image.ref: "registry.example/web@sha256:0123" is not a registry reference (use "registry.example/web@sha256:<64 hex digits>")`},
		{"image ref with space", edit(`rootfs = "rootfs"`, `ref = "web latest"`), `web.toml:5: image.ref: "web latest" is not a registry reference (use "registry.example/web@sha256:<64 hex digits>")`},
		{"image ref climbing", edit(`rootfs = "rootfs"`, `ref = "127.0.0.1:5000/../../etc@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`), `web.toml:5: image.ref: "127.0.0.1:5000/../../etc@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" is not a registry reference (use "registry.example/web@sha256:<64 hex digits>")`},
		{"image ref nested", edit(`rootfs = "rootfs"`, `ref = "registry.example/team/web-app_1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`), ""},
		{"image ref flag", edit(`rootfs = "rootfs"`, `ref = "--privileged"`), `web.toml:5: image.ref: "--privileged" is not a registry reference (use "registry.example/web@sha256:<64 hex digits>")`},
		{"image ref flag with digest", edit(`rootfs = "rootfs"`, `ref = "-v/:/host@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`), `web.toml:5: image.ref: "-v/:/host@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" is not a registry reference (use "registry.example/web@sha256:<64 hex digits>")`},
		// process
		{"command missing", edit("command = [\"/bin/web\"]\n", ""), `web.toml:7: process.command: missing (a rootfs directory has no entrypoint: set command = ["/bin/server", "--flag"])`},
		{"command empty", edit(`command = ["/bin/web"]`, `command = []`), `web.toml:8: process.command: missing (a rootfs directory has no entrypoint: set command = ["/bin/server", "--flag"])`},
		{"command empty program", edit(`command = ["/bin/web"]`, `command = ["", "x"]`), `web.toml:8: process.command[0]: the program is empty (name the executable, e.g. "/bin/server")`},
		{"command NUL", edit(`command = ["/bin/web"]`, `command = ["/bin/web", "a\u0000b"]`), `web.toml:8: process.command[1]: contains a NUL byte (remove it)`},
		{"env key with =", proc(`env = { "A=B" = "x" }` + "\n"), `web.toml:9: process.env."A=B": "A=B" is not a valid variable name (no '=' and no control character: use letters, digits and '_', e.g. LOG_LEVEL)`},
		{"env key with ESC and newline", proc(`env = { "\u001b[2JX_PASSWORD\nt.toml: score 100/100" = "x" }` + "\n"), `web.toml:9: process.env."\x1b[2JX_PASSWORD\nt.toml: score 100/100": "\x1b[2JX_PASSWORD\nt.toml: score 100/100" is not a valid variable name (no '=' and no control character: use letters, digits and '_', e.g. LOG_LEVEL)`},
		{"env key with DEL", proc(`env = { "A\u007f" = "x" }` + "\n"), `web.toml:9: process.env."A\x7f": "A\x7f" is not a valid variable name (no '=' and no control character: use letters, digits and '_', e.g. LOG_LEVEL)`},
		{"env key with C1 CSI", proc(`env = { "A\u009b2J" = "x" }` + "\n"), `web.toml:9: process.env."A\u009b2J": "A\u009b2J" is not a valid variable name (no '=' and no control character: use letters, digits and '_', e.g. LOG_LEVEL)`},
		{"env empty key", proc(`env = { "" = "x" }` + "\n"), `web.toml:9: process.env."": "" is not a valid variable name (no '=' and no control character: use letters, digits and '_', e.g. LOG_LEVEL)`},
		{"env NUL value", proc(`env = { A = "x\u0000" }` + "\n"), `web.toml:9: process.env.A: value contains a NUL byte (remove it)`},
		{"user bad", proc(`user = "a b"` + "\n"), `web.toml:9: process.user: "a b" is not a user (use "uid[:gid]" such as "1000:1000", or a name from the image's /etc/passwd)`},
		{"user three parts", proc(`user = "1:2:3"` + "\n"), `web.toml:9: process.user: "1:2:3" is not a user (use "uid[:gid]" such as "1000:1000", or a name from the image's /etc/passwd)`},
		{"user uid too large", proc(`user = "70000"` + "\n"), `web.toml:9: process.user: 70000 is outside the container's ids 0-65535 (the user namespace maps 65536 ids)`},
		{"user gid too large", proc(`user = "1000:70000"` + "\n"), `web.toml:9: process.user: 70000 is outside the container's ids 0-65535 (the user namespace maps 65536 ids)`},
		{"user name", proc(`user = "app:app"` + "\n"), ""},
		{"workdir relative", proc(`workdir = "srv"` + "\n"), `web.toml:9: process.workdir: "srv" is relative (use an absolute path inside the container, e.g. "/srv")`},
		{"restart bad", proc(`restart = "unless-stopped"` + "\n"), `web.toml:9: process.restart: "unless-stopped" is not a restart policy (use "no", "on-failure" or "always")`},
		// security
		{"seccomp empty", sec(`seccomp = ""` + "\n"), `web.toml:15: security.seccomp: is empty (use "default", "strict", a path to a profile.json, or "unconfined" with [insecure])`},
		{"seccomp bad", sec(`seccomp = "docker"` + "\n"), `web.toml:15: security.seccomp: "docker" is not a profile (use "default", "strict", a path to a .json profile in docker's format, or "unconfined")`},
		{"seccomp json", sec(`seccomp = "profile.json"` + "\n"), ""},
		{"apparmor empty", sec(`apparmor = ""` + "\n"), `web.toml:15: security.apparmor: "" is not a profile (use "generated", the name of a loaded profile, or "unconfined" with [insecure])`},
		{"apparmor bad", sec(`apparmor = "my profile"` + "\n"), `web.toml:15: security.apparmor: "my profile" is not a profile (use "generated", the name of a loaded profile, or "unconfined" with [insecure])`},
		{"apparmor mode", sec(`apparmor_mode = "audit"` + "\n"), `web.toml:15: security.apparmor_mode: "audit" is not a mode (use "enforce", or "complain" while staging a new service)`},
		{"apparmor required and unconfined", sec("apparmor = \"unconfined\"\napparmor_required = true\n"), `web.toml:16: security.apparmor_required: contradicts apparmor = "unconfined" (drop one of them)`},
		{"landlock unknown", sec("landlock = \"strict\"\n"), `web.toml:15: security.landlock: "strict" is not a Landlock setting (use "generated", or "off" with [insecure] allow = ["landlock_off"])`},
		{"landlock required and off", sec("landlock = \"off\"\nlandlock_required = true\n"), `web.toml:16: security.landlock_required: contradicts landlock = "off" (drop one of them)`},
		{"landlock required without init", proc("init = false\n") + "\n[security]\nlandlock_required = true\n", ""},
		{"landlock required with new privileges", sec("landlock_required = true\nno_new_privileges = false\n"), `web.toml:15: security.landlock_required: needs no_new_privileges = true: the kernel applies Landlock only with it (drop one of them)`},
		{"landlock bind port 0", sec("landlock_bind = [8080, 0]\n"), `web.toml:15: security.landlock_bind[1]: 0 is not a TCP port (use 1-65535)`},
		{"landlock bind twice", sec("landlock_bind = [8080, 8080]\n"), `web.toml:15: security.landlock_bind[1]: 8080 is listed twice (keep one)`},
		// resources
		{"reservation above limit", with(`memory_reservation = "512M"` + "\n"), `web.toml:13: resources.memory_reservation: 512M is above the hard limit memory = 256M (a soft limit must be lower)`},
		{"cpus too small", edit("cpus = 0.5", "cpus = 0.001"), `web.toml:12: resources.cpus: 0.001 is too small (use at least 0.01, e.g. 0.5 for half a CPU)`},
		{"cpus negative", edit("cpus = 0.5", "cpus = -1"), `web.toml:12: resources.cpus: -1 is too small (use at least 0.01, e.g. 0.5 for half a CPU)`},
		{"cpus too many", edit("cpus = 0.5", "cpus = 2000"), `web.toml:12: resources.cpus: 2000 is more CPUs than any host has (use e.g. 2.0)`},
		{"cpus inf", edit("cpus = 0.5", "cpus = inf"), `web.toml:12: resources.cpus: +Inf is more CPUs than any host has (use e.g. 2.0)`},
		{"cpus nan", edit("cpus = 0.5", "cpus = nan"), `web.toml:12: resources.cpus: nan is not a number of CPUs (use e.g. 0.5 for half a CPU)`},
		{"cpus integer", edit("cpus = 0.5", "cpus = 2"), ""},
		{"pids zero", with("pids = 0\n"), `web.toml:13: resources.pids: 0 allows no process at all (use e.g. 256; the default is 1024)`},
		{"pids negative", with("pids = -5\n"), `web.toml:13: resources.pids: -5 is not a number of processes: there is no unlimited (use e.g. 256; the default is 1024)`},
		{"pids -1", with("pids = -1\n"), `web.toml:13: resources.pids: -1 is not a number of processes: there is no unlimited (use e.g. 256; the default is 1024)`},
		{"pids one beside init", with("pids = 1\n"), `web.toml:13: resources.pids: 1 leaves no process for the service beside its init (use at least 2, or set process.init = false)`},
		// mounts
		{"mount type missing", mount("target = \"/data\"\n"), `web.toml:14: mounts[0].type: missing (use "tmpfs", "volume" or "bind")`},
		{"mount type bad", mount("type = \"overlay\"\ntarget = \"/data\"\n"), `web.toml:15: mounts[0].type: "overlay" is not a mount type (use "tmpfs", "volume" or "bind")`},
		{"mount target missing", mount("type = \"tmpfs\"\n"), `web.toml:14: mounts[0].target: missing (the absolute path inside the container, e.g. "/tmp")`},
		{"mount target relative", mount("type = \"tmpfs\"\ntarget = \"tmp\"\n"), `web.toml:16: mounts[0].target: "tmp" is relative (use an absolute path inside the container)`},
		{"mount target unclean", mount("type = \"tmpfs\"\ntarget = \"/var//tmp/\"\n"), `web.toml:16: mounts[0].target: "/var//tmp/" is not a clean path (write "/var/tmp")`},
		{"mount target dotdot", mount("type = \"tmpfs\"\ntarget = \"/var/../tmp\"\n"), `web.toml:16: mounts[0].target: "/var/../tmp" is not a clean path (write "/tmp")`},
		{"tmpfs size zero", mount("type = \"tmpfs\"\ntarget = \"/tmp\"\nsize = \"0\"\n"), `web.toml:17: mounts[0].size: 0 sets no limit (use e.g. "64M", or remove the key for the default 64M)`},
		{"pids one without init", proc("init = false\n") + "pids = 1\n", ""},
		{"mount target root", mount("type = \"tmpfs\"\ntarget = \"/\"\n"), `web.toml:16: mounts[0].target: cannot replace the root filesystem (mount below it, e.g. "/data")`},
		{"mount target /proc", mount("type = \"tmpfs\"\ntarget = \"/proc\"\n"), `web.toml:16: mounts[0].target: /proc is set up by safe-run itself (choose another target)`},
		{"mount target below /sys", mount("type = \"tmpfs\"\ntarget = \"/sys/fs\"\n"), `web.toml:16: mounts[0].target: /sys is set up by safe-run itself (choose another target)`},
		{"mount target /dev/shm", mount("type = \"tmpfs\"\ntarget = \"/dev/shm\"\n"), `web.toml:16: mounts[0].target: /dev is set up by safe-run itself (choose another target)`},
		{"mount target /run/secrets", mount("type = \"tmpfs\"\ntarget = \"/run/secrets\"\n"), `web.toml:16: mounts[0].target: /run/secrets is set up by safe-run itself (choose another target)`},
		{"mount target /run", mount("type = \"tmpfs\"\ntarget = \"/run\"\n"), ""},
		{"mount target /procfs", mount("type = \"tmpfs\"\ntarget = \"/procfs\"\n"), ""},
		{"mount target twice", mount("type = \"tmpfs\"\ntarget = \"/tmp\"\n\n[[mounts]]\ntype = \"volume\"\nsource = \"data\"\ntarget = \"/tmp\"\n"), `web.toml:21: mounts[1].target: /tmp is already the target of mounts[0] (each target once)`},
		{"tmpfs source", mount("type = \"tmpfs\"\ntarget = \"/tmp\"\nsource = \"x\"\n"), `web.toml:17: mounts[0].source: a tmpfs has no source (remove it)`},
		{"tmpfs read_only", mount("type = \"tmpfs\"\ntarget = \"/tmp\"\nread_only = true\n"), `web.toml:17: mounts[0].read_only: not used for tmpfs (an empty read-only tmpfs is useless; use options = ["ro"] if you mean it)`},
		{"tmpfs options", mount("type = \"tmpfs\"\ntarget = \"/tmp\"\noptions = [\"ro\", \"suid\", \"uid=1000\", \"size=1G\"]\n"), "web.toml:17: mounts[0].options[1]: \"suid\" is not a tmpfs option safe-run accepts (use ro, rw, exec, noexec, uid=N, gid=N, nr_inodes=N; nosuid and nodev are always set)\nweb.toml:17: mounts[0].options[3]: \"size=1G\" is not a tmpfs option safe-run accepts (use ro, rw, exec, noexec, uid=N, gid=N, nr_inodes=N; nosuid and nodev are always set)"},
		{"volume size mode options", mount("type = \"volume\"\nsource = \"data\"\ntarget = \"/data\"\nsize = \"1G\"\nmode = \"0700\"\noptions = [\"ro\"]\n"), "web.toml:18: mounts[0].size: applies only to tmpfs mounts (remove it)\nweb.toml:19: mounts[0].mode: applies only to tmpfs mounts (remove it)\nweb.toml:20: mounts[0].options: applies only to tmpfs mounts (remove it)"},
		{"volume source missing", mount("type = \"volume\"\ntarget = \"/data\"\n"), `web.toml:14: mounts[0].source: missing (name the volume, e.g. source = "data")`},
		{"volume source path", mount("type = \"volume\"\nsource = \"/srv/data\"\ntarget = \"/data\"\n"), `web.toml:16: mounts[0].source: "/srv/data" is not a volume name (letters, digits, '_', '.', '-'; for a host path use type = "bind")`},
		{"volume source dotdot", mount("type = \"volume\"\nsource = \"..\"\ntarget = \"/data\"\n"), `web.toml:16: mounts[0].source: ".." is not a volume name (letters, digits, '_', '.', '-'; for a host path use type = "bind")`},
		{"bind source missing", mount("type = \"bind\"\ntarget = \"/data\"\n"), `web.toml:14: mounts[0].source: missing (the host path to bind, e.g. source = "./config")`},
		{"bind size", mount("type = \"bind\"\nsource = \"data\"\ntarget = \"/data\"\nsize = \"1G\"\n"), `web.toml:18: mounts[0].size: applies only to tmpfs mounts (remove it)`},
		// network and namespaces
		{"network bridge", with("\n[network]\nmode = \"bridge\"\n"), ""},
		{"network bad mode", with("\n[network]\nmode = \"nat\"\n"), `web.toml:15: network.mode: "nat" is not a network mode (use "none", "bridge", or "host" with [insecure] allow = ["host_network"])`},
		{"network ports without bridge", with("\n[network]\nports = [\"8080:80\"]\n"), `web.toml:15: network.ports: published ports need mode = "bridge" (set it, or remove ports)`},
		{"network bad port", with("\n[network]\nmode = \"bridge\"\nports = [\"8080:80\", \"http\"]\n"), `web.toml:16: network.ports[1]: "http" is not a port mapping (use "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]", e.g. "8080:80" or "127.0.0.1:8443:443/tcp")`},
		{"namespaces bad", with("\n[namespaces]\npid = \"shared\"\nipc = \"private\"\nuts = \"\"\n"), `web.toml:15: namespaces.pid: "shared" is not a namespace mode (use "private", the default, or "host" with [insecure])`},
		// secrets
		{"secret bad name", with("\n[secrets]\n\"../x\" = { file = \"/etc/x\" }\n"), `web.toml:15: secrets."../x": "../x" is not a secret name (it becomes a file name under /run/secrets: letters, digits, '_', '.', '-')`},
		{"secret hidden name", with("\n[secrets]\n\".x\" = { file = \"/etc/x\" }\n"), `web.toml:15: secrets.".x": ".x" is not a secret name (it becomes a file name under /run/secrets: letters, digits, '_', '.', '-')`},
		{"secret no file", with("\n[secrets]\ndb = {}\n"), `web.toml:15: secrets.db.file: missing (the host file holding the secret, e.g. secrets.db = { file = "/etc/safe-run/secrets/db" })`},
		{"secret relative file", with("\n[secrets]\ndb = { file = \"db.txt\" }\n"), ""},
		// labels
		{"label empty key", with("\n[labels]\n\"\" = \"x\"\n"), `web.toml:15: labels."": a label has an empty key (name it, e.g. "org.opencontainers.image.source")`},
		{"label blank key", with("\n[labels]\na = \"1\"\n\" \" = \"x\"\n"), `web.toml:16: labels." ": a label has an empty key (name it, e.g. "org.opencontainers.image.source")`},
		{"label key with newline", with("\n[labels]\n\"a\\nb\" = \"x\"\n"), `web.toml:15: labels."a\nb": "a\nb" contains a control character (name labels with letters, digits, '.', '-' and '_', e.g. "org.opencontainers.image.source")`},
		{"label number", with("\n[labels]\nversion = 2\n"), `web.toml:15: labels.version: 2 must be a string (put it in double quotes)`},
		{"label reserved", with("\n[labels]\n\"run.safe-run.manifest.digest\" = \"sha256:fake\"\n"), `web.toml:15: labels."run.safe-run.manifest.digest": run.safe-run.* is reserved for what safe-run records about the service (choose another key)`},
		{"insecure item twice", with("\n[insecure]\nreason = \"r\"\nallow = [\"host_network\", \"host_network\"]\n"), `web.toml:16: insecure.allow[1]: "host_network" is listed twice (keep one)`},
		// insecure
		{"insecure unknown item", with("\n[insecure]\nreason = \"r\"\nallow = [\"host_network\", \"privileged\"]\n"), `web.toml:16: insecure.allow[1]: "privileged" is not an [insecure] allow item (use one of: host_network, host_pid, host_ipc, host_uts, dangerous_capabilities, new_privileges, writable_rootfs, no_resource_limits, seccomp_unconfined, apparmor_unconfined, sensitive_mounts, unpinned_image, insecure_registry, setuid_binaries, landlock_off)`},
		{"insecure reason missing", with("\n[insecure]\nallow = [\"host_network\"]\n"), `web.toml:14: insecure.reason: missing (say in one sentence why this service needs what [insecure] allows)`},
		{"insecure reason blank", with("\n[insecure]\nreason = \"  \"\nallow = [\"host_network\"]\n"), `web.toml:15: insecure.reason: missing (say in one sentence why this service needs what [insecure] allows)`},
		{"insecure reason alone", with("\n[insecure]\nreason = \"nothing\"\n"), ""},
	})
}

// TestManyErrors: every problem of a file is reported at once, sorted by
// line, one per key, with missing keys (no line) last.
func TestManyErrors(t *testing.T) {
	text := `name = "Web"

[image]
rootfs = "rootfs"
ref = "x"

[process]
command = ["/bin/web"]
stop_timeout = 10
stop_signal = "SIGKILL"
user = "a b"

[resources]
memory = "12X"
cpus = "1"
pids = 0

[[mounts]]
type = "tmpfs"
target = "/proc"
mode = "999"

[[mounts]]
type = "bind"
target = "tmp"

[network]
mode = "nat"

[insecure]
allow = ["everything"]
`
	want := `web.toml:1: name: "Web" is not a valid name (use 1-63 lowercase letters, digits, '_', '.', '-', starting with a letter or digit)
web.toml:5: image.ref: image.rootfs and image.ref are both set (keep exactly one image source)
web.toml:9: process.stop_timeout: 10 is a bare number (use a string with a unit, e.g. "10s")
web.toml:10: process.stop_signal: SIGKILL gives the service no chance to stop cleanly (use SIGTERM; safe-run sends SIGKILL itself after stop_timeout)
web.toml:11: process.user: "a b" is not a user (use "uid[:gid]" such as "1000:1000", or a name from the image's /etc/passwd)
web.toml:14: resources.memory: "12X" is not a size (use e.g. 512M)
web.toml:15: resources.cpus: "1" must be a number (without quotes, e.g. 1.5)
web.toml:16: resources.pids: 0 allows no process at all (use e.g. 256; the default is 1024)
web.toml:20: mounts[0].target: /proc is set up by safe-run itself (choose another target)
web.toml:21: mounts[0].mode: "999" is not an octal mode (use e.g. "1777" or "0755")
web.toml:23: mounts[1].source: missing (the host path to bind, e.g. source = "./config")
web.toml:25: mounts[1].target: "tmp" is relative (use an absolute path inside the container)
web.toml:28: network.mode: "nat" is not a network mode (use "none", "bridge", or "host" with [insecure] allow = ["host_network"])
web.toml:30: insecure.reason: missing (say in one sentence why this service needs what [insecure] allows)
web.toml:31: insecure.allow[0]: "everything" is not an [insecure] allow item (use one of: host_network, host_pid, host_ipc, host_uts, dangerous_capabilities, new_privileges, writable_rootfs, no_resource_limits, seccomp_unconfined, apparmor_unconfined, sensitive_mounts, unpinned_image, insecure_registry, setuid_binaries, landlock_off)
web.toml: version: missing (add version = 1 at the top of the file)`
	runErrCases(t, []errCase{{"all at once", text, want}})
}

// TestLines pins the line of keys in every TOML form the index must follow.
func TestLines(t *testing.T) {
	runErrCases(t, []errCase{
		{"mounts entries each on their own line", with(`
[[mounts]]
type = "tmpfs"
target = "/tmp"

[[mounts]]
type = "tmpfs"
target = "/tmp"

[[mounts]]
type = "tmp"
target = "/var/tmp"
`), "web.toml:20: mounts[1].target: /tmp is already the target of mounts[0] (each target once)\nweb.toml:23: mounts[2].type: \"tmp\" is not a mount type (use \"tmpfs\", \"volume\" or \"bind\")"},
		{"inline table", with(`
[secrets]
a = { file = "/etc/a" }
b = { fil = "/etc/b" }
`), "web.toml:16: secrets.b.fil: unknown key (did you mean file?)\nweb.toml:16: secrets.b.file: missing (the host file holding the secret, e.g. secrets.b = { file = \"/etc/safe-run/secrets/b\" })"},
		{"array of inline tables", edit("version = 1\n", `version = 1
mounts = [
  { type = "tmpfs", target = "/tmp" },
  { type = "tmpfs",
    target = "tmp" },
]
`), `web.toml:5: mounts[1].target: "tmp" is relative (use an absolute path inside the container)`},
		{"multi-line array", edit(`command = ["/bin/web"]`, `command = [
  "/bin/web",
  # a comment with "quotes" and ] brackets
  "--port",
  8080,
]`), `web.toml:12: process.command[2]: 8080 must be a string (put it in double quotes)`},
		{"dotted keys", edit("[resources]\n", "[resources]\nlimits.cpu = 1\n"), `web.toml:11: resources.limits: unknown key (keys of resources are: memory, memory_reservation, cpus, pids)`},
		{"dotted keys at the top", edit("[image]\n", "process.user = \"a b\"\n[image]\n"), `web.toml:4: process.user: "a b" is not a user (use "uid[:gid]" such as "1000:1000", or a name from the image's /etc/passwd)`},
		{"dotted table header", with("\n[security]\n\n[process.env]\nA = 1\n"), `web.toml:17: process.env.A: 1 must be a string (put it in double quotes)`},
		{"quoted keys", with("\n[\"labels\"]\n\"org.example.a\" = \"x\"\n'org.example.b' = 2\n"), `web.toml:16: labels."org.example.b": 2 must be a string (put it in double quotes)`},
		{"quoted key in a dotted key", edit("[image]\n", "\"labels\".'a b' = 1\n[image]\n"), `web.toml:4: labels."a b": 1 must be a string (put it in double quotes)`},
		{"multi-line strings before a key", with(`
[labels]
a = """
one
two"""
b = '''
three
'''
c = 3
`), `web.toml:21: labels.c: 3 must be a string (put it in double quotes)`},
		{"line-ending backslash", with(`
[labels]
a = """\
  one \
  two"""
c = 3
`), `web.toml:18: labels.c: 3 must be a string (put it in double quotes)`},
		{"multi-line strings ending in quotes", with("\n[labels]\na = \"\"\"say \"hi\"\"\"\"\"\nb = '''it's'''''\nc = 3\n"), `web.toml:17: labels.c: 3 must be a string (put it in double quotes)`},
		{"CRLF", "version = 1\r\nname = \"web\"\r\n\r\n[image]\r\nrootfs = \"rootfs\"\r\n\r\n[process]\r\ncommand = [\"/bin/web\"]\r\nuser = 1\r\n", `web.toml:9: process.user: 1 must be a string (put it in double quotes)`},
		{"comments and blank lines", edit("[resources]\n", "# [process]\n# user = 1\n\n[resources] # limits\n\n\n# next\n") + "pids = \"x\" # comment\n", `web.toml:19: resources.pids: "x" must be a whole number (without quotes)`},
		{"header with spaces", with("\n[ network ]\nmode = 1\n"), `web.toml:15: network.mode: 1 must be a string (put it in double quotes)`},
		{"table after array of tables", with("\n[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/tmp\"\n\n[mounts.x]\ny = 1\n"), `web.toml:18: mounts[0].x: unknown key (keys of mounts[0] are: type, target, source, read_only, size, mode, options)`},
	})
}
