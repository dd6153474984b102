package lingerhttp

import (
	"log"
	"time"

	"github.com/linger-go/linger"
)

// What the Server learns from the closes it sees.

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
