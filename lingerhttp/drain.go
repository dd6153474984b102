package lingerhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/linger-go/linger"
)

// Shutdown: the deploy drain.

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
//     Config.DrainIdle (by default DefaultDrainIdle), then closed; a
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
		return errors.New("lingerhttp: Handoff before Serve")
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
		return errors.New("lingerhttp: Handoff after Shutdown began")
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
	// Serve's accept loop takes the connections Close took from the
	// kernel's accept queue before it sees the listener closed, and
	// registers each (StateNew) before its next Accept. Once Serve has
	// returned, every connection this server will serve is counted below;
	// counting earlier could find none left while some still wait in
	// that backlog, and ln.Shutdown would close them unserved.
	s.mu.Lock()
	served := s.served
	s.mu.Unlock()
	if served != nil {
		select {
		case <-served:
		default: // an ended ctx must not abort a Serve that has returned
			select {
			case <-served:
			case <-ctx.Done():
				return s.abort(ctx)
			}
		}
	}
	hold, stopHolding := context.WithDeadline(ctx, s.idleCloseTime(ctx))
	defer stopHolding()
	http2Left, err := s.waitConns(ctx, hold, func(st *connState) bool { return !st.h2 })
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
	if _, err := s.waitConns(ctx, hold, func(*connState) bool { return true }); err != nil {
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
	hold := s.cfg.DrainIdle
	if hold == 0 {
		hold = DefaultDrainIdle
	}
	t := time.Now().Add(hold)
	if dl, ok := ctx.Deadline(); ok {
		bound := s.cfg.Linger.LingerTimeout
		if bound == 0 {
			bound = linger.DefaultLingerTimeout
		}
		// In time for the lingering close to end before the deadline.
		if last := dl.Add(-bound - time.Second); t.After(last) {
			return last
		}
	}
	return t
}

// waitConns waits until no connection for which counts is true is left,
// and reports whether any connection is left. When hold ends before ctx,
// the drain stops holding idle connections and closes them.
func (s *Server) waitConns(ctx, hold context.Context, counts func(*connState) bool) (bool, error) {
	left := false
	done := func() bool { // with s.mu held
		left = len(s.conns) > 0
		for _, st := range s.conns {
			if counts(st) {
				return false
			}
		}
		return true
	}
	stop := hold
	s.mu.Lock()
	if s.idleEnd {
		stop = ctx
	}
	s.mu.Unlock()
	for !s.changed.Wait(stop.Done(), done) {
		if err := ctx.Err(); err != nil {
			return left, err
		}
		s.mu.Lock()
		s.idleEnd = true
		s.mu.Unlock()
		s.closeIdle()
		stop = ctx
	}
	return left, nil
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
	return fmt.Errorf("lingerhttp: Shutdown ended with %d active, %d idle and %d lingering connections: %w", active, idle, lingering, ctx.Err())
}
