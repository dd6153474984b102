package main

import (
	"context"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
)

// A variant is one way of serving: it turns the backend's listener (and the
// http.Server that will serve it, nil for the raw TCP scenarios) into the
// listener that is served. Every scenario runs every variant, alternating.
// To add one, append a line here; a listener with Stats and Shutdown methods
// (as *linger.Listener has) gets its outcomes reported and its Shutdown
// called when the backend stops.
type variant struct {
	name string
	wrap func(ln net.Listener, srv *http.Server) net.Listener
	// only, if set, names the backend scenarios the variant runs in.
	only []string
	// serve, if set, serves srv on ln itself (lingerhttp owns Serve and
	// Shutdown), keeping on serving for drainDelay when told to shut down;
	// wrap is not used then.
	serve func(srv *http.Server, ln net.Listener, drainDelay time.Duration) net.Listener
	// preStop, in the shutdown scenario, is how long the deployed backend
	// sleeps before it shuts down, as a Kubernetes preStop hook does.
	preStop time.Duration
}

var variants = []variant{
	{name: "raw", wrap: func(ln net.Listener, _ *http.Server) net.Listener { return ln }},
	{name: "linger", wrap: func(ln net.Listener, _ *http.Server) net.Listener { return linger.Wrap(ln, linger.Config{}) }},
	{
		name: "rescue",
		wrap: func(ln net.Listener, _ *http.Server) net.Listener {
			return linger.Wrap(ln, linger.Config{Rescue: linger.HTTP1Request})
		},
		only: []string{"idle-race", "proxy-idle", "smuggle"},
	},
	{
		name:  "lingerhttp",
		serve: serveLingerHTTP,
		only:  []string{"idle-race", "proxy-idle", "shutdown", "overhead", "smuggle"},
	},
	{
		// The control for lingerhttp's deploy drain: the raw listener and
		// plain http.Server.Shutdown after a sleep as long as DrainDelay.
		name:    "raw+prestop",
		wrap:    func(ln net.Listener, _ *http.Server) net.Listener { return ln },
		only:    []string{"shutdown"},
		preStop: deployDrainDelay,
	},
}

// applies reports whether v runs in the backend scenario scn.
func (v variant) applies(scn string) bool {
	return v.only == nil || slices.Contains(v.only, scn)
}

// lingerHTTP is a backend served by lingerhttp: the server's IdleTimeout
// becomes the retire threshold, idle connections close at the hard cap
// (90 s, longer than the proxies keep theirs), Shutdown drains.
type lingerHTTP struct {
	net.Listener // the inner listener, for Addr
	s            *lingerhttp.Server
}

// deployDrainDelay is lingerhttp's DrainDelay for the backend the
// shutdown scenario deploys away: how long it keeps serving after it is
// told to stop, which must cover the balancer's deregistration (an nginx
// reload here: milliseconds; behind a health-checking balancer, its check
// interval × threshold).
const deployDrainDelay = time.Second

func serveLingerHTTP(srv *http.Server, ln net.Listener, drainDelay time.Duration) net.Listener {
	b := &lingerHTTP{Listener: ln, s: lingerhttp.New(srv, lingerhttp.Config{DrainDelay: drainDelay})}
	go b.s.Serve(ln)
	return b
}

func (b *lingerHTTP) Stats() linger.Stats {
	if l := b.s.Listener(); l != nil {
		return l.Stats()
	}
	return linger.Stats{}
}

func (b *lingerHTTP) Shutdown(ctx context.Context) error { return b.s.Shutdown(ctx) }

func variantNamed(name string) (variant, bool) {
	for _, v := range variants {
		if v.name == name {
			return v, true
		}
	}
	return variant{}, false
}

// The optional methods of a served listener.
type (
	statser  interface{ Stats() linger.Stats }
	shutdown interface {
		Shutdown(context.Context) error
	}
)
