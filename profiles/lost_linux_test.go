package profiles

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestLostRecordsLimited: the kernel's audit overruns are said at once,
// then at most once a minute with their count, not once each (probe OPS
// #6: 86 lines in 2 minutes of an idle service).
func TestLostRecordsLimited(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	wt := &watcher{rep: newReporter(&out, "web")}
	wt.rep.now = func() time.Time { return now }
	for range 50 {
		wt.lostRecords()
		now = now.Add(time.Second)
	}
	// One a second: said at 0 s, then at 60 s with the 60 since.
	for range 11 {
		wt.lostRecords()
		now = now.Add(time.Second)
	}
	want := "safe-run: web: seccomp denials: the kernel dropped audit records before safe-run could read them; some denials are not shown (said again at most once a minute)\n" +
		"safe-run: web: seccomp denials: the kernel dropped audit records 60 more time(s) in the last 1m0s; some denials are not shown\n"
	if got := out.String(); got != want {
		t.Errorf("got:\n%swant:\n%s", got, want)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Errorf("%d lines", n)
	}
}
