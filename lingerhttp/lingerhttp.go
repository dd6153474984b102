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
// [Server.Handoff] drains a restart in place instead, where the listening
// socket lives on in a successor process (tableflip, systemd socket
// activation): no DrainDelay, ReadyHandler stays 200, and the accept
// queue is left to the successor.
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

	// Listener configures the linger.Listener that Serve wraps around its
	// listener. Rescue defaults to [linger.HTTP1Request], for the Server's
	// own idle closes only (see the package documentation); OnClose, if
	// set, is still called.
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
	handoff  atomic.Bool // the drain is Handoff's; set before draining

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
// until Shutdown, when it returns [http.ErrServerClosed]. Call it once.
func (s *Server) Serve(ln net.Listener) error {
	lln := linger.Wrap(ln, s.cfg.Listener)
	// The sweeper is set up under s.mu, where Shutdown decides to drain,
	// and gets its stop channel from here: a drain that stops sweeping
	// before the sweeper has run must still stop it.
	stop := make(chan struct{})
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		ln.Close() // as http.Server.Serve does after Shutdown
		return http.ErrServerClosed
	}
	s.sweepStop = stop
	s.sweeping.Add(1)
	s.mu.Unlock()
	go s.sweep(stop)
	s.ln.Store(lln)
	defer func() {
		// While Shutdown drains, its sweeper must outlive Serve, which
		// returns as soon as the listener is closed; Shutdown stops it.
		if !s.draining.Load() {
			s.stopSweeping()
		}
	}()

	err := s.srv.Serve(lln)
	if errors.Is(err, net.ErrClosed) && s.draining.Load() {
		err = http.ErrServerClosed
	}
	return err
}

// Listener returns the linger.Listener Serve is serving on, or nil before
// Serve.
func (s *Server) Listener() *linger.Listener { return s.ln.Load() }

// ReadyHandler answers 200 until Shutdown begins, then 503: point the
// balancer's health check at it. During [Server.Handoff] it keeps
// answering 200: the address is served on by the successor.
func (s *Server) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() && !s.handoff.Load() {
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
func (s *Server) sweep(stop <-chan struct{}) {
	defer s.sweeping.Done()
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
//  3. Connections end with their next response, which carries
//     "Connection: close". Those that stay idle are held for
//     Config.DrainIdle (by default as long as ctx allows), then closed; a
//     request that arrives at that moment is rescued and answered, since
//     net/http is not shutting down yet.
//  4. Shutdown waits for every connection and every lingering close, but
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
	s.mu.Unlock()
	return s.drain(ctx)
}

// Handoff drains the server, as Shutdown does, when its listening socket
// lives on in another process that accepts from it: the successor of a
// restart in place (github.com/cloudflare/tableflip passes the socket on
// exec), or the next instance of a systemd socket-activated service
// (systemd holds the socket meanwhile). Call it only then: that the socket
// lives on is your statement, and nothing can check it. A process stopped
// for good calls Shutdown.
//
// The address keeps serving, so Handoff differs from Shutdown in three
// ways:
//
//   - There is no DrainDelay: nothing needs to tell the balancer, and
//     new connections go to the successor at once.
//   - ReadyHandler keeps answering 200. A health check that reaches this
//     process on a connection it still serves would otherwise take the
//     address out of the balancer, and the successor with it.
//   - The listener is handed off ([linger.Listener.Handoff]): it stops
//     accepting and leaves the kernel's accept queue to the successor,
//     instead of taking it and serving it here.
//
// The rest is Shutdown's drain: every response from now on carries
// "Connection: close", so the balancer ends its connections to this
// process after their next response and opens new ones, which the
// successor accepts; connections that stay idle are held for DrainIdle,
// then closed with rescue; Handoff waits for every connection and
// lingering close. With tableflip the next upgrade waits for this process
// to exit, so a short DrainIdle (a few seconds) lets restarts follow each
// other sooner; a balancer under load reuses its idle connections within
// milliseconds.
//
// Handoff returns an error and changes nothing if Serve has not been
// called, if Serve's listener is not a socket another process can hold,
// or if Shutdown has begun (its drain goes on). Calling Handoff or
// Shutdown after Handoff waits for the same drain.
func (s *Server) Handoff(ctx context.Context) error {
	ln := s.ln.Load()
	if ln == nil {
		return errors.New("lingerhttp: Handoff before Serve: there is no listener to hand off")
	}
	s.mu.Lock()
	switch {
	case !s.draining.Load():
		// Draining before the listener closes, so that Serve, which
		// returns then, reports http.ErrServerClosed.
		s.drainEnd = time.Now()
		s.handoff.Store(true)
		s.draining.Store(true)
		if err := ln.Handoff(); err != nil {
			s.draining.Store(false)
			s.handoff.Store(false)
			s.mu.Unlock()
			return fmt.Errorf("lingerhttp: %w", err)
		}
	case !s.handoff.Load():
		s.mu.Unlock()
		return errors.New("lingerhttp: Handoff after Shutdown began: its listener closes and takes the accept queue; the Shutdown goes on")
	}
	s.mu.Unlock()
	return s.drain(ctx)
}

// drain is Shutdown's and Handoff's drain, once s.drainEnd is set.
func (s *Server) drain(ctx context.Context) error {
	s.mu.Lock()
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
	if ln != nil && !s.handoff.Load() { // Handoff has handed it off
		ln.Close()
	}
	hold := time.NewTimer(time.Until(s.idleCloseTime(ctx)))
	defer hold.Stop()
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
		case <-hold.C:
			s.mu.Lock()
			s.idleEnd = true
			s.mu.Unlock()
			s.closeIdle()
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
