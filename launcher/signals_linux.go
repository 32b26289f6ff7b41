package launcher

import (
	"fmt"
	"os"
	"os/signal"

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
type Signals struct {
	c          chan os.Signal
	subscribed chan struct{}
}

// SubscribeSignals starts subscribing to every signal. Signals received
// before the service starts are forwarded to it once it takes them. The
// subscription lasts: a command that exits once Run returns is not killed
// by a signal in between, with a status that is not the service's.
func SubscribeSignals() *Signals {
	s := &Signals{c: make(chan os.Signal, 32), subscribed: make(chan struct{})}
	go func() {
		signal.Notify(s.c)
		catchUnhandled(s.c)
		close(s.subscribed)
	}()
	return s
}

// Wait returns the signals once the subscription is complete: none sent
// after that is lost.
func (s *Signals) Wait() chan os.Signal {
	<-s.subscribed
	return s.c
}

// Stop ends the subscription without waiting for the runtime.
func (s *Signals) Stop() {
	go func() { signal.Stop(s.Wait()) }()
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
