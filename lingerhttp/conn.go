package lingerhttp

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linger-go/linger"
)

// The connection net/http serves, and the deadline of its wait for the
// next request.
//
// After a response on a keep-alive HTTP/1 connection, net/http marks it
// StateIdle, sets the read deadline to now + IdleTimeout, waits for the
// first 4 bytes of the next request (bufio Peek), and only then sets the
// ReadHeaderTimeout deadline (net/http/server.go, conn.serve). Its
// IdleTimeout therefore bounds two different waits: the idle one, which
// races the balancer (the Server retires and closes those itself), and the
// start of a request that has begun to arrive, which races nothing. A
// Server holds back net/http's idle deadline while nothing arrives and
// puts one back as soon as the next request's first bytes do: the one
// plain net/http would have had (idle start + IdleTimeout) while it is
// still ahead, else ReadHeaderTimeout from the first byte, as net/http
// bounds every request head once it has begun. So a peer that sends part
// of a request and stops is closed when plain net/http would close it, or,
// on a connection plain net/http would already have closed, within the
// header timeout; a connection is never held longer for its bytes.

// connWait is where a connection is in net/http's wait for the next
// request.
type connWait uint8

const (
	waitNone     connWait = iota // not waiting: net/http's deadlines pass through
	waitIdle                     // StateIdle: net/http's idle deadline comes next
	waitDeferred                 // that deadline is held back; nothing has arrived
	waitHead                     // the next request's first bytes came
)

// conn is what net/http serves: the linger.Conn, whose methods it passes
// on (sendfile, CloseWrite, SyscallConn and the rest), with the idle
// deadline held back as described above.
type conn struct {
	*linger.Conn
	s *Server

	waiting atomic.Bool // wait != waitNone: Read's fast path
	h2c     atomic.Bool // it began with the HTTP/2 preface (RFC 9113 §3.4)
	started atomic.Bool // a Read has returned bytes
	served  atomic.Bool // the current request, which had no body, has been handled
	early   atomic.Bool // net/http holds bytes of the next request already

	mu     sync.Mutex
	wait   connWait
	idleAt time.Time // when net/http marked it idle

	// state is its entry in Server.conns while tracked (from StateNew
	// until StateClosed or StateHijacked), so that its state changes
	// and requests find it without a lookup by interface value.
	// Guarded by Server.mu.
	state   connState
	tracked bool
}

// NetConn returns the linger.Conn, so [linger.ConnOf] finds it under a
// *tls.Conn or this conn.
func (c *conn) NetConn() net.Conn { return c.Conn }

// Read reads from the linger.Conn; the first bytes of a request that
// arrive while net/http waits for one put a deadline back.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		if !c.started.Load() {
			c.started.Store(true)
			// net/http reads the preface of prior-knowledge HTTP/2
			// before it reports the connection active; over TLS,
			// ALPN says it.
			c.h2c.Store(bytes.HasPrefix(b[:n], []byte("PRI ")))
		}
		if c.waiting.Load() {
			c.headBegins()
		} else if len(b) == 1 || c.served.Load() {
			// The next request's first bytes came before net/http
			// waits for it: its background read, which reads one byte
			// (net/http/server.go, connReader.backgroundRead), or, under
			// TLS, a record read once the handler of a request without
			// a body has returned (with a body, the reads after the
			// handler are net/http discarding what it left unread).
			c.early.Store(true)
		}
	}
	return n, err
}

func (c *conn) headBegins() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wait != waitIdle && c.wait != waitDeferred {
		return
	}
	c.wait = waitHead
	c.Conn.SetReadDeadline(c.s.headDeadline(c.idleAt, time.Now()))
}

// SetReadDeadline sets the read deadline, except net/http's idle one,
// which it holds back (see above).
func (c *conn) SetReadDeadline(t time.Time) error {
	if c.waiting.Load() {
		c.mu.Lock()
		switch c.wait {
		case waitIdle:
			if c.early.Load() {
				// The request has begun: plain net/http's deadline.
				c.wait = waitHead
				t = c.s.headDeadline(c.idleAt, time.Now())
				break
			}
			c.wait = waitDeferred
			c.mu.Unlock()
			// No deadline while idle: the Server's sweeper ends idle
			// connections, with rescue.
			return c.Conn.SetReadDeadline(time.Time{})
		case waitDeferred:
			// net/http's header deadline: the next request's first 4
			// bytes were already in its buffer.
			c.wait = waitHead
		}
		c.mu.Unlock()
	}
	return c.Conn.SetReadDeadline(t)
}

// setWaiting records whether net/http now waits for the next request on
// this HTTP/1 connection.
func (c *conn) setWaiting(waiting bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if waiting {
		c.wait, c.idleAt = waitIdle, time.Now()
	} else {
		c.wait = waitNone
		c.served.Store(false)
		c.early.Store(false)
	}
	c.waiting.Store(waiting)
}

// headDeadline is the read deadline for a request whose first bytes came
// at now, after an idle wait that began at idleAt.
func (s *Server) headDeadline(idleAt, now time.Time) time.Time {
	if s.idleTimeout > 0 {
		if d := idleAt.Add(s.idleTimeout); d.After(now) {
			return d // plain net/http's
		}
	}
	switch {
	case s.headTimeout > 0:
		return now.Add(s.headTimeout)
	case s.idleTimeout > 0:
		return now.Add(s.idleTimeout)
	}
	return time.Time{} // net/http sets none either
}

// connOf returns the conn c is or wraps (under a *tls.Conn), or nil.
func connOf(c net.Conn) *conn {
	for range 4 {
		switch x := c.(type) {
		case *conn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// listener is what net/http accepts from: the linger.Listener, returning
// conns.
type listener struct {
	*linger.Listener
	s *Server
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc, ok := c.(*linger.Conn)
	if !ok {
		return c, nil
	}
	return &conn{Conn: lc, s: l.s}, nil
}
