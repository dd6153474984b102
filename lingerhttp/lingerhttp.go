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
// instead of resetting it, idle connections close once quiet, and
// Shutdown waits for every lingering close.
//
// [Server.ServeTLS] serves TLS the way [http.Server.ServeTLS] does, with
// linger under TLS, so net/http sees the *tls.Conn: ALPN, HTTP/2,
// Request.TLS and client certificates work as without lingerhttp.
//
//	srv := &http.Server{Handler: mux, IdleTimeout: time.Second}
//	ls := lingerhttp.New(srv, lingerhttp.Config{DrainDelay: 10 * time.Second})
//	mux.Handle("/ready", ls.ReadyHandler())
//	ln, err := net.Listen("tcp", ":8080")
//	if err != nil {
//		log.Fatal(err)
//	}
//	go ls.Serve(ln)
//	<-sigterm
//	ls.Shutdown(context.Background())
package lingerhttp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linger-go/linger"
)

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

// Advice is what the server learned about its idle timeout from the
// connections it saw.
type Advice struct {
	// Lost counts requests that met a close: they crossed our FIN on the
	// wire (outcome crossed) or were waiting unread and could not be
	// rescued (outcome pending).
	Lost int64
	// LongestLostIdle is the longest idle time before a close that lost a
	// request.
	LongestLostIdle time.Duration
	// LongestReuse is the longest idle gap after which a peer sent another
	// request on a connection.
	LongestReuse time.Duration
	// Suggested is the idle timeout that would have avoided the losses:
	// longer than every gap seen, plus a margin.
	Suggested time.Duration
}

// Server wires an [http.Server] to a [linger.Listener]. Create it with New.
type Server struct {
	srv *http.Server
	cfg Config
	now func() time.Time // the clock; tests replace it

	ln       atomic.Pointer[linger.Listener]
	draining atomic.Bool
	tls      atomic.Bool // ServeTLS: linger is under TLS

	mu        sync.Mutex
	drainEnd  time.Time // when the first Shutdown's DrainDelay ends
	conns     map[net.Conn]*connState
	changed   chan struct{} // closed and cleared when conns shrinks
	advice    Advice
	advised   bool
	sweepStop chan struct{}
	sweeping  sync.WaitGroup
}

type connState struct {
	idleSince time.Time // zero while a request is being served
	fresh     bool      // no request yet: the first one is no reuse
	retire    bool      // the current request's response carries Connection: close
}

type connKey struct{}

// New wires srv for retire-instead-of-race and returns the Server that
// serves it. New takes over srv.IdleTimeout (net/http must not close idle
// connections; the Server does) and wraps srv.Handler, srv.ConnState and
// srv.ConnContext, calling the ones srv had. New panics if cfg is invalid.
func New(srv *http.Server, cfg Config) *Server {
	if cfg.CloseIdleAfter < 0 {
		panic("lingerhttp: Config.CloseIdleAfter is negative; use zero for the default")
	}
	if cfg.DrainDelay < 0 {
		panic("lingerhttp: Config.DrainDelay is negative; use zero for no delay")
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

	userClose := cfg.Listener.OnClose
	s.cfg.Listener.OnClose = func(ci linger.CloseInfo) {
		s.noteClose(ci)
		if userClose != nil {
			userClose(ci)
		}
	}
	// net/http's idle timer would close idle connections, racing the
	// balancer; the sweeper closes them at the cap instead.
	srv.IdleTimeout = 1<<63 - 1
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
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
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
func (s *Server) serve(ln net.Listener, serveHTTP func(net.Listener) error) error {
	lln := linger.Wrap(ln, s.cfg.Listener)
	s.ln.Store(lln)
	s.mu.Lock()
	s.sweepStop = make(chan struct{})
	s.mu.Unlock()
	s.sweeping.Add(1)
	go s.sweep()
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

// ReadyHandler answers 200 until Shutdown begins, then 503: point the
// balancer's health check at it.
func (s *Server) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
}

// handler marks responses that end their connection. Whether to mark is
// decided when the response header is written, so a request that was in
// flight when Shutdown began is answered with "Connection: close" too.
func (s *Server) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &drainWriter{ResponseWriter: w, s: s, retire: s.retiring(r)}
		next.ServeHTTP(dw, r)
		dw.mark() // net/http writes the header of a handler that wrote nothing
	})
}

// drainWriter adds "Connection: close" to a response when it is written,
// if the connection is retired or the server is draining. It passes on
// Flush, Hijack and ReadFrom (sendfile), and unwraps for
// [http.ResponseController].
type drainWriter struct {
	http.ResponseWriter
	s      *Server
	retire bool
	marked bool
}

func (w *drainWriter) mark() {
	if w.marked {
		return
	}
	w.marked = true
	if w.retire || w.s.draining.Load() {
		w.Header().Set("Connection", "close")
	}
}

func (w *drainWriter) WriteHeader(code int) {
	if code >= 200 { // 1xx responses do not commit the header
		w.mark()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(b []byte) (int, error) {
	w.mark()
	return w.ResponseWriter.Write(b)
}

func (w *drainWriter) WriteString(s string) (int, error) {
	w.mark()
	return io.WriteString(w.ResponseWriter, s)
}

func (w *drainWriter) ReadFrom(r io.Reader) (int64, error) {
	w.mark()
	return io.Copy(w.ResponseWriter, r)
}

func (w *drainWriter) Flush() {
	w.mark()
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *drainWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) retiring(r *http.Request) bool {
	c, ok := r.Context().Value(connKey{}).(net.Conn)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.conns[c]
	return st != nil && st.retire
}

// connState tracks idle time per connection, and tells linger when net/http
// is idle on a connection (the only state in which its sweeper's close may
// hand a waiting request back) and when it hijacked one.
func (s *Server) connState(c net.Conn, state http.ConnState) {
	if lc := linger.ConnOf(c); lc != nil {
		lc.SetIdle(state == http.StateNew || state == http.StateIdle)
		if state == http.StateHijacked {
			// Shutdown waits for neither the owner nor linger's close
			// of a hijacked connection, as http.Server.Shutdown does not.
			lc.Detach()
		}
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns[c] = &connState{idleSince: now, fresh: true}
	case http.StateActive:
		st := s.conns[c]
		if st == nil || st.idleSince.IsZero() {
			return
		}
		gap := now.Sub(st.idleSince)
		st.idleSince = time.Time{}
		if st.fresh {
			st.fresh = false
			return
		}
		s.advice.LongestReuse = max(s.advice.LongestReuse, gap)
		st.retire = s.cfg.RetireAfter > 0 && gap > s.cfg.RetireAfter
	case http.StateIdle:
		if st := s.conns[c]; st != nil {
			st.idleSince = now
			st.retire = false
		}
	case http.StateHijacked, http.StateClosed:
		delete(s.conns, c)
		if s.changed != nil {
			close(s.changed)
			s.changed = nil
		}
	}
}

// idleCap is how long a connection may stay idle now.
func (s *Server) idleCapLocked() time.Duration {
	if s.draining.Load() && s.cfg.RetireAfter > 0 {
		return min(s.cfg.RetireAfter, time.Second)
	}
	if s.draining.Load() {
		return time.Second
	}
	return max(s.cfg.CloseIdleAfter, withMargin(s.advice.LongestReuse))
}

func withMargin(d time.Duration) time.Duration {
	if d == 0 {
		return 0
	}
	return d + max(time.Second, d/4)
}

// sweep closes connections idle past the cap until Serve returns.
func (s *Server) sweep() {
	defer s.sweeping.Done()
	s.mu.Lock()
	stop := s.sweepStop
	s.mu.Unlock()
	interval := min(max(s.cfg.CloseIdleAfter/8, 10*time.Millisecond), time.Second)
	if s.cfg.RetireAfter > 0 {
		interval = min(interval, max(s.cfg.RetireAfter/4, 10*time.Millisecond))
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			s.closeIdle()
		}
	}
}

// closeIdle closes the connections that have been idle past the cap.
func (s *Server) closeIdle() {
	now := s.now()
	s.mu.Lock()
	limit := s.idleCapLocked()
	var idle []net.Conn
	for c, st := range s.conns {
		if !st.idleSince.IsZero() && now.Sub(st.idleSince) >= limit {
			idle = append(idle, c)
		}
	}
	s.mu.Unlock()
	for _, c := range idle {
		// A lingering close, only if net/http is still idle on it; a
		// request already queued is rescued: the connection's goroutine,
		// waiting in Read, gets it and serves it.
		if lc := linger.ConnOf(c); lc != nil {
			lc.CloseIdle()
		} else {
			c.Close()
		}
	}
}

func (s *Server) stopSweeping() {
	s.mu.Lock()
	if s.sweepStop != nil {
		close(s.sweepStop)
		s.sweepStop = nil
	}
	s.mu.Unlock()
	s.sweeping.Wait()
}

// noteClose learns from linger's close outcomes.
func (s *Server) noteClose(ci linger.CloseInfo) {
	if ci.Outcome != linger.Crossed && ci.Outcome != linger.Pending {
		return
	}
	if s.tls.Load() && ci.Outcome == linger.Crossed && ci.Discarded <= closeNotifyMax {
		// The client's close_notify, answering ours: no request.
		return
	}
	s.mu.Lock()
	s.advice.Lost++
	s.advice.LongestLostIdle = max(s.advice.LongestLostIdle, ci.Idle)
	first := !s.advised
	s.advised = true
	a := s.adviceLocked()
	s.mu.Unlock()
	if !first {
		return
	}
	if s.cfg.OnAdvice != nil {
		s.cfg.OnAdvice(a)
		return
	}
	logf := log.Printf
	if s.srv.ErrorLog != nil {
		logf = s.srv.ErrorLog.Printf
	}
	logf("lingerhttp: a request was lost to a close after %v idle (outcome %v); peers have reused connections after up to %v idle; an idle timeout above %v would have avoided it: set the balancer's upstream idle timeout below the backend's (reported once; see Server.Advice)",
		ci.Idle.Round(time.Millisecond), ci.Outcome, a.LongestReuse.Round(time.Millisecond), a.Suggested.Round(time.Millisecond))
}

// Advice returns what the server has learned so far.
func (s *Server) Advice() Advice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adviceLocked()
}

func (s *Server) adviceLocked() Advice {
	a := s.advice
	a.Suggested = withMargin(max(a.LongestReuse, a.LongestLostIdle))
	return a
}

// Shutdown drains the server without losing requests, then returns:
//
//  1. ReadyHandler answers 503 and every response from now on carries
//     "Connection: close"; the server keeps serving for Config.DrainDelay.
//  2. The listener closes; connections already in the kernel's accept
//     queue are served rather than reset.
//  3. Idle connections are closed once quiet (RetireAfter, at most 1 s);
//     a request that arrives at that moment is rescued and answered with
//     "Connection: close", since net/http is not shutting down yet. Busy
//     connections end with their "Connection: close" response.
//  4. Shutdown waits for every connection and every lingering close, but
//     not for hijacked connections (as [http.Server.Shutdown] does not);
//     their closes still linger.
//
// If ctx ends first, it closes everything at once ([http.Server.Close] and
// [linger.Listener.Shutdown]) and returns ctx.Err(). Calling
// [http.Server.Shutdown] instead still closes without resets, but loses the
// requests that net/http drops once its Shutdown has begun.
//
// Shutdown may be called again, or concurrently: the DrainDelay counts
// from the first call, so a later call waits only for what is left of it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining.Load() {
		s.drainEnd = time.Now().Add(s.cfg.DrainDelay)
		s.draining.Store(true)
	}
	drainEnd := s.drainEnd
	s.mu.Unlock()
	if d := time.Until(drainEnd); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return s.abort(ctx)
		}
	}
	ln := s.ln.Load()
	if ln != nil {
		ln.Close()
	}
	for {
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.mu.Unlock()
			break
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return s.abort(ctx)
		}
	}
	if ln != nil {
		if err := ln.Shutdown(ctx); err != nil {
			return s.abort(ctx)
		}
	}
	s.stopSweeping()
	// http.Server.Shutdown closes the listeners Serve still tracks; when
	// Serve has not yet returned from the Accept error of our own Close,
	// that second Close reports net.ErrClosed, which is no failure here.
	if err := s.srv.Shutdown(ctx); !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func (s *Server) abort(ctx context.Context) error {
	s.srv.Close()
	if ln := s.ln.Load(); ln != nil {
		ln.Shutdown(ctx)
	}
	s.stopSweeping()
	return ctx.Err()
}
