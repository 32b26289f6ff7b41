// Command confinement is the example service: it reports, from inside the
// container, the confinement it runs under. `make run` starts it with
// safe-run, and the integration tests use its -json output as their probe.
//
// It is built static (CGO_ENABLED=0) into the example image.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Report is what the probe found. Field names are the JSON the tests read.
type Report struct {
	UID, GID      int
	UIDMap        string
	CapEff        string
	CapPrm        string
	CapBnd        string
	CapInh        string
	CapAmb        string
	NoNewPrivs    string
	Seccomp       string
	AppArmor      string
	Hostname      string
	RootWritable  bool
	Interfaces    []string
	OpenFDs       []string
	MemoryLimit   string
	MemorySoft    string
	CPUQuota      string
	PidsLimit     string
	CgroupVersion int
	PID1          string
}

func main() {
	asJSON := flag.Bool("json", false, "print the report as JSON")
	abstract := flag.String("connect-abstract", "", "only connect to the abstract unix socket @NAME and say whether it could (Landlock's scoping, ABI 6, refuses one made outside the service)")
	listen := flag.String("listen-abstract", "", "only listen on the abstract unix socket @NAME, say so, and accept until killed (the tests' host side of -connect-abstract)")
	passed := flag.String("read-passed", "", "only connect to the unix socket SOCKET (of SOCKET:FILE), take the directory descriptor it sends, and print FILE read through /proc/self/fd/N/FILE or why not")
	serve := flag.String("serve-dir", "", "only listen on the unix socket SOCKET (of SOCKET:DIR), open to anyone, and send every client a descriptor of DIR (SCM_RIGHTS) until killed (the host side of -read-passed)")
	ready := flag.Duration("notify", -1, "after printing, wait this long, then tell $NOTIFY_SOCKET READY=1 (sd_notify), and wait as long again")
	flag.Parse()
	if *listen != "" {
		listenAbstract(*listen)
		return
	}
	if *passed != "" {
		readPassed(*passed)
		return
	}
	if *serve != "" {
		serveDir(*serve)
		return
	}
	if *abstract != "" {
		c, err := net.Dial("unix", "@"+*abstract)
		if err != nil {
			fmt.Printf("abstract @%s: %v\n", *abstract, err)
			os.Exit(1)
		}
		c.Close()
		fmt.Printf("abstract @%s: connected\n", *abstract)
		return
	}
	r := probe()
	defer notifyReady(*ready)
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
	fmt.Fprintln(w, "confinement, as seen from inside the container:")
	row("user", fmt.Sprintf("uid %d gid %d", r.UID, r.GID))
	row("uid_map", r.UIDMap)
	row("capabilities", fmt.Sprintf("effective %s, bounding %s, inheritable %s, ambient %s", r.CapEff, r.CapBnd, r.CapInh, r.CapAmb))
	row("no_new_privs", r.NoNewPrivs)
	row("seccomp", map[string]string{"0": "disabled", "1": "strict", "2": "filter"}[r.Seccomp]+" (mode "+r.Seccomp+")")
	row("apparmor", r.AppArmor)
	row("root filesystem", map[bool]string{true: "WRITABLE", false: "read-only"}[r.RootWritable])
	row("network", strings.Join(r.Interfaces, ", "))
	row("memory limit", r.MemoryLimit+" (soft "+r.MemorySoft+")")
	row("cpu quota", r.CPUQuota)
	row("pids limit", r.PidsLimit)
	row("cgroup", fmt.Sprintf("v%d", r.CgroupVersion))
	row("PID 1", r.PID1)
	row("open fds", strings.Join(r.OpenFDs, " "))
	w.Flush()
}

// listenAbstract is a host process's abstract socket, which no file
// permission guards: anyone in the network namespace may connect.
func listenAbstract(name string) {
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("listening @%s\n", name)
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}

// readPassed plays a service given a descriptor of a directory outside
// its root (over a unix socket in a bind, as SCM_RIGHTS): the magic link
// /proc/self/fd/N leads there, and Landlock judges what is opened beneath
// it by its real ancestors, not by the path.
func readPassed(arg string) {
	sock, file, _ := strings.Cut(arg, ":")
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Println("connect:", err)
		os.Exit(1)
	}
	oob := make([]byte, syscall.CmsgSpace(4))
	_, oobn, _, _, err := c.(*net.UnixConn).ReadMsgUnix(make([]byte, 1), oob)
	var fds []int
	if err == nil {
		var msgs []syscall.SocketControlMessage
		if msgs, err = syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
			fds, err = syscall.ParseUnixRights(&msgs[0])
		}
	}
	if err != nil || len(fds) != 1 {
		fmt.Println("no descriptor passed:", err)
		os.Exit(1)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d/%s", fds[0], file))
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err // the descriptor's number aside
	}
	if err != nil {
		fmt.Printf("read %s beneath the passed directory: %v\n", file, err)
		os.Exit(1)
	}
	fmt.Printf("read %q\n", b)
}

// serveDir is the other end of readPassed: a host process handing out a
// directory of the host's.
func serveDir(arg string) {
	sock, dir, _ := strings.Cut(arg, ":")
	d, err := os.Open(dir)
	if err == nil {
		var ln *net.UnixListener
		if ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"}); err == nil {
			if err = os.Chmod(sock, 0o777); err == nil {
				fmt.Printf("serving %s on %s\n", dir, sock)
				for {
					c, err := ln.AcceptUnix()
					if err != nil {
						break
					}
					_, _, _ = c.WriteMsgUnix([]byte{0}, syscall.UnixRights(int(d.Fd())), nil)
					c.Close()
				}
			}
		}
	}
	fmt.Println(err)
	os.Exit(1)
}

// notifyReady plays a service that speaks sd_notify itself. It also
// tries MAINPID, which safe-run must not relay.
func notifyReady(after time.Duration) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if after < 0 || sock == "" {
		return
	}
	time.Sleep(after)
	c, err := net.Dial("unixgram", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
		os.Exit(1)
	}
	fmt.Fprintf(c, "READY=1\nSTATUS=confined\nMAINPID=%d", os.Getpid())
	c.Close()
	time.Sleep(after)
}

func probe() Report {
	r := Report{UID: os.Getuid(), GID: os.Getgid()}
	// First, before the probe opens anything of its own. Left out: the
	// directory being read, and the cgroup CPU files the Go runtime keeps
	// open to size GOMAXPROCS (Go 1.25+).
	entries, _ := os.ReadDir("/proc/self/fd")
	self, _ := os.Readlink("/proc/self/fd")
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && target != self && !strings.HasPrefix(target, "/sys/fs/cgroup/") {
			r.OpenFDs = append(r.OpenFDs, e.Name()+"="+target)
		}
	}
	r.UIDMap = strings.Join(strings.Fields(read("/proc/self/uid_map")), " ")
	status := read("/proc/self/status")
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "CapEff":
			r.CapEff = v
		case "CapPrm":
			r.CapPrm = v
		case "CapBnd":
			r.CapBnd = v
		case "CapInh":
			r.CapInh = v
		case "CapAmb":
			r.CapAmb = v
		case "NoNewPrivs":
			r.NoNewPrivs = v
		case "Seccomp":
			r.Seccomp = v
		}
	}
	r.AppArmor = "none (no AppArmor in this kernel)"
	if b, err := os.ReadFile("/proc/self/attr/current"); err == nil {
		r.AppArmor = strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
	}
	r.Hostname, _ = os.Hostname()
	if f, err := os.CreateTemp("/", ".probe"); err == nil {
		r.RootWritable = true
		f.Close()
		os.Remove(f.Name())
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		r.Interfaces = append(r.Interfaces, i.Name)
	}
	sort.Slice(r.OpenFDs, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.Split(r.OpenFDs[i], "=")[0])
		b, _ := strconv.Atoi(strings.Split(r.OpenFDs[j], "=")[0])
		return a < b
	})
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		r.CgroupVersion = 2
		r.MemoryLimit = read("/sys/fs/cgroup/memory.max")
		r.MemorySoft = read("/sys/fs/cgroup/memory.low")
		r.CPUQuota = read("/sys/fs/cgroup/cpu.max")
		r.PidsLimit = read("/sys/fs/cgroup/pids.max")
	} else {
		r.CgroupVersion = 1
		r.MemoryLimit = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
		r.MemorySoft = read("/sys/fs/cgroup/memory/memory.soft_limit_in_bytes")
		r.CPUQuota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") + " " + read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
		r.PidsLimit = read("/sys/fs/cgroup/pids/pids.max")
	}
	r.PID1 = strings.ReplaceAll(strings.TrimRight(read("/proc/1/cmdline"), "\x00"), "\x00", " ")
	return r
}

func read(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return strings.TrimSpace(string(data))
}
