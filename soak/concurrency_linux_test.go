package soak_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestConcurrentStarts: many services started at the same moment, all on
// one bridge, on this 2-core host: all run, each on an id range and an
// address of its own; then all stopped at once, and all started again at
// once (restarts: their ids are recorded). The long pass checks start
// p99 <= 10x p50 and that no start waits over a second on any lock;
// every pass reports the waits.
func TestConcurrentStarts(t *testing.T) {
	setup(t)
	n := env.lvl.concurrent
	bridge := name("cc")
	manifests := map[string]string{}
	for i := range n {
		svc := name(fmt.Sprintf("cc%02d", i))
		manifests[svc] = root.manifest(t, svc, "echo up; while :; do sleep 1; done", bridged(t, svc, bridge, 0))
	}
	first := concurrentRound(t, "first starts", manifests)
	again := concurrentRound(t, "restarts", manifests)
	left := assertNoLeaks(t, "concurrent starts")
	record("| %d services started at once, one bridge, twice | %d | %d | all up, %d distinct id ranges and addresses; start p50 %s, p90 %s, p99 %s (%.1fx p50); restarts p50 %s, p99 %s (%.1fx) |",
		n, 2*n, left, first.distinct, ms(first.p50), ms(first.p90), ms(first.p99), float64(first.p99)/float64(max(first.p50, 1)),
		ms(again.p50), ms(again.p99), float64(again.p99)/float64(max(again.p50, 1)))
	record("| lock waits of those starts (longest) | %d | - | first starts: %s; restarts: %s |", 2*n, strings.Join(first.maxima, ", "), strings.Join(again.maxima, ", "))
}

// roundFigures are what one round of concurrent starts measured.
type roundFigures struct {
	distinct           int // id ranges and addresses, the fewer
	p50, p90, p99, top time.Duration
	maxima             []string // the longest wait of each lock kind
}

// concurrentRound starts the services of manifests (name: path) at the
// same moment, checks each runs on an id range and address of its own,
// stops them all at once, and reads the lock waits they logged.
func concurrentRound(t *testing.T, round string, manifests map[string]string) roundFigures {
	t.Helper()
	gate := make(chan struct{})
	type started struct {
		svc  string
		took time.Duration
		cmd  *exec.Cmd
		err  error
		out  *testenv.Buffer
	}
	var all []*started
	var wg sync.WaitGroup
	for svc, manifest := range manifests {
		s := &started{svc: svc, out: &testenv.Buffer{}}
		all = append(all, s)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			// --debug: each start logs how long it waited on each
			// lock (see lockWaits).
			c := root.cmd(ctx, "-q", "--debug", manifest)
			c.Stderr = s.out
			out, _ := c.StdoutPipe()
			s.cmd = c
			<-gate
			t0 := time.Now()
			if s.err = c.Start(); s.err != nil {
				cancel()
				return
			}
			l, err := bufio.NewReader(out).ReadString('\n')
			s.took = time.Since(t0)
			if l != "up\n" {
				if err == nil {
					err = errors.New(`not "up"`)
				}
				s.err = fmt.Errorf("%s: first line %q: %w", svc, l, err)
			}
			drain(out)
			t.Cleanup(cancel)
		})
	}
	close(gate)
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range all {
			if s.cmd != nil && s.cmd.Process != nil {
				s.cmd.Process.Kill()
				s.cmd.Wait()
			}
		}
	})
	var took []time.Duration
	ranges, addrs := map[string]string{}, map[string]string{}
	for _, s := range all {
		if s.err != nil {
			t.Errorf("%s: %v\n%s", round, s.err, s.out)
			continue
		}
		took = append(took, s.took)
		st, err := status(root, s.svc)
		for deadline := time.Now().Add(30 * time.Second); (err != nil || st.Address == "") && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			st, err = status(root, s.svc)
		}
		if err != nil {
			t.Errorf("%s: %s: status: %v", round, s.svc, err)
			continue
		}
		_, host, _ := strings.Cut(st.UserNS, " -> ")
		if other, ok := ranges[host]; ok || host == "" {
			t.Errorf("%s: %s and %s share the id range %q", round, s.svc, other, st.UserNS)
		}
		ranges[host] = s.svc
		if other, ok := addrs[st.Address]; ok || st.Address == "" {
			t.Errorf("%s: %s and %s share the address %q", round, s.svc, other, st.Address)
		}
		addrs[st.Address] = s.svc
	}
	// Stop them all at once too.
	var stops sync.WaitGroup
	for _, s := range all {
		if s.cmd == nil || s.cmd.Process == nil {
			continue
		}
		stops.Go(func() {
			s.cmd.Process.Signal(syscall.SIGTERM)
			if err := s.cmd.Wait(); exitCode(err) != 143 && exitCode(err) != 0 {
				t.Errorf("%s: %s stopped with exit %d\n%s", round, s.svc, exitCode(err), s.out)
			}
		})
	}
	stops.Wait()
	f := roundFigures{distinct: min(len(ranges), len(addrs))}
	f.p50, f.p90, f.p99, f.top = percentiles(took)
	t.Logf("%s: %d services at once: %d up, %d id ranges, %d addresses; start p50 %s p90 %s p99 %s max %s (p99/p50 %.1f)",
		round, len(manifests), len(took), len(ranges), len(addrs), ms(f.p50), ms(f.p90), ms(f.p99), ms(f.top), float64(f.p99)/float64(max(f.p50, 1)))
	if env.lvl.name == "long" && f.p99 > 10*f.p50 {
		t.Errorf("%s: start p99 %s is over 10x p50 %s", round, ms(f.p99), ms(f.p50))
	}
	// Lock waits: a name's lock must not wait at all (every name here is
	// different), nor the ids' (each range is a file of its own, claimed
	// by a link: plan/ids.go; only the first start after an upgrade
	// waits, to move ids.json's records into it). The network's locks
	// are taken shared by every attach, so an attach waits only for the bridge's making (by its first member) and
	// a stop only for its deletion (by its last): each lease is a file of
	// its own, claimed by a link (network/state_linux.go), and a start's
	// firewall chains go in a netlink batch of its own
	// (network/nft_linux.go), where the kernel's commit of another's is
	// all it can wait for.
	waits := map[string][]time.Duration{}
	for _, s := range all {
		for k, ds := range lockWaits(s.out.String()) {
			waits[k] = append(waits[k], ds...)
		}
	}
	var summary []string
	for _, k := range lockKinds {
		w50, _, w99, wmax := percentiles(waits[k.key])
		summary = append(summary, fmt.Sprintf("%s p50 %s, p99 %s, max %s (%d)", k.label, ms(w50), ms(w99), ms(wmax), len(waits[k.key])))
		f.maxima = append(f.maxima, fmt.Sprintf("%s %s", k.label, ms(wmax)))
		if len(waits[k.key]) != len(took) {
			t.Errorf("%s: %d of %d starts logged their %s", round, len(waits[k.key]), len(took), k.label)
		}
		// Only the long pass judges time (on a quiet machine): a lock
		// that waits over a second serialises
		// starts that share nothing.
		if env.lvl.name == "long" && wmax > time.Second {
			t.Errorf("%s: %s: a start waited %s", round, k.label, ms(wmax))
		}
		// The ids take no lock at all: not a wait of any length.
		if k.key == "ids allotted" && wmax != 0 {
			t.Errorf("%s: %s: a start waited %s (ids are claimed without a lock)", round, k.label, ms(wmax))
		}
	}
	t.Logf("%s: lock waits: %s", round, strings.Join(summary, "; "))
	return f
}

// lockKinds are the locks a bridge start takes, as its --debug log
// names them (key: the message), in the order it takes them.
var lockKinds = []struct {
	key, label string
}{
	{"ids allotted", "ids lock"},
	{"name lock taken", "name lock"},
	{"network attached", "network locks, attach"},
	{"network detached", "network locks, detach"},
}

var lockLine = regexp.MustCompile(`msg="([^"]+)".* (?:lock_wait|took)=(\S+)`)

// lockWaits reads the waits a --debug safe-run logged, by message.
func lockWaits(log string) map[string][]time.Duration {
	out := map[string][]time.Duration{}
	for _, m := range lockLine.FindAllStringSubmatch(log, -1) {
		if d, err := time.ParseDuration(m[2]); err == nil {
			out[m[1]] = append(out[m[1]], d)
		}
	}
	return out
}

// ociLayout writes an OCI layout of the example rootfs, plus files
// random files of size bytes under /big, labeled so that its digest is
// this layout's alone. It returns the manifest's image.oci value.
func ociLayout(t *testing.T, label string, files, size int) string {
	t.Helper()
	mkoci := filepath.Join(env.dir, "mkoci")
	if _, err := os.Stat(mkoci); err != nil {
		if err := testenv.StaticGo(mkoci, "./example/mkoci"); err != nil {
			t.Fatal(err)
		}
	}
	src := env.rootfs
	if files > 0 {
		src = filepath.Join(env.dir, "rootfs-"+label)
		if out, err := exec.Command("cp", "-a", env.rootfs, src).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		os.MkdirAll(filepath.Join(src, "big"), 0o755)
		buf := make([]byte, size)
		for i := range files {
			rand.Read(buf)
			os.WriteFile(filepath.Join(src, "big", fmt.Sprintf("f%04d", i)), buf, 0o644)
		}
		defer os.RemoveAll(src)
	}
	dst := filepath.Join(env.dir, "oci-"+label)
	if out, err := exec.Command(mkoci, "-label", "soak="+env.prefix+"-"+label, src, dst+":latest").CombinedOutput(); err != nil {
		t.Fatalf("mkoci: %v %s", err, out)
	}
	return dst + ":latest"
}

// ociManifest is a manifest of service svc with image.oci = ref.
func ociManifest(t *testing.T, svc, ref, script string) string {
	t.Helper()
	p := root.manifest(t, svc, script, "")
	b, _ := os.ReadFile(p)
	text := strings.Replace(string(b), fmt.Sprintf("rootfs = %q", env.rootfs), fmt.Sprintf("oci = %q", ref), 1)
	os.WriteFile(p, []byte(text), 0o644)
	return p
}

var unpackedNote = regexp.MustCompile(`\(unpacked \d+ files`)

// TestConcurrentPulls: two services of the same image started at once
// unpack it once; the other start waits for it and uses the same entry.
func TestConcurrentPulls(t *testing.T) {
	setup(t)
	ref := ociLayout(t, "pull", 0, 0)
	var wg sync.WaitGroup
	res := make([]result, 2)
	gate := make(chan struct{})
	for i := range res {
		m := ociManifest(t, name(fmt.Sprintf("pull%d", i)), ref, "exit 0")
		wg.Go(func() {
			<-gate
			res[i] = root.run("--debug", m) // --debug: its image lock's wait
		})
	}
	close(gate)
	wg.Wait()
	unpacked := 0
	var waited time.Duration // the longest wait on the image's source lock
	for i, r := range res {
		if r.code != 0 {
			t.Fatalf("start %d: exit %d\n%s", i, r.code, r.stderr)
		}
		unpacked += len(unpackedNote.FindAllString(r.stderr, -1))
		for _, d := range lockWaits(r.stderr)["image source lock taken"] {
			waited = max(waited, d)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(env.dataDir, "images", "entries"))
	if unpacked != 1 || len(entries) != 1 {
		t.Errorf("two starts at once unpacked %d times, %d cache entries; want 1 and 1\n%s\n%s", unpacked, len(entries), res[0].stderr, res[1].stderr)
	}
	if r := root.run("image", "prune"); r.code != 0 {
		t.Errorf("image prune: exit %d\n%s", r.code, r.stderr)
	}
	left := assertNoLeaks(t, "concurrent pulls")
	t.Logf("the longer wait on the image's source lock: %s", ms(waited))
	record("| two starts of one image at once | 1 | %d | unpacked %d time(s), %d cache entry; the one that waited, on the image's own lock, %s (the other's unpack) |", left, unpacked, len(entries), ms(waited))
}

// TestPruneWhileUnpacking: `image prune`, run again and again while a
// start unpacks a larger image, never removes what that start uses: the
// service sees every file of its image. Each round starts from an empty
// cache, so each unpacks.
func TestPruneWhileUnpacking(t *testing.T) {
	setup(t)
	const files = 1500
	ref := ociLayout(t, "prune", files, 8<<10)
	svc := name("prune")
	m := ociManifest(t, svc, ref, fmt.Sprintf(`n=$(ls /big | wc -l); [ "$n" = %d ] && cat /big/* >/dev/null && echo whole`, files))
	prunes := 0
	for round := range env.lvl.pulls {
		// From an empty cache: the start must unpack.
		if p := root.run("image", "prune"); p.code != 0 {
			t.Fatalf("image prune: exit %d\n%s", p.code, p.stderr)
		}
		done := make(chan result, 1)
		go func() { done <- root.run(m) }()
		var r result
	prune:
		for {
			select {
			case r = <-done:
				break prune
			default:
				if p := root.run("image", "prune"); p.code != 0 {
					t.Errorf("image prune during a start: exit %d\n%s", p.code, p.stderr)
				}
				prunes++
			}
		}
		if r.code != 0 || strings.TrimSpace(r.stdout) != "whole" || !unpackedNote.MatchString(r.stderr) {
			t.Fatalf("round %d: exit %d, stdout %q\n%s", round, r.code, r.stdout, r.stderr)
		}
	}
	if r := root.run("image", "prune"); r.code != 0 {
		t.Errorf("image prune: exit %d\n%s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(filepath.Join(env.dataDir, "images", "entries")); len(entries) != 0 {
		t.Errorf("after the last prune: %d cache entries", len(entries))
	}
	left := assertNoLeaks(t, "prune while unpacking")
	record("| image prune while a start unpacks | %d starts, %d prunes | %d | every start saw its whole image |", env.lvl.pulls, prunes, left)
}
