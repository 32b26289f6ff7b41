package launcher

import (
	"os"
	"os/signal"
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

// wait returns the signals once the subscription is complete: none sent
// after that is lost.
func (s *Signals) wait() chan os.Signal {
	<-s.subscribed
	return s.c
}

// stop ends the subscription without waiting for the runtime.
func (s *Signals) stop() {
	go func() { signal.Stop(s.wait()) }()
}
