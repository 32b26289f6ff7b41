package launcher

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/safe-run/safe-run/ops"
)

// TestLimitWatch: what the supervisor warns of, given the samples of a
// service's cgroup 5 s apart, at scale 1.
func TestLimitWatch(t *testing.T) {
	const mib = 1 << 20
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	// hog is a service at cpus 0.5 runnable in 50 periods of each 5 s,
	// throttled in n of them for lost each.
	hog := func(i int, n uint64, lost time.Duration) ops.Sample {
		return ops.Sample{At: at.Add(time.Duration(i) * 5 * time.Second), Quota: 50000, Period: 100000,
			Periods: uint64(i) * 50, Throttled: uint64(i) * n, ThrottledTime: uint64(i) * n * uint64(lost), Memory: 10 * mib, MemoryLimit: 100 * mib}
	}
	mem := func(i int, used, inactive uint64) ops.Sample {
		return ops.Sample{At: at.Add(time.Duration(i) * 5 * time.Second), Memory: used * mib, InactiveFile: inactive * mib, MemoryLimit: 100 * mib}
	}
	type step struct {
		s    ops.Sample
		want string // the warnings' messages, joined by " | "
	}
	var throttled, idle, bursts, memHigh, cache, oom, pids, pidsV1 []step
	for i := 0; i <= 26; i++ {
		s, want := hog(i, 20, 50*time.Millisecond), ""
		switch i {
		case 12: // a minute observed: 40% of the periods throttled, 12 s in all
			want = "CPU-throttled in 40% of its busy periods over the last minute, 12s in all, at cpus 0.5; raise resources.cpus or find the hot loop"
		case 24: // a minute later, said again
			want = "CPU-throttled in 40% of its busy periods over the last minute, 12s in all, at cpus 0.5; raise resources.cpus or find the hot loop"
		}
		throttled = append(throttled, step{s, want})
		idle = append(idle, step{hog(i, 10, 50*time.Millisecond), ""}) // 20%: under a quarter
		// An idle service's bursts: 40% of its busy periods, 0.7 s in
		// all, under a second a minute.
		bursts = append(bursts, step{hog(i, 20, 3*time.Millisecond), ""})
	}
	for i := 0; i <= 8; i++ {
		used, want := uint64(95), ""
		if i == 1 {
			used = 80 // below again: the 30 s start over
		}
		if i == 8 {
			want = "memory at 95% of its limit 100M for 30s; raise resources.memory or find the leak"
		}
		memHigh = append(memHigh, step{mem(i, used, 0), want})
		cache = append(cache, step{mem(i, 95, 20), ""}) // 75 MiB working set, the rest reclaimable cache
	}
	oom = []step{
		{ops.Sample{At: at, MemoryLimit: 32 * mib}, ""},
		{ops.Sample{At: at.Add(5 * time.Second), OOMKills: 1, MemoryLimit: 32 * mib}, "the kernel OOM-killed 1 process(es) of it at its memory limit 32M; the service keeps running; raise resources.memory or find the leak"},
		{ops.Sample{At: at.Add(10 * time.Second), OOMKills: 3, MemoryLimit: 32 * mib}, ""}, // within the minute
		{ops.Sample{At: at.Add(70 * time.Second), OOMKills: 3, MemoryLimit: 32 * mib}, "the kernel OOM-killed 2 process(es) of it at its memory limit 32M; the service keeps running; raise resources.memory or find the leak"},
		{ops.Sample{At: at.Add(140 * time.Second), OOMKills: 3, MemoryLimit: 32 * mib}, ""},
	}
	pids = []step{
		{ops.Sample{At: at, Pids: 3, PidsLimit: 16}, ""},
		{ops.Sample{At: at.Add(5 * time.Second), Pids: 15, PidsLimit: 16, PidsDenied: 7}, "reached its pids limit 16: 7 fork(s) failed; raise resources.pids or find what forks without end"},
		{ops.Sample{At: at.Add(10 * time.Second), Pids: 3, PidsLimit: 16, PidsDenied: 9}, ""},
		{ops.Sample{At: at.Add(70 * time.Second), Pids: 3, PidsLimit: 16, PidsDenied: 9}, "reached its pids limit 16: 2 fork(s) failed; raise resources.pids or find what forks without end"},
	}
	// A v1 kernel without pids.events: at the limit is all there is to see.
	pidsV1 = []step{
		{ops.Sample{At: at, Pids: 3, PidsLimit: 16}, ""},
		{ops.Sample{At: at.Add(5 * time.Second), Pids: 16, PidsLimit: 16}, "reached its pids limit 16; raise resources.pids or find what forks without end"},
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"cpu throttled", throttled},
		{"cpu throttled under a quarter", idle},
		{"cpu throttled in bursts, under a second a minute", bursts},
		{"memory high for 30s", memHigh},
		{"memory high but cache", cache},
		{"oom kill", oom},
		{"pids limit", pids},
		{"pids limit without pids.events", pidsV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newLimitWatch()
			for i, st := range tc.steps {
				var got []string
				for _, warn := range w.observe(st.s) {
					got = append(got, warn.message)
				}
				if g := strings.Join(got, " | "); g != st.want {
					t.Errorf("sample %d: %q\nwant %q", i, g, st.want)
				}
			}
		})
	}
}

// TestLimitWatchBounded: the watch keeps what a window needs, whatever
// the service does for however long: a day of samples 5 s apart, the
// service throttled, its memory high, a child OOM-killed and a fork
// refused at every one, leaves the samples of one window and the four
// conditions' times, and the heap where it was (the budget for all
// of the warnings: 1 MiB of the supervisor's memory).
func TestLimitWatchBounded(t *testing.T) {
	w := newLimitWatch()
	calls := 0
	w.victims = func() []string { calls++; return []string{"sh (host pid 1)"} }
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	sample := func(i int) ops.Sample {
		return ops.Sample{At: at.Add(time.Duration(i) * warnTick), Quota: 50000, Period: 100000,
			Periods: uint64(i) * 50, Throttled: uint64(i) * 40, ThrottledTime: uint64(i) * 40 * uint64(50*time.Millisecond), Memory: 99 << 20, MemoryLimit: 100 << 20,
			OOMKills: uint64(i), PidsDenied: uint64(i), Pids: 64, PidsLimit: 64}
	}
	var before, after runtime.MemStats
	const day = int(24 * time.Hour / warnTick)
	said := 0
	for i := range day {
		if i == day/10 {
			runtime.GC()
			runtime.ReadMemStats(&before)
		}
		said += len(w.observe(sample(i)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if most := int(warnWindow/warnTick) + 2; len(w.samples) > most {
		t.Errorf("%d samples kept, want at most %d (a window's)", len(w.samples), most)
	}
	if len(w.said) != 4 {
		t.Errorf("said %v", w.said)
	}
	// Once a minute per condition, four conditions, a day.
	if perDay := 4 * int(24*time.Hour/warnRepeat); said < perDay-8 || said > perDay+4 {
		t.Errorf("%d warnings in a day, want about %d", said, perDay)
	}
	if calls == 0 {
		t.Error("the OOM warnings named no victim")
	}
	// A quarter of the budget: the test binary's other goroutines
	// allocate too.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 256<<10 {
		t.Errorf("the heap grew by %d bytes over %d samples", grew, day-day/10)
	}
}
