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
//	srv := &http.Server{Handler: mux, IdleTimeout: time.Second}
//	ls := lingerhttp.New(srv, lingerhttp.Config{DrainDelay: 10 * time.Second})
//	mux.Handle("/ready", ls.ReadyHandler())
//	go ls.ListenAndServe(":8080")
//	<-sigterm
//	ls.Shutdown(context.Background())
package lingerhttp

import (
	"context"
	"errors"
	"net"
	"net/http"
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
// balancer.
type Config struct {
	// RetireAfter is the idle time after which a connection is retired:
	// its next response carries "Connection: close". Zero means the
	// server's IdleTimeout as it was when New was called (else its
	// ReadTimeout, as net/http falls back); if both are zero, connections
	// are never retired.
	RetireAfter time.Duration

	// CloseIdleAfter is the hard cap: a connection idle this long is
	// closed (a lingering close, with rescue). The cap grows to the
	// longest idle gap after which a peer has reused a connection, plus a
	// margin of a quarter (at least 1 s): a peer that waited that long once
	// may again. Zero means [DefaultCloseIdleAfter]; negative is invalid.
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
	// balancer ends it. Zero means [DefaultDrainIdle]. The hold ends in
	// any case in time for the lingering close to end before Shutdown's
	// deadline (its bound plus 1 s before it), so a long DrainIdle holds
	// them as long as the context allows. A balancer that is told first
	// (ReadyHandler, DrainDelay) sends nothing more, and a short DrainIdle
	// ends the drain sooner at no cost; negative is invalid.
	DrainIdle time.Duration

	// Listener configures the linger.Listener that Serve and ServeTLS wrap
	// around their listener. Rescue defaults to [linger.HTTP1Request], for
	// the Server's own idle closes only (see the package documentation);
	// ErrorLog defaults to the server's ErrorLog; OnClose, if set, is
	// still called.
	Listener linger.Config

	// OnAdvice, if not nil, receives the advice once, when the first
	// request is lost to a close; otherwise it goes to the server's
	// ErrorLog, or the standard logger. [Server.Advice] has the running
	// numbers.
	OnAdvice func(Advice)
}

// Server wires an [http.Server] to a [linger.Listener]. Create it with New.
type Server struct {
	srv *http.Server
	cfg Config
	now func() time.Time // the clock; tests replace it

	ln       atomic.Pointer[linger.Listener]
	draining atomic.Bool
	tls      atomic.Bool // ServeTLS: linger is under TLS
	h1Idle   sync.Once   // takes srv.IdleTimeout from HTTP/1 (see New)
	handoff  atomic.Bool // the drain is Handoff's; set before draining

	mu        sync.Mutex
	drainEnd  time.Time // when the first Shutdown's DrainDelay ends
	idleEnd   bool      // the drain closes idle connections now
	conns     map[net.Conn]*connState
	changed   cond.Cond // broadcast when conns shrinks; L is &mu
	advice    Advice
	advised   bool
	sweepStop chan struct{}
	sweeping  sync.WaitGroup
	served    chan struct{} // closed when Serve returns; nil before Serve
}

type connKey struct{}

// New wires srv for retire-instead-of-race and returns the Server that
// serves it. New wraps srv.Handler, srv.ConnState and srv.ConnContext,
// calling the ones srv had, and takes over srv.IdleTimeout: net/http's
// HTTP/2 server, which copies it when Serve or ServeTLS sets HTTP/2 up,
// gets RetireAfter (at most CloseIdleAfter), so it ends idle HTTP/2
// connections with GOAWAY; from the first connection on, HTTP/1
// connections get no idle timeout from net/http, since the Server retires
// and closes them. If you configure HTTP/2 yourself
// (golang.org/x/net/http2.ConfigureServer), do it after New. New panics
// if cfg is invalid.
func New(srv *http.Server, cfg Config) *Server {
	if cfg.CloseIdleAfter < 0 {
		panic("lingerhttp: Config.CloseIdleAfter is negative; use zero for the default")
	}
	if cfg.DrainDelay < 0 {
		panic("lingerhttp: Config.DrainDelay is negative; use zero for no delay")
	}
	if cfg.DrainIdle < 0 {
		panic("lingerhttp: Config.DrainIdle is negative; use zero for the default, DefaultDrainIdle")
	}
	if cfg.CloseIdleAfter == 0 {
		cfg.CloseIdleAfter = DefaultCloseIdleAfter
	}
	if cfg.RetireAfter == 0 {
		cfg.RetireAfter = srv.IdleTimeout
		if cfg.RetireAfter == 0 {
			cfg.RetireAfter = srv.ReadTimeout
		}
	}
	if cfg.Listener.Rescue == nil {
		cfg.Listener.Rescue = linger.HTTP1Request
	}
	if cfg.Listener.ErrorLog == nil {
		cfg.Listener.ErrorLog = srv.ErrorLog
	}
	s := &Server{srv: srv, cfg: cfg, now: time.Now, conns: make(map[net.Conn]*connState)}
	s.changed.L = &s.mu

	userClose := cfg.Listener.OnClose
	s.cfg.Listener.OnClose = func(ci linger.CloseInfo) {
		s.noteClose(ci)
		if userClose != nil {
			userClose(ci)
		}
	}
	// net/http's HTTP/2 server copies IdleTimeout once, when Serve sets
	// HTTP/2 up, and ends idle HTTP/2 connections with GOAWAY, which
	// races nothing. HTTP/1's idle timer reads it per connection and would
	// close idle connections under the balancer's next request; connState
	// takes it away from HTTP/1 at the first connection, which Serve
	// accepts after setting HTTP/2 up.
	srv.IdleTimeout = http2IdleTimeout(cfg)
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
	return s
}

// ListenAndServe listens on the TCP network address addr and calls Serve.
// It listens with [linger.Listen]: plain TCP, not MPTCP, so that
// Shutdown's listener close can stop new handshakes (see
// [linger.Listener.Close]); give Serve such a listener too.
func (s *Server) ListenAndServe(addr string) error {
	lln, err := linger.Listen("tcp", addr, s.cfg.Listener)
	if err != nil {
		return err
	}
	return s.serveLinger(lln, s.srv.Serve)
}

// Serve wraps ln with linger (Config.Listener) and serves the server on it
// until Shutdown, when it returns [http.ErrServerClosed]. Call Serve or
// ServeTLS once. For TLS, give ServeTLS the TCP listener: Serve refuses a
// listener made by [crypto/tls.NewListener], under which net/http would
// see *linger.Conn instead of *tls.Conn and serve no HTTP/2, set no
// Request.TLS and see no client certificate.
func (s *Server) Serve(ln net.Listener) error {
	if err := checkNotTLS("Serve", ln); err != nil {
		return err
	}
	return s.serve(ln, s.srv.Serve)
}

// serve wraps ln with linger and runs serveHTTP (http.Server's Serve or
// ServeTLS) on it, with the sweeper.
var errServeTwice = errors.New("lingerhttp: Serve or ServeTLS was already called: a Server serves one listener; for another listener, create another Server with its own http.Server")

func (s *Server) serve(ln net.Listener, serveHTTP func(net.Listener) error) error {
	return s.serveLinger(linger.Wrap(ln, s.cfg.Listener), serveHTTP)
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

	err := serveHTTP(lln)
	if errors.Is(err, net.ErrClosed) && s.draining.Load() {
		err = http.ErrServerClosed
	}
	return err
}

// Listener returns the linger.Listener Serve is serving on, or nil before
// Serve.
func (s *Server) Listener() *linger.Listener { return s.ln.Load() }
