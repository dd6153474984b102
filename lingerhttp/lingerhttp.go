// Package lingerhttp ends HTTP/1 connections through the protocol instead
// of racing the load balancer, and drains deploys without losing requests.
//
// Closing an idle keep-alive connection is a race no socket trick wins: a
// request already on the wire when our FIN leaves is lost, and the
// balancer answers 502. HTTP/1.1 has one race-free way for a server to end
// a connection: answer a request with "Connection: close" (RFC 9112 §9.6).
// A [Server] therefore never closes a connection merely because it has been
// idle for the server's IdleTimeout. It retires it: the next response on it
// carries "Connection: close", so the client ends it. Only a connection
// still idle after a hard cap, long enough for the balancer to close first,
// is closed, with linger's lingering close and rescue.
//
// Rescue acts only where net/http itself says it waits for a new request
// (ConnState StateNew or StateIdle, passed on as [linger.Conn.SetIdle]) and
// only for the Server's own idle closes ([linger.Conn.CloseIdle]): a
// request that arrives at that moment is handed to net/http's waiting
// Read. Every close net/http makes itself (a rejected request, an unread
// body, "Connection: close", a hijacked connection) leaves what is queued
// unread, as plain net/http does.
//
// [Server.Shutdown] drains a deploy: a readiness handler turns to 503 so the
// balancer deregisters the backend, every response carries
// "Connection: close", the listener hands its accept queue to the server
// instead of resetting it, idle connections are held for their next
// request's "Connection: close" for a while ([Config.DrainIdle]), and
// Shutdown waits for every lingering close.
//
// [Server.Handoff] drains a restart in place instead, where the listening
// socket lives on in a successor process (tableflip, systemd socket
// activation): no DrainDelay, ReadyHandler stays 200, and the accept
// queue is left to the successor.
//
// [Server.ServeTLS] serves TLS the way [http.Server.ServeTLS] does, with
// linger under TLS, so net/http sees the *tls.Conn: ALPN, HTTP/2,
// Request.TLS and client certificates work as without lingerhttp. HTTP/2
// has a race-free way to end a connection, GOAWAY (RFC 9113 §6.8: the
// client retries the requests the server did not take), and net/http's
// HTTP/2 server sends it for a "Connection: close" response, for an idle
// connection after its IdleTimeout and at [http.Server.Shutdown]. So an
// HTTP/2 connection is retired and drained with GOAWAY, is never closed by
// the idle sweeper, and gets GOAWAY after RetireAfter idle (at most
// CloseIdleAfter).
//
//	srv := &http.Server{Addr: ":8080", Handler: mux, IdleTimeout: time.Minute}
//	ls := lingerhttp.New(srv, lingerhttp.Config{DrainDelay: 10 * time.Second})
//	mux.Handle("/ready", ls.ReadyHandler())
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	log.Fatal(ls.Run(ctx)) // serves until SIGTERM, then drains
//
// A Server keeps net/http's bounds on every request: ReadHeaderTimeout,
// ReadTimeout and WriteTimeout as configured, and a request that has
// begun to arrive on an idle connection gets no more time than plain
// net/http would give it (see [New]).
package lingerhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/cond"
)

// DefaultDrainIdle is how long Shutdown holds idle connections after
// DrainDelay, by default. A balancer that still sends reuses its pooled
// connections within milliseconds, and each is retired by its next
// response; one that stays idle for seconds carries no traffic, and a
// longer hold only postpones its close, which races the balancer no more
// then than now (and rescues a request already queued). Measured behind
// Apache httpd, which nobody told (bench apache-deploy): holding 5 s lost
// 0 requests in 40 deploys, 6 of which held a connection (Shutdown 8 s),
// and 3 s lost 0 in 40 (3 held); holding until the deadline lost 0 in
// 150 deploys, with Shutdown taking 9 s of its 10 s context in the 16 that
// held one.
const DefaultDrainIdle = 5 * time.Second

// DefaultCloseIdleAfter is the hard cap on idle connections. It is above
// the idle timeouts balancers use for their upstream connections, so the
// balancer closes first and no request races our close: AWS ALB's idle
// timeout defaults to 60 s and AWS asks targets to keep connections longer;
// nginx's upstream keepalive_timeout defaults to 60 s; HAProxy drops idle
// server connections after pool-purge-delay (5 s) or "timeout server".
// 90 s is also Go's http.Transport IdleConnTimeout, so Go clients close
// first too.
const DefaultCloseIdleAfter = 90 * time.Second

// Config tunes a [Server]. The zero Config is ready for production behind a
// balancer. Invalid values make [New] panic with an error naming the
// field.
type Config struct {
	// RetireAfter is the idle time after which a connection is retired:
	// its next response carries "Connection: close". Zero means the
	// server's IdleTimeout when Serve begins (else its ReadTimeout, as
	// net/http falls back); if both are zero, connections are never
	// retired. Negative is invalid.
	RetireAfter time.Duration

	// CloseIdleAfter is the hard cap: a connection idle this long is
	// closed (a lingering close, with rescue). The cap grows to the
	// longest idle gap after which a peer has reused a connection, plus a
	// margin of a quarter (at least 1 s): a peer that waited that long once
	// may again. Keep it above the balancer's idle timeout. Zero means
	// [DefaultCloseIdleAfter]; negative is invalid.
	CloseIdleAfter time.Duration

	// DrainDelay is how long Shutdown keeps serving, with ReadyHandler
	// answering 503, before it stops accepting: time for the balancer's
	// health checks to take the backend out (ALB checks every 30 s by
	// default, nginx Plus and HAProxy every few seconds). Zero means no
	// delay; negative is invalid.
	DrainDelay time.Duration

	// DrainIdle is how long Shutdown, once the DrainDelay is over, holds
	// connections that stay idle before it closes them. An idle keep-alive
	// connection cannot be closed without racing the request the balancer
	// may send on it at that moment (a balancer that has not deregistered
	// the backend, or that keeps per-thread pools, as Apache httpd does);
	// held, its next request is answered with "Connection: close" and the
	// balancer ends it. It is also how long, at most 5 s (net/http's own
	// rule for Shutdown), a connection accepted but still without a whole
	// first request is waited for. Zero means [DefaultDrainIdle]. The hold
	// ends in any case in time for the lingering close to end before
	// Shutdown's deadline (its bound plus 1 s before it), so a long
	// DrainIdle holds them as long as the context allows. A balancer that
	// is told first (ReadyHandler, DrainDelay) sends nothing more, and a
	// short DrainIdle ends the drain sooner at no cost; negative is
	// invalid.
	DrainIdle time.Duration

	// ShutdownTimeout bounds the drain [Server.Run] starts when its
	// context ends. Zero means DrainDelay + DrainIdle + the lingering
	// close's bound (Linger.LingerTimeout) + 10 s for requests in flight:
	// 17 s with the zero Config. Negative is invalid.
	ShutdownTimeout time.Duration

	// Linger configures the linger.Listener the Server serves on. Rescue
	// defaults to [linger.HTTP1Request], for the Server's own idle closes
	// only (see the package documentation); ErrorLog defaults to the
	// server's ErrorLog; OnClose, if set, is still called.
	Linger linger.Config

	// OnAdvice, if not nil, receives the advice once, when the first
	// request is lost to one of the Server's idle closes; otherwise it
	// goes to the server's ErrorLog, or the standard logger.
	// [Server.Advice] has the running numbers.
	OnAdvice func(Advice)
}

// validate reports the first invalid field by name.
func (c *Config) validate() error {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"RetireAfter", c.RetireAfter},
		{"CloseIdleAfter", c.CloseIdleAfter},
		{"DrainDelay", c.DrainDelay},
		{"DrainIdle", c.DrainIdle},
		{"ShutdownTimeout", c.ShutdownTimeout},
	} {
		if f.d < 0 {
			return fmt.Errorf("lingerhttp: Config.%s is negative (%v)", f.name, f.d)
		}
	}
	if err := c.Linger.Validate(); err != nil {
		return fmt.Errorf("lingerhttp: Config.Linger: %w", err)
	}
	return nil
}

// Server wires an [http.Server] to a [linger.Listener]. Create it with New.
type Server struct {
	srv *http.Server
	cfg Config
	now func() time.Time // the clock; tests replace it

	// Set when Serve begins, before any connection (wire).
	retireAfter time.Duration // Config.RetireAfter or its default
	idleTimeout time.Duration // net/http's idle timeout for srv as given
	headTimeout time.Duration // net/http's header timeout for srv
	keepAlive   string        // the Keep-Alive header of HTTP/1 responses

	ln       atomic.Pointer[linger.Listener]
	draining atomic.Bool
	handoff  atomic.Bool // the drain is Handoff's; set before draining

	mu        sync.Mutex
	drainEnd  time.Time // when the first Shutdown's DrainDelay ends
	idleEnd   bool      // the drain closes idle connections now
	conns     map[net.Conn]*connState
	changed   cond.Cond // broadcast when conns shrinks; L is &mu
	advice    Advice
	advised   bool
	idleShut  map[string]struct{} // the idle closes under way, by addresses (closeKey)
	sweepStop chan struct{}
	sweeping  sync.WaitGroup
	served    chan struct{} // closed when Serve returns; nil before Serve
}

type connKey struct{}

// New returns a Server that serves srv with linger's closes, retires idle
// connections instead of racing the balancer, and drains deploys. It
// panics if srv is nil or cfg is invalid, with an error naming the field.
//
// New does not change srv: serving it directly (srv.Serve,
// srv.ListenAndServe) is plain net/http. Serving it through the Server
// (Run, Serve, ListenAndServe and their TLS forms) wraps srv.Handler,
// srv.ConnState and srv.ConnContext, calling the ones srv had, and sets
// srv.IdleTimeout to the idle time after which net/http's HTTP/2 server
// ends idle HTTP/2 connections with GOAWAY (RetireAfter, at most
// CloseIdleAfter), which it copies when serving begins. HTTP/1 connections
// are not closed by net/http when idle: the Server retires and closes
// them. What net/http's IdleTimeout also bounds, the wait for the first
// bytes of a request that has begun to arrive, stays bounded: by the idle
// timeout as plain net/http counts it while that is ahead, else by
// ReadHeaderTimeout (or ReadTimeout, else IdleTimeout) from the first
// byte. The connections net/http sees (ConnState, Hijack) are the
// Server's own type, which embeds the *linger.Conn: use [linger.ConnOf] to
// reach it. If you configure HTTP/2 yourself
// (golang.org/x/net/http2.ConfigureServer), do it after Serve begins.
func New(srv *http.Server, cfg Config) *Server {
	if srv == nil {
		panic(errors.New("lingerhttp: New of a nil *http.Server"))
	}
	if err := cfg.validate(); err != nil {
		panic(err)
	}
	if cfg.CloseIdleAfter == 0 {
		cfg.CloseIdleAfter = DefaultCloseIdleAfter
	}
	if cfg.DrainIdle == 0 {
		cfg.DrainIdle = DefaultDrainIdle
	}
	if cfg.Linger.Rescue == nil {
		cfg.Linger.Rescue = linger.HTTP1Request
	}
	if cfg.Linger.ErrorLog == nil {
		cfg.Linger.ErrorLog = srv.ErrorLog
	}
	s := &Server{srv: srv, cfg: cfg, now: time.Now, conns: make(map[net.Conn]*connState), idleShut: make(map[string]struct{})}
	s.changed.L = &s.mu
	userClose := cfg.Linger.OnClose
	s.cfg.Linger.OnClose = func(ci linger.CloseInfo) {
		s.noteClose(ci)
		if userClose != nil {
			userClose(ci)
		}
	}
	return s
}

// wire sets srv up to be served through s; Serve calls it once, before it
// serves.
func (s *Server) wire() {
	srv := s.srv
	s.idleTimeout = srv.IdleTimeout
	if s.idleTimeout == 0 {
		s.idleTimeout = srv.ReadTimeout
	}
	s.headTimeout = srv.ReadHeaderTimeout
	if s.headTimeout == 0 {
		s.headTimeout = srv.ReadTimeout
	}
	s.retireAfter = s.cfg.RetireAfter
	if s.retireAfter == 0 {
		s.retireAfter = s.idleTimeout
	}
	s.keepAlive = keepAliveHeader(s.retireAfter, s.cfg.CloseIdleAfter)
	// net/http's HTTP/2 server copies IdleTimeout when Serve sets HTTP/2
	// up, and ends idle HTTP/2 connections with GOAWAY, which races
	// nothing. HTTP/1's idle deadline is held back per connection (conn).
	srv.IdleTimeout = s.http2IdleTimeout()
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	srv.Handler = s.handler(next)
	userState := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		s.connState(c, st)
		if userState != nil {
			userState(c, st)
		}
	}
	userContext := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if userContext != nil {
			ctx = userContext(ctx, c)
		}
		return context.WithValue(ctx, connKey{}, c)
	}
}

// keepAliveHeader is the Keep-Alive header that tells clients the idle
// time after which the Server ends a connection: retireAfter if set
// (the next response then ends it), else the hard cap; in whole seconds,
// rounded down and at least 1 (Node.js reads timeout=0 as no timeout).
func keepAliveHeader(retireAfter, closeIdleAfter time.Duration) string {
	d := closeIdleAfter
	if retireAfter > 0 && retireAfter < d {
		d = retireAfter
	}
	return "timeout=" + strconv.FormatInt(max(int64(d/time.Second), 1), 10)
}

// Run serves until ctx ends, then drains with Shutdown, bounded by
// Config.ShutdownTimeout, and returns: nil after a complete drain, else
// the error that ended serving or the drain. It listens on srv.Addr, as
// [Server.ListenAndServe] does. With [os/signal.NotifyContext] it is the
// whole life of a server behind a balancer:
//
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	if err := ls.Run(ctx); err != nil {
//		log.Fatal(err)
//	}
func (s *Server) Run(ctx context.Context) error {
	return s.run(ctx, s.ListenAndServe)
}

// RunTLS is Run over TLS, listening as [Server.ListenAndServeTLS] does.
func (s *Server) RunTLS(ctx context.Context, certFile, keyFile string) error {
	return s.run(ctx, func() error { return s.ListenAndServeTLS(certFile, keyFile) })
}

func (s *Server) run(ctx context.Context, serve func() error) error {
	served := make(chan error, 1)
	go func() { served <- serve() }()
	select {
	case err := <-served:
		return err // it never served: the address was taken, or Shutdown came first
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout())
	defer cancel()
	err := s.Shutdown(dctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// shutdownTimeout is Run's bound on its drain.
func (s *Server) shutdownTimeout() time.Duration {
	if s.cfg.ShutdownTimeout > 0 {
		return s.cfg.ShutdownTimeout
	}
	bound := s.cfg.Linger.LingerTimeout
	if bound == 0 {
		bound = linger.DefaultLingerTimeout
	}
	return s.cfg.DrainDelay + s.cfg.DrainIdle + bound + 10*time.Second
}

// ListenAndServe listens on the TCP network address srv.Addr (":http" if
// empty) and calls Serve, as [http.Server.ListenAndServe] does. It
// listens with [linger.Listen]: plain TCP, not MPTCP, so that Shutdown's
// listener close can stop new handshakes (see [linger.Listener.Close]);
// give Serve such a listener too.
func (s *Server) ListenAndServe() error {
	return s.listenAndServe(":http", func(lln *linger.Listener) error { return s.serveLinger(lln, s.srv.Serve) })
}

// listenAndServe listens on srv.Addr, or def, and serves there, unless
// the Server has served or is shutting down.
func (s *Server) listenAndServe(def string, serve func(*linger.Listener) error) error {
	if s.ln.Load() != nil {
		return errServeTwice
	}
	if s.draining.Load() {
		return http.ErrServerClosed
	}
	addr := s.srv.Addr
	if addr == "" {
		addr = def
	}
	lln, err := linger.Listen("tcp", addr, s.cfg.Linger)
	if err != nil {
		return err
	}
	err = serve(lln)
	if errors.Is(err, errServeTwice) {
		lln.Close()
	}
	return err
}

// Serve wraps ln with linger (Config.Linger) and serves the server on it
// until Shutdown, when it returns [http.ErrServerClosed]. It refuses a
// *linger.Listener: the Server makes its own, with Config.Linger, whose
// closes it learns from. Call Serve or
// ServeTLS once. For TLS, give ServeTLS the TCP listener: Serve refuses a
// listener made by [crypto/tls.NewListener], under which net/http would
// see *linger.Conn instead of *tls.Conn and serve no HTTP/2, set no
// Request.TLS and see no client certificate.
func (s *Server) Serve(ln net.Listener) error {
	if err := checkListener("Serve", ln); err != nil {
		return err
	}
	return s.serve(ln, s.srv.Serve)
}

var errServeTwice = errors.New("lingerhttp: Serve called twice")

// serve wraps ln with linger and runs serveHTTP (http.Server's Serve or
// ServeTLS) on it, with the sweeper.
func (s *Server) serve(ln net.Listener, serveHTTP func(net.Listener) error) error {
	if s.ln.Load() != nil {
		return errServeTwice
	}
	return s.serveLinger(linger.Wrap(ln, s.cfg.Linger), serveHTTP)
}

// serveLinger is serve on a linger.Listener already made.
func (s *Server) serveLinger(lln *linger.Listener, serveHTTP func(net.Listener) error) error {
	if !s.ln.CompareAndSwap(nil, lln) {
		return errServeTwice
	}
	served := make(chan struct{})
	defer close(served)
	s.mu.Lock()
	s.served = served
	if s.draining.Load() {
		// Shutdown came first, as http.Server.Serve after Shutdown: no
		// sweeper may start that no Shutdown would stop.
		s.mu.Unlock()
		lln.Shutdown(context.Background()) // nobody accepted: closes what it queued, with FINs
		return http.ErrServerClosed
	}
	s.wire()
	stop := make(chan struct{})
	s.sweepStop = stop
	s.sweeping.Add(1)
	s.mu.Unlock()
	go s.sweep(stop)
	defer func() {
		// While Shutdown drains, its sweeper must outlive Serve, which
		// returns as soon as the listener is closed; Shutdown stops it.
		if !s.draining.Load() {
			s.stopSweeping()
		}
	}()

	err := serveHTTP(listener{lln, s})
	if errors.Is(err, net.ErrClosed) && s.draining.Load() {
		err = http.ErrServerClosed
	}
	return err
}

// Listener returns the linger.Listener Serve is serving on, or nil before
// Serve.
func (s *Server) Listener() *linger.Listener { return s.ln.Load() }
