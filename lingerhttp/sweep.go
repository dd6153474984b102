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
	hc := connOf(c)
	// The protocol: ALPN's choice over TLS, known from the first request
	// on (HTTP/1) or from the client's preface (HTTP/2), which both set
	// StateActive; the preface itself without TLS.
	h2 := state == http.StateActive && (negotiatedHTTP2(c) || hc != nil && hc.h2c.Load())
	idle, h2 := s.trackState(c, hc, state, h2)
	if hc != nil {
		// net/http's wait for the next request on HTTP/1; HTTP/2 has
		// no such wait, and its server ends idle connections itself.
		hc.setWaiting(state == http.StateIdle && idle && !h2)
	}
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
// whether it is an HTTP/2 connection. hc is the conn under c, if any.
func (s *Server) trackState(c net.Conn, hc *conn, state http.ConnState, h2 bool) (idle, isH2 bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked(c, hc)
	if st != nil && h2 && !st.h2 {
		st.h2 = true
		s.changed.Broadcast() // Shutdown waits for HTTP/1 connections first
	}
	switch state {
	case http.StateNew:
		if hc != nil {
			st = &hc.state // no allocation of its own
			hc.tracked = true
		} else {
			st = new(connState)
		}
		*st = connState{idleSince: now, fresh: true, drainBorn: s.draining.Load()}
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
		st.retire = s.retireAfter > 0 && gap > s.retireAfter
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
		if hc != nil {
			hc.tracked = false
		}
		s.changed.Broadcast()
	}
	return false, false
}

// stateLocked returns c's entry in s.conns, or nil: from the conn under
// c, hc, when there is one.
func (s *Server) stateLocked(c net.Conn, hc *conn) *connState {
	if hc == nil {
		return s.conns[c]
	}
	if !hc.tracked {
		return nil
	}
	return &hc.state
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
	if s.retireAfter > 0 {
		interval = min(interval, max(s.retireAfter/4, 10*time.Millisecond))
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

// closeIdle closes the connections that have been idle past the cap, and
// during the drain's idle close (idleEnd) those net/http still reports as
// idle or new although a request has begun to arrive on them.
func (s *Server) closeIdle() {
	now := s.now()
	s.mu.Lock()
	limit := s.idleCapLocked()
	draining := s.idleEnd
	var idle []net.Conn
	var fresh []bool
	for c, st := range s.conns {
		// HTTP/2 connections end with GOAWAY: net/http's own, after its
		// IdleTimeout or at http.Server.Shutdown (see Shutdown).
		if !st.h2 && !st.idleSince.IsZero() && now.Sub(st.idleSince) >= limit {
			idle = append(idle, c)
			fresh = append(fresh, st.fresh && now.Sub(st.idleSince) < s.newConnGrace())
		}
	}
	s.mu.Unlock()
	for i, c := range idle {
		// A lingering close, only if net/http is still idle on it; a
		// request already queued is rescued: the connection's goroutine,
		// waiting in Read, gets it and serves it.
		lc := linger.ConnOf(c)
		if lc == nil {
			c.Close()
			continue
		}
		// Noted before: a close's outcome can be reported before
		// CloseIdle returns. (Had net/http closed the connection itself
		// in the instant between the note and a refusal, that close
		// would count as ours.)
		s.noteIdleClose(lc)
		if lc.CloseIdle() {
			continue
		}
		s.forgetIdleClose(lc)
		if draining && !fresh[i] {
			// The first bytes of a request came, and its head has not:
			// net/http still reports the connection idle (or new), and
			// http.Server.Shutdown would close it now (a new one after
			// 5 s). Without rescue: a request that has begun is not
			// waiting whole in the socket.
			c.Close()
		}
	}
}

// newConnGrace is how long the drain waits for a new connection's first
// request: DrainIdle, at most net/http's 5 s (http.Server.Shutdown treats
// a connection that is still new after 5 s as idle).
func (s *Server) newConnGrace() time.Duration {
	return min(s.cfg.DrainIdle, 5*time.Second)
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
