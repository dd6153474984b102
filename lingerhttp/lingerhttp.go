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
	"fmt"
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

	// DrainIdle is how long Shutdown, once the DrainDelay is over, holds
	// connections that stay idle before it closes them. An idle keep-alive
	// connection cannot be closed without racing the request the balancer
	// may send on it at that moment (a balancer that has not deregistered
	// the backend, or that keeps per-thread pools, as Apache httpd does);
	// held, its next request is answered with "Connection: close" and the
	// balancer ends it. Zero means as long as Shutdown's context allows:
	// until the lingering close's bound plus 1 s before its deadline, or,
	// for a context without a deadline, CloseIdleAfter. A balancer that is
	// told first (ReadyHandler, DrainDelay) sends nothing more, and a short
	// DrainIdle ends the drain sooner at no cost; negative is invalid.
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
	// Retired counts connections retired: a request came after more than
	// RetireAfter idle, so its response carried "Connection: close".
	Retired int64
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

	mu        sync.Mutex
	drainEnd  time.Time // when the first Shutdown's DrainDelay ends
	idleEnd   bool      // the drain closes idle connections now
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
	h2        bool      // HTTP/2: ends with GOAWAY, never by the sweeper
	drainBorn bool      // accepted after Shutdown began
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
		panic("lingerhttp: Config.DrainIdle is negative; use zero to hold idle connections as long as Shutdown's context allows")
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
		retire, drainKeeps := s.requestBegins(r)
		dw := &drainWriter{ResponseWriter: w, s: s, retire: retire, drainKeeps: drainKeeps}
		next.ServeHTTP(dw, r)
		dw.mark() // net/http writes the header of a handler that wrote nothing
	})
}

// drainWriter adds "Connection: close" to a response when it is written,
// if the connection is retired or the server is draining (but not on an
// HTTP/2 connection the drain keeps). It passes on Flush, Hijack and
// ReadFrom (sendfile), and unwraps for [http.ResponseController].
type drainWriter struct {
	http.ResponseWriter
	s          *Server
	retire     bool
	drainKeeps bool
	marked     bool
}

func (w *drainWriter) mark() {
	if w.marked {
		return
	}
	w.marked = true
	if w.retire || (w.s.draining.Load() && !w.drainKeeps) {
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

// requestBegins reports whether r's response retires its connection, and
// whether a drain keeps its connection open: an HTTP/2 connection accepted
// during the drain serves on until the drain's GOAWAY (see Shutdown). An
// HTTP/2 request marks its connection HTTP/2, for unencrypted HTTP/2,
// which has no ALPN to tell it earlier.
func (s *Server) requestBegins(r *http.Request) (retire, drainKeeps bool) {
	c, ok := r.Context().Value(connKey{}).(net.Conn)
	if !ok {
		return false, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.conns[c]
	if st == nil {
		return false, false
	}
	if r.ProtoMajor == 2 && !st.h2 {
		st.h2 = true
		s.changedLocked()
	}
	return st.retire, st.h2 && st.drainBorn
}

// connState tracks idle time per connection, and tells linger when net/http
// is idle on an HTTP/1 connection (the only state in which its sweeper's
// close may hand a waiting request back) and when it hijacked one.
func (s *Server) connState(c net.Conn, state http.ConnState) {
	if state == http.StateNew {
		// Serve has set HTTP/2 up, with srv.IdleTimeout as New left it,
		// and starts this connection's goroutine, which reads it, next.
		s.h1Idle.Do(func() { s.srv.IdleTimeout = 1<<63 - 1 })
	}
	// The protocol ALPN chose, known from the first request on (HTTP/1)
	// or from the client's preface (HTTP/2), which both set StateActive.
	h2 := state == http.StateActive && negotiatedHTTP2(c)
	idle, h2 := s.trackState(c, state, h2)
	if lc := linger.ConnOf(c); lc != nil {
		// An HTTP/2 connection is never idle to linger: CloseIdle must
		// not cut it without GOAWAY.
		lc.SetIdle(idle && !h2)
		if state == http.StateHijacked {
			// Shutdown waits for neither the owner nor linger's close
			// of a hijacked connection, as http.Server.Shutdown does not.
			lc.Detach()
		}
	}
}

// trackState records c's new state and reports whether c is now idle and
// whether it is an HTTP/2 connection.
func (s *Server) trackState(c net.Conn, state http.ConnState, h2 bool) (idle, isH2 bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.conns[c]
	if st != nil && h2 && !st.h2 {
		st.h2 = true
		s.changedLocked() // Shutdown waits for HTTP/1 connections first
	}
	switch state {
	case http.StateNew:
		st = &connState{idleSince: now, fresh: true, drainBorn: s.draining.Load()}
		s.conns[c] = st
		return true, false
	case http.StateActive:
		if st == nil || st.idleSince.IsZero() {
			return false, st != nil && st.h2
		}
		gap := now.Sub(st.idleSince)
		st.idleSince = time.Time{}
		if st.fresh {
			st.fresh = false
			return false, st.h2
		}
		if !st.h2 {
			// The cap is for HTTP/1 peers, whose reuse races a close;
			// an HTTP/2 peer's gaps end at its GOAWAY.
			s.advice.LongestReuse = max(s.advice.LongestReuse, gap)
		}
		st.retire = s.cfg.RetireAfter > 0 && gap > s.cfg.RetireAfter
		if st.retire {
			s.advice.Retired++
		}
		return false, st.h2
	case http.StateIdle:
		if st == nil {
			return true, false
		}
		st.idleSince = now
		st.retire = false
		return true, st.h2
	case http.StateHijacked, http.StateClosed:
		delete(s.conns, c)
		s.changedLocked()
	}
	return false, false
}

// changedLocked wakes Shutdown, which waits for connections to close or to
// show they are HTTP/2.
func (s *Server) changedLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// idleCapLocked is how long a connection may stay idle now.
func (s *Server) idleCapLocked() time.Duration {
	if s.idleEnd {
		return 0
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
		// HTTP/2 connections end with GOAWAY: net/http's own, after its
		// IdleTimeout or at http.Server.Shutdown (see Shutdown).
		if !st.h2 && !st.idleSince.IsZero() && now.Sub(st.idleSince) >= limit {
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
	if s.tls.Load() && ci.Discarded <= closeNotifyMax {
		// The client's close_notify: no request.
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
//     "Connection: close", so every connection ends at its next response;
//     the server keeps serving for Config.DrainDelay. On HTTP/2, that is a
//     GOAWAY, and connections accepted from now on serve on until step 4:
//     GOAWAY ends a connection without a race at any moment, while one
//     per response would cost a TLS handshake per request and can refuse
//     a request twice in a row, after which Go's client waits 1 s before
//     it retries.
//  2. The listener closes; connections already in the kernel's accept
//     queue are served rather than reset.
//  3. Connections end with their next response, which carries
//     "Connection: close". Idle HTTP/1 connections are held for
//     Config.DrainIdle (by default as long as ctx allows), then closed; a
//     request that arrives at that moment is rescued and answered, since
//     net/http is not shutting down yet.
//  4. Once no HTTP/1 connection is left, [http.Server.Shutdown] sends
//     GOAWAY on the HTTP/2 connections that are left; each closes when its
//     streams are done, plus net/http's 1 s for the GOAWAY to arrive.
//  5. Shutdown waits for every connection and every lingering close, but
//     not for hijacked connections (as [http.Server.Shutdown] does not);
//     their closes still linger.
//
// If ctx ends first, it closes everything at once ([http.Server.Close] and
// [linger.Listener.Shutdown]) and returns an error that wraps ctx.Err() and
// says what was still open. Calling
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
	hold := time.NewTimer(time.Until(s.idleCloseTime(ctx)))
	defer hold.Stop()
	http2Left, err := s.waitConns(ctx, hold.C, func(st *connState) bool { return !st.h2 })
	if err != nil {
		return s.abort(ctx)
	}
	if http2Left {
		// net/http's HTTP/2 server registered its graceful shutdown, a
		// GOAWAY on every connection, with RegisterOnShutdown; only
		// http.Server.Shutdown runs it. Its own idle closes race requests
		// on HTTP/1 connections, but none is left.
		if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
			return s.abort(ctx)
		}
	}
	if _, err := s.waitConns(ctx, hold.C, func(*connState) bool { return true }); err != nil {
		return s.abort(ctx)
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

// idleCloseTime is when the drain closes the connections still idle.
func (s *Server) idleCloseTime(ctx context.Context) time.Time {
	now := time.Now()
	hold := s.cfg.DrainIdle
	if dl, ok := ctx.Deadline(); ok {
		bound := s.cfg.Listener.LingerTimeout
		if bound == 0 {
			bound = linger.DefaultLingerTimeout
		}
		last := dl.Add(-bound - time.Second)
		if hold == 0 || now.Add(hold).After(last) {
			return last
		}
	}
	if hold == 0 {
		hold = s.cfg.CloseIdleAfter
	}
	return now.Add(hold)
}

// waitConns waits until no connection for which counts is true is left,
// and reports whether any connection is left. When hold fires, the drain
// stops holding idle connections and closes them.
func (s *Server) waitConns(ctx context.Context, hold <-chan time.Time, counts func(*connState) bool) (bool, error) {
	for {
		s.mu.Lock()
		n := 0
		for _, st := range s.conns {
			if counts(st) {
				n++
			}
		}
		left := len(s.conns) > 0
		if n == 0 {
			s.mu.Unlock()
			return left, nil
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-hold:
			s.mu.Lock()
			s.idleEnd = true
			s.mu.Unlock()
			s.closeIdle()
		case <-ctx.Done():
			return left, ctx.Err()
		}
	}
}

func (s *Server) abort(ctx context.Context) error {
	err := s.shutdownErr(ctx)
	s.srv.Close()
	if ln := s.ln.Load(); ln != nil {
		ln.Shutdown(ctx)
	}
	s.stopSweeping()
	return err
}

// shutdownErr says what was still open when Shutdown's context ended.
func (s *Server) shutdownErr(ctx context.Context) error {
	s.mu.Lock()
	idle, active := 0, 0
	for _, st := range s.conns {
		if st.idleSince.IsZero() {
			active++
		} else {
			idle++
		}
	}
	s.mu.Unlock()
	var lingering int64
	if ln := s.ln.Load(); ln != nil {
		lingering = ln.Stats().Lingering
	}
	return fmt.Errorf("lingerhttp: Shutdown ended with %d connections serving a request, %d idle and %d lingering closes: %w", active, idle, lingering, ctx.Err())
}
