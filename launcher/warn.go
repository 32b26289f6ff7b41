package launcher

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/safe-run/safe-run/manifest"
	"github.com/safe-run/safe-run/ops"
)

// Limits that warn before they bite: while a service runs, its supervisor
// reads its cgroup (warn_linux.go) and says when a limit starts to cost
// it, once per condition and then at most once a minute, with the fix.
// This file is the judgement, with no system calls.

// warnScale, set only by the tests' build (-ldflags -X
// github.com/safe-run/safe-run/launcher.warnScale=0.1), shortens every
// period below by that factor, so that a test of a minute's window takes
// seconds. It is no option: an operator has nothing to tune here.
var warnScale string

// The periods of the watch, at scale 1.
const (
	warnWindow = time.Minute      // CPU throttling is judged over the last minute
	warnHold   = 30 * time.Second // memory must stay high this long
	warnRepeat = time.Minute      // a condition is said again at most this often
	// The cgroup files are polled every warnTick while a limit is near
	// (nearShare of it used, or any throttling), every warnIdleTick
	// otherwise: each poll wakes the supervisor, and an idle service's
	// should sleep. OOM kills and, on v2, refused forks come as events.
	warnTick     = 5 * time.Second
	warnIdleTick = 20 * time.Second
)

// Thresholds.
const (
	throttledShare = 0.25 // of the CFS periods in the window
	// The time throttled in the window, as a share of it, under which
	// throttling says nothing: an idle service's bursts are throttled in
	// a third of its few busy periods for a few milliseconds in all
	// (probe: every idle nginx warned of a hot loop).
	throttledTimeShare = 1.0 / 60
	memoryShare        = 0.90 // of the memory limit
	minPeriods         = 10   // fewer runnable periods in the window say nothing
	nearShare          = 0.80 // of the memory or pids limit: poll often
)

// warning is one thing to say: its condition (ops.Warn*) and the message.
type warning struct{ condition, message string }

// limitWatch decides, from a service's successive cgroup samples, what
// to warn of.
type limitWatch struct {
	window, hold, repeat time.Duration
	tick, idleTick       time.Duration

	samples   []ops.Sample // the last window's, oldest first
	highSince time.Time    // memory above memoryShare since; zero: it is not
	said      map[string]time.Time
	// The OOM kills and refused forks at the last warning of each: the
	// next one says what is new.
	oomSaid, pidsSaid uint64
	// victims names the processes OOM-killed since it was last called,
	// as far as it knows; nil: none named.
	victims func() []string
}

// newLimitWatch returns a watch whose periods are scaled by warnScale.
func newLimitWatch() *limitWatch {
	s := scale()
	return &limitWatch{window: scaled(warnWindow, s), hold: scaled(warnHold, s), repeat: scaled(warnRepeat, s),
		tick: scaled(warnTick, s), idleTick: scaled(warnIdleTick, s), said: map[string]time.Time{}}
}

// next is how long to wait for the next sample: warnTick while a limit
// is near, warnIdleTick otherwise.
func (w *limitWatch) next() time.Duration {
	n := len(w.samples)
	if n == 0 {
		return w.tick
	}
	s := w.samples[n-1]
	throttled := n > 1 && s.Throttled > w.samples[n-2].Throttled
	working := s.Memory - min(s.InactiveFile, s.Memory)
	if throttled || !w.highSince.IsZero() ||
		s.MemoryLimit > 0 && float64(working) > nearShare*float64(s.MemoryLimit) ||
		s.PidsLimit > 0 && float64(s.Pids) > nearShare*float64(s.PidsLimit) {
		return w.tick
	}
	return w.idleTick
}

func scale() float64 {
	if f, err := strconv.ParseFloat(warnScale, 64); err == nil && f > 0 {
		return f
	}
	return 1
}

func scaled(d time.Duration, s float64) time.Duration { return time.Duration(float64(d) * s) }

// observe takes the next sample and returns what to warn of now.
func (w *limitWatch) observe(s ops.Sample) []warning {
	// The cgroup is the run's own, made for it: every OOM kill and
	// refused fork it counts, from the first sample on, is news.
	var out []warning
	w.samples = append(w.samples, s)
	// Keep one sample at or before the window's start, and those after.
	for len(w.samples) > 1 && !w.samples[1].At.After(s.At.Add(-w.window)) {
		w.samples = w.samples[1:]
	}
	if first := w.samples[0]; s.At.Sub(first.At) >= w.window-w.window/100 && s.Quota > 0 && s.Period > 0 {
		periods, throttled := sub(s.Periods, first.Periods), sub(s.Throttled, first.Throttled)
		lost := time.Duration(sub(s.ThrottledTime, first.ThrottledTime))
		if periods >= minPeriods && float64(throttled) > throttledShare*float64(periods) &&
			float64(lost) >= throttledTimeShare*float64(w.window) && w.say(ops.WarnCPUThrottled, s.At) {
			out = append(out, warning{ops.WarnCPUThrottled, fmt.Sprintf("CPU-throttled in %.0f%% of its busy periods over the last %s, %s in all, at cpus %g; raise resources.cpus or find the hot loop",
				100*float64(throttled)/float64(periods), windowText(w.window), lost.Round(100*time.Millisecond), float64(s.Quota)/float64(s.Period))})
		}
	}
	working := s.Memory - min(s.InactiveFile, s.Memory)
	switch {
	case s.MemoryLimit == 0 || float64(working) <= memoryShare*float64(s.MemoryLimit):
		w.highSince = time.Time{}
	case w.highSince.IsZero():
		w.highSince = s.At
	}
	if !w.highSince.IsZero() && s.At.Sub(w.highSince) >= w.hold && w.say(ops.WarnMemoryHigh, s.At) {
		out = append(out, warning{ops.WarnMemoryHigh, fmt.Sprintf("memory at %.0f%% of its limit %s for %s; raise resources.memory or find the leak",
			100*float64(working)/float64(s.MemoryLimit), manifest.Size(s.MemoryLimit), s.At.Sub(w.highSince).Round(time.Second))})
	}
	if s.OOMKills > w.oomSaid && w.say(ops.WarnOOMKill, s.At) {
		limit := "none"
		if s.MemoryLimit > 0 {
			limit = manifest.Size(s.MemoryLimit).String()
		}
		var victims []string
		if w.victims != nil {
			victims = w.victims()
		}
		out = append(out, warning{ops.WarnOOMKill, fmt.Sprintf("the kernel OOM-killed %d process(es) of it at its memory limit %s%s; the service keeps running; raise resources.memory or find the leak",
			s.OOMKills-w.oomSaid, limit, victimsText(victims))})
		w.oomSaid = s.OOMKills
	}
	atLimit := s.PidsLimit > 0 && s.Pids >= s.PidsLimit
	if (s.PidsDenied > w.pidsSaid || atLimit) && w.say(ops.WarnPidsLimit, s.At) {
		msg := fmt.Sprintf("reached its pids limit %d", s.PidsLimit)
		if n := s.PidsDenied - min(w.pidsSaid, s.PidsDenied); n > 0 {
			msg += fmt.Sprintf(": %d fork(s) failed", n)
		}
		out = append(out, warning{ops.WarnPidsLimit, msg + "; raise resources.pids or find what forks without end"})
		w.pidsSaid = s.PidsDenied
	}
	return out
}

// say: condition may be said at time at; it was not said within the
// repeat period before.
func (w *limitWatch) say(condition string, at time.Time) bool {
	if last, ok := w.said[condition]; ok && at.Sub(last) < w.repeat {
		return false
	}
	w.said[condition] = at
	return true
}

func windowText(d time.Duration) string {
	if d == time.Minute {
		return "minute"
	}
	return d.String()
}

func sub(b, a uint64) uint64 {
	if b < a {
		return 0
	}
	return b - a
}

// maxNamed is how many OOM-killed processes a line names; the rest are
// counted.
const maxNamed = 5

// victimsText is victims as a line says them: ": a (host pid 1), b (host
// pid 2)", the first maxNamed and how many more; "" for none.
func victimsText(victims []string) string {
	if len(victims) == 0 {
		return ""
	}
	if len(victims) > maxNamed {
		return ": " + strings.Join(victims[:maxNamed], ", ") + " and " + strconv.Itoa(len(victims)-maxNamed) + " more"
	}
	return ": " + strings.Join(victims, ", ")
}
