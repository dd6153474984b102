package lingerhttp

import (
	"net"
	"net/http"
	"time"

	"github.com/linger-go/linger"
)

// Connection states and the idle sweeper.

type connState struct {
	idleSince time.Time // zero while a request is being served
	fresh     bool      // no request yet: the first one is no reuse
	retire    bool      // the current request's response carries Connection: close
	h2        bool      // HTTP/2: ends with GOAWAY, never by the sweeper
	drainBorn bool      // accepted after Shutdown began
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
		s.changed.Broadcast() // Shutdown waits for HTTP/1 connections first
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
		s.changed.Broadcast()
	}
	return false, false
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

// sweep closes connections idle past the cap until stop is closed. The
// channel is its argument, not read from the Server when it starts: a
// Shutdown right after Serve may have closed and cleared it by then.
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
