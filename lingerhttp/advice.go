package lingerhttp

import (
	"log"
	"net"
	"time"

	"github.com/linger-go/linger"
)

// What the Server learns from the closes it sees.

// Advice is what the server learned about its idle timeout from the
// connections it saw.
type Advice struct {
	// Lost counts requests that met one of the Server's idle closes:
	// they crossed our FIN on the wire (outcome crossed) or were waiting
	// unread and could not be rescued (outcome pending). Closes net/http
	// makes itself (after "Connection: close", an unread body, HTTP/1.0)
	// are not counted: plain net/http leaves those bytes unread too.
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

// noteIdleClose notes that lc is about to be closed by the Server as idle:
// only such a close can lose a request to the idle race. A close net/http
// makes itself, after "Connection: close" or an unread body, leaves what
// is queued unread as plain net/http does, and teaches nothing about the
// idle timeout.
func (s *Server) noteIdleClose(lc *linger.Conn) {
	s.mu.Lock()
	s.idleShut[closeKey(lc.LocalAddr(), lc.RemoteAddr())] = struct{}{}
	s.mu.Unlock()
}

// forgetIdleClose undoes noteIdleClose when CloseIdle left lc open.
func (s *Server) forgetIdleClose(lc *linger.Conn) {
	s.mu.Lock()
	delete(s.idleShut, closeKey(lc.LocalAddr(), lc.RemoteAddr()))
	s.mu.Unlock()
}

func closeKey(local, remote net.Addr) string {
	if local == nil || remote == nil {
		return ""
	}
	return local.String() + " " + remote.String()
}

// noteClose learns from linger's close outcomes: a request lost to one of
// the Server's idle closes.
func (s *Server) noteClose(ci linger.CloseInfo) {
	s.mu.Lock()
	if len(s.idleShut) == 0 {
		// None of the Server's idle closes is under way: most closes,
		// which spare the key's formatting.
		s.mu.Unlock()
		return
	}
	key := closeKey(ci.LocalAddr, ci.RemoteAddr)
	_, ours := s.idleShut[key]
	delete(s.idleShut, key) // its close is over, or it was rescued
	// A TLS client's close_notify alone is Clean (linger's Outcome).
	lost := ours && (ci.Outcome == linger.Crossed || ci.Outcome == linger.Pending)
	if !lost {
		s.mu.Unlock()
		return
	}
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
	logf("lingerhttp: a request was lost to an idle close after %v idle (%v); peers reused connections after up to %v idle; suggested idle timeout above %v (see Server.Advice)",
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
