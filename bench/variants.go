package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/linger-go/linger/lingerhttp"
)

// A variant is one way of serving: it turns the backend's listener (and the
// http.Server that will serve it, nil for the raw TCP scenarios) into the
// listener that is served. Every scenario runs the variants its backend
// names (scenarios.go), alternating. To add one, append a line here and
// name it in the backends it serves; a listener with Stats and Shutdown
// methods (as *linger.Listener has) gets its outcomes reported and its
// Shutdown called when the backend stops.
type variant struct {
	name string
	wrap func(ln net.Listener, srv *http.Server) net.Listener
	// serve, if set, serves srv on ln itself (lingerhttp owns Serve and
	// Shutdown), keeping on serving for drainDelay when told to shut down;
	// wrap is not used then.
	serve func(srv *http.Server, ln net.Listener, drainDelay time.Duration) net.Listener
	// listen, if set, makes the listener in place of the backend's own
	// (plain TCP, Go's default keep-alive), given the address to listen
	// on; wrap or serve then serve it as for any other.
	listen func(addr string) (net.Listener, error)
	// preStop, in the shutdown scenario, is how long the deployed backend
	// sleeps before it shuts down, as a Kubernetes preStop hook does.
	preStop time.Duration
}

var variants = []variant{
	{name: "raw", wrap: func(ln net.Listener, _ *http.Server) net.Listener { return ln }},
	{name: "linger", wrap: func(ln net.Listener, _ *http.Server) net.Listener { return linger.Wrap(ln, linger.Config{}) }},
	{name: "rescue", wrap: wrapRescue},
	// churn's: the listener linger.Listen makes, which keeps Go's Accept
	// from setting keep-alive, so that each connection has linger's from
	// the listening socket (Wrap over net.Listen has Go's set anew on each
	// connection, as raw has); and lingerhttp on the same listener, which
	// is what its ListenAndServe and Run serve on.
	{name: "linger.Listen", listen: func(addr string) (net.Listener, error) {
		return linger.Listen("tcp", addr, linger.Config{})
	}, wrap: func(ln net.Listener, _ *http.Server) net.Listener { return ln }},
	{name: "lingerhttp.Run", listen: listenAsLingerListen, serve: serveLingerHTTP},
	{name: "lingerhttp", serve: serveLingerHTTP},
	{
		// The control for lingerhttp's deploy drain: the raw listener and
		// plain http.Server.Shutdown after a sleep as long as DrainDelay.
		name:    "raw+prestop",
		wrap:    func(ln net.Listener, _ *http.Server) net.Listener { return ln },
		preStop: deployDrainDelay,
	},
	// haproxy-deploy's control for the DrainDelay: lingerhttp's Shutdown
	// with none, so the listener closes at once, before the health check
	// has taken the server out.
	{name: "lingerhttp-no-delay", serve: func(srv *http.Server, ln net.Listener, drainDelay time.Duration) net.Listener {
		if drainDelay == 0 {
			return serveLingerHTTP(srv, ln, 0) // not the deployed server
		}
		return serveLingerHTTPConfig(srv, ln, lingerhttp.Config{})
	}},
	// node-keepalive's controls for lingerhttp's Keep-Alive: timeout=N:
	// net/http with the header added by hand, and lingerhttp with it
	// masked, retiring alone (scenarios_node.go).
	{name: "raw+keepalive-hdr", wrap: func(ln net.Listener, srv *http.Server) net.Listener {
		withKeepAliveTimeout(srv)
		return ln
	}},
	{name: "lingerhttp-no-hdr", serve: func(srv *http.Server, ln net.Listener, drainDelay time.Duration) net.Listener {
		withoutKeepAliveTimeout(srv)
		return serveLingerHTTP(srv, ln, drainDelay)
	}},
	// The restart scenario's in-place restarts with tableflip: each
	// generation of the backend is a process that re-executes itself
	// with the listening socket inherited (restart.go serves them).
	{name: "raw+tableflip"},
	{name: "linger+tableflip"},
	{name: "lingerhttp+tableflip"},
}

// listenAsLingerListen makes the listener linger.Listen makes, unwrapped:
// plain TCP, and no keep-alive set by Go's Accept.
func listenAsLingerListen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

// rescueListener is rescue the documented way for a plain http.Server:
// ConnState marks connections idle (linger.Conn.SetIdle), and a sweeper
// replaces net/http's idle timer, closing connections idle for the
// server's IdleTimeout with CloseIdle, so that a request already waiting
// at that moment is served. net/http's own closes (its idle timer, a
// rejected request, Connection: close, Shutdown) never rescue.
type rescueListener struct {
	*linger.Listener
	sweeper testnet.IdleSweeper
	stop    chan struct{}
	once    sync.Once // closes stop
	done    chan struct{}
}

func wrapRescue(ln net.Listener, srv *http.Server) net.Listener {
	r := &rescueListener{
		Listener: linger.Wrap(ln, linger.Config{Rescue: linger.HTTP1Request}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if srv == nil || srv.IdleTimeout <= 0 {
		close(r.done)
		return r
	}
	idle := srv.IdleTimeout
	srv.IdleTimeout = 1<<63 - 1
	user := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		r.sweeper.ConnState(c, st)
		if user != nil {
			user(c, st)
		}
	}
	go r.sweep(idle)
	return r
}

// sweep closes connections idle for idle, checking 20 times as often,
// until Shutdown.
func (r *rescueListener) sweep(idle time.Duration) {
	defer close(r.done)
	r.sweeper.Sweep(idle, max(idle/20, time.Millisecond), r.stop)
}

// Shutdown stops the sweeper, then shuts the listener down.
func (r *rescueListener) Shutdown(ctx context.Context) error {
	r.once.Do(func() { close(r.stop) })
	<-r.done
	return r.Listener.Shutdown(ctx)
}

// lingerHTTP is a backend served by lingerhttp: the server's IdleTimeout
// becomes the retire threshold, idle connections close at the hard cap
// (90 s, longer than the proxies keep theirs), Shutdown drains.
type lingerHTTP struct {
	net.Listener // the inner listener, for Addr
	s            *lingerhttp.Server
}

// deployDrainDelay is lingerhttp's DrainDelay for the backend the
// shutdown and apache-deploy scenarios deploy away: how long it keeps
// serving after it is told to stop, which must cover the balancer's
// deregistration (an nginx reload here: milliseconds; behind a
// health-checking balancer, its check interval × threshold; Apache in
// apache-deploy is never told).
const deployDrainDelay = time.Second

func serveLingerHTTP(srv *http.Server, ln net.Listener, drainDelay time.Duration) net.Listener {
	cfg := lingerhttp.Config{DrainDelay: drainDelay}
	if drainDelay == 0 {
		// Not deployed, only torn down at the end of its scenario: nothing
		// is sent to it any more, so there is nothing to hold idle
		// connections for (the default holds them as long as the
		// teardown's context allows).
		cfg.DrainIdle = 100 * time.Millisecond
	}
	return serveLingerHTTPConfig(srv, ln, cfg)
}

// serveLingerHTTPConfig serves srv on ln with lingerhttp and cfg; a
// readyMux's /ready becomes the Server's ReadyHandler.
func serveLingerHTTPConfig(srv *http.Server, ln net.Listener, cfg lingerhttp.Config) net.Listener {
	rm, _ := srv.Handler.(*readyMux)
	b := &lingerHTTP{Listener: ln, s: lingerhttp.New(srv, cfg)}
	if rm != nil {
		rm.setReady(b.s.ReadyHandler())
	}
	if srv.TLSConfig != nil {
		go b.s.ServeTLS(ln, "", "")
	} else {
		go b.s.Serve(ln)
	}
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
