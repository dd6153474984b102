package linger

// Rescue: serve the request that was already waiting when the owner closed.
//
// A keep-alive server closes an idle connection at the instant the balancer
// sends its next request on it. When the request's bytes are already in our
// receive queue at Close, nothing on the wire is lost yet: the connection can
// be handed back to the server instead of being closed. Two hand-backs:
//
//   - deliver: a Read is in flight (a server closing an idle connection
//     from another goroutine while the connection's goroutine waits in
//     Read). Close becomes a no-op and that Read returns the bytes; the
//     owner serves the request and closes again later.
//   - re-accept: no Read is in flight (net/http's idle timeout: its Read
//     returned the deadline error, then it closed). The connection comes out
//     of Accept again, as a new one, bytes intact.
//
// Both only while the listener is open. Only a connection at a message boundary qualifies: the owner has read
// nothing since its last write (so no half-read message sits in its
// buffers), it has not shut its write side, and the queued bytes pass
// Config.Rescue, checked with MSG_PEEK so nothing is consumed.

import (
	"syscall"
	"time"
)

// rescuePeek is how many queued bytes the guard sees at most: enough for
// the request line of any request nginx would forward by default
// (large_client_header_buffers 8k).
const rescuePeek = 8 << 10

// HTTP1Request is the [Config.Rescue] guard for HTTP/1.x servers: it
// reports whether head begins with a complete HTTP/1.x request line,
// method SP request-target SP "HTTP/1." (RFC 9112 §3). TLS records, the
// HTTP/2 connection preface ("PRI * HTTP/2.0") and anything cut mid-line
// do not qualify.
func HTTP1Request(head []byte) bool {
	i := 0
	for i < len(head) && isTokenChar(head[i]) {
		i++
	}
	if i == 0 || i == len(head) || head[i] != ' ' {
		return false
	}
	i++
	start := i
	for i < len(head) && head[i] > ' ' && head[i] != 0x7f {
		i++
	}
	if i == start || i == len(head) || head[i] != ' ' {
		return false
	}
	i++
	const version = "HTTP/1."
	return len(head)-i >= len(version) && string(head[i:i+len(version)]) == version
}

// isTokenChar reports whether b is a tchar of RFC 9110 §5.6.2.
func isTokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// rescue hands the connection back if it qualifies, reporting whether it
// did. It runs from close, before anything irreversible.
func (c *Conn) rescue(rc syscall.RawConn, info CloseInfo, start time.Duration) bool {
	l := c.l
	lastWrite := c.lastWrite.Load()
	switch {
	case rc == nil || info.Unread <= 0,
		c.rescuedAt.Load() == lastWrite, // rescued before and nothing served since: no ping-pong
		c.lastRead.Load() > lastWrite,   // a message may be half-read into the owner's buffers
		c.shutWrite.Load(), c.abortive.Load(), c.sawEOF.Load(),
		!l.accepting():
		// Once the listener is closed the server is going away, and
		// net/http drops a request it reads after Shutdown began
		// (server.go: "if c.server.shuttingDown() { return }" after
		// readRequest): a rescue would read the request only to lose it.
		return false
	}
	head := peekBytes(rc, min(info.Unread, rescuePeek))
	if len(head) == 0 || !l.cfg.Rescue(head) {
		return false
	}

	if c.reading.Load() > 0 {
		// deliver: the Read in flight returns the queued bytes.
		c.rescuedAt.Store(lastWrite)
		c.closed.Store(false)
		c.finishRescue(info, start)
		return true
	}
	// re-accept: a new Conn on the same socket, with no deadlines.
	nc := newConn(l, c.conn)
	nc.rescuedAt.Store(nc.lastWrite.Load())
	if err := c.conn.SetDeadline(time.Time{}); err != nil || !l.requeue(c, nc) {
		return false
	}
	c.closing.Store(true)
	c.finishRescue(info, start)
	return true
}

// finishRescue reports a rescue; the connection itself lives on.
func (c *Conn) finishRescue(info CloseInfo, start time.Duration) {
	l := c.l
	info.Outcome = Rescued
	info.Linger = monotonic() - start
	l.stats.outcomes[Rescued].Add(1)
	if l.cfg.OnClose != nil {
		l.cfg.OnClose(info)
	}
}
