package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// Signals is a subscription to every signal, which Run forwards to the
// service (SIGINT and SIGTERM stop it).
//
// Subscribing is slow: the runtime hands each of the 65 signals over to
// its signal thread, a round trip of two thread wake-ups each, up to 5 ms
// in all on a busy start. SubscribeSignals starts it in the background; a
// caller that starts it first thing, before it prepares the service, and
// passes it in Options.Signals finds it done by the start. Run subscribes
// itself otherwise.
//
// Until Run takes them, the signals wait here, in order (up to
// signalBuffer of them; the runtime merges repeats of one signal it has
// not handed over yet). The first SIGINT or SIGTERM also cancels the
// contexts made by Context: a start it reaches before the container
// exists ends there, with a StoppedError.
type Signals struct {
	in         chan os.Signal // from the runtime
	out        chan os.Signal // to Run
	subscribed chan struct{}
	stopOnce   sync.Once
	stop       chan struct{} // closed at the first SIGINT or SIGTERM
	stopSig    unix.Signal
}

// signalBuffer is how many signals wait for Run: more than a person or
// a supervisor sends in a start's few milliseconds.
const signalBuffer = 256

// firstSignals are subscribed to at once by SubscribeSignalsNow: the
// ones that end a Go program or are lost while nothing is subscribed to
// them, and that a service manager, a shell or a person sends.
var firstSignals = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGALRM}

// SubscribeSignals starts subscribing to every signal. Signals received
// before the service starts are forwarded to it once it takes them. The
// subscription lasts: a command that exits once Run returns is not killed
// by a signal in between, with a status that is not the service's.
func SubscribeSignals() *Signals {
	s := newSignals()
	go s.subscribe()
	return s
}

// SubscribeSignalsNow is SubscribeSignals for the first thing a command
// does: it returns once the signals of firstSignals are subscribed to
// (about 0.3 ms), the rest following in the background. Before, SIGTERM
// or SIGHUP ended safe-run, and SIGUSR1 was lost.
//
// early, when set, is called once every signal is subscribed to, and
// returns the signals that came before, noted by other means (safe-run's
// C constructor, which holds them until then): they are handed on first.
func SubscribeSignalsNow(early func() []os.Signal) *Signals {
	s := newSignals()
	signal.Notify(s.in, firstSignals...)
	go func() {
		signal.Notify(s.in)
		catchUnhandled(s.in)
		if early != nil {
			for _, sig := range early() {
				select {
				case s.in <- sig:
				default:
				}
			}
		}
		close(s.subscribed)
	}()
	return s
}

func newSignals() *Signals {
	s := &Signals{in: make(chan os.Signal, signalBuffer), out: make(chan os.Signal, signalBuffer),
		subscribed: make(chan struct{}), stop: make(chan struct{})}
	go s.pass()
	return s
}

func (s *Signals) subscribe() {
	signal.Notify(s.in)
	catchUnhandled(s.in)
	close(s.subscribed)
}

// pass hands the signals on to Run, noting the first SIGINT or SIGTERM.
func (s *Signals) pass() {
	for sig := range s.in {
		if sig == unix.SIGINT || sig == unix.SIGTERM {
			s.stopOnce.Do(func() {
				s.stopSig = sig.(unix.Signal)
				close(s.stop)
			})
		}
		select {
		case s.out <- sig:
		default: // full, as signal.Notify drops
		}
	}
}

// Wait returns the signals once the subscription is complete: none sent
// after that is lost.
func (s *Signals) Wait() chan os.Signal {
	<-s.subscribed
	return s.out
}

// Stop ends the subscription without waiting for the runtime.
func (s *Signals) Stop() {
	go func() {
		<-s.subscribed
		signal.Stop(s.in)
	}()
}

// Context returns a context of parent that the first SIGINT or SIGTERM
// cancels, with that signal's StoppedError as its cause; stop ends it.
func (s *Signals) Context(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		select {
		case <-s.stop:
			cancel(&StoppedError{Signal: s.stopSig})
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// StoppedError is a start that SIGINT or SIGTERM ended before the
// service's container existed: nothing of it is left. A command exits
// with 128 + the signal's number, as a shell's status of a process that
// signal killed.
type StoppedError struct {
	Signal unix.Signal
}

func (e *StoppedError) Error() string {
	return "stopped by " + signalName(e.Signal) + " before the service started (nothing of it is left)"
}

// Stopped returns the StoppedError that ended a start from ctx, if one
// did: ctx is a Signals.Context's, or derives from one.
func Stopped(ctx context.Context) *StoppedError {
	var e *StoppedError
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &e) {
		return e
	}
	return nil
}

// signalName names sig as kill -l does, real-time signals included
// (SIGRTMIN+2), which unix.SignalName leaves unnamed.
func signalName(sig unix.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	if sig >= sigRTMIN && sig <= 64 {
		return fmt.Sprintf("SIGRTMIN+%d", sig-sigRTMIN)
	}
	return fmt.Sprintf("signal %d", int(sig))
}

// sigRTMIN is the C library's first real-time signal, glibc's and musl's
// alike: 32 and 33 are its own.
const sigRTMIN = unix.Signal(34)
