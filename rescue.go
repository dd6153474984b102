package linger

// Rescue: serve the request that was already waiting when an idle connection
// was closed.
//
// A keep-alive server closes an idle connection at the instant the balancer
// sends its next request on it. When the request's bytes are already in our
// receive queue, nothing on the wire is lost yet: the owner's goroutine,
// waiting in Read for exactly such a request, can be given it instead of the
// close.
//
// Handing bytes back to a server that closed a connection is an attack
// surface: servers close on purpose after a rejected request, an unread
// body, a hijacked stream, a "Connection: close" response, and what is
// queued then is exactly what they chose never to parse. So a rescue needs
// positive statements, never an inference:
//
//   - the owner's: the connection is idle at a message boundary with none
//     of the peer's bytes in its own buffers, and its next Read waits for
//     a new message (SetIdle; net/http says so with ConnState StateIdle,
//     which it sets only after a reusable response);
//   - the closer's: this close is an idle close by a server that goes on
//     serving (CloseIdle, not Close);
//   - and the facts: a Read the owner began after its idle mark is waiting
//     (it is the one that will get the bytes, in the same stream, so the
//     server parses them exactly as it would have had the close come a
//     moment later), no Read begun before the mark is, and the queued bytes
//     pass Config.Rescue, checked with MSG_PEEK so nothing is consumed.
//
// The connection never comes out of Accept again: listeners wrapped above
// linger (TLS, PROXY protocol) and the server see each connection once.

// rescuePeek is how many queued bytes the guard sees at most: enough for the
// request line of any request nginx would forward by default
// (large_client_header_buffers 8k).
const rescuePeek = 8 << 10

// HTTP1Request is the [Config.Rescue] guard for HTTP/1.x servers: it reports
// whether head begins with a complete HTTP/1.x request line, method SP
// request-target SP "HTTP/1." (RFC 9112 §3). TLS records, the HTTP/2
// connection preface ("PRI * HTTP/2.0") and anything cut mid-line do not
// qualify.
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

// SetIdle records the owner's statement that the connection is idle: every
// message it has read is answered, it holds none of the peer's bytes in its
// own buffers, and its next Read waits for a new message. Call
// SetIdle(false) as soon as that stops being true. Only [Conn.CloseIdle]
// uses it. net/http says so with its ConnState hook: StateNew and StateIdle
// are idle (it sets StateIdle only after a response that leaves the
// connection reusable), every other state is not:
//
//	srv.ConnState = func(c net.Conn, st http.ConnState) {
//		if lc := linger.ConnOf(c); lc != nil {
//			lc.SetIdle(st == http.StateNew || st == http.StateIdle)
//		}
//	}
//
// SetIdle after Close does nothing.
func (c *Conn) SetIdle(idle bool) {
	if idle {
		c.markIdle()
	} else {
		c.markActive()
	}
}

// CloseIdle closes the connection if its owner has marked it idle
// ([Conn.SetIdle]) and reports whether it had; a connection in use is left
// alone. It is for a server that closes idle connections from another
// goroutine while it goes on serving, as package lingerhttp's idle sweeper
// does; a server that is shutting down should use Close, or a request it is
// handed would be read and dropped.
//
// If the next request is already waiting, it is handed to the owner instead
// and the connection stays open (outcome [Rescued]), when all of these hold:
// [Config.Rescue] is set; a Read the owner began after its idle mark is
// waiting, and no Read begun before it; the owner has not shut its write
// side nor set SO_LINGER 0; the peer has not closed; Listener.Shutdown's
// context has not ended; and the queued bytes, seen without being consumed,
// pass Config.Rescue. The waiting Read returns them. The mark is spent:
// another rescue needs the owner to mark the connection idle again. Rescue
// needs the receive queue's length and MSG_PEEK: it works on Linux and never
// triggers elsewhere.
//
// A Close that comes while CloseIdle decides makes the decision a close.
func (c *Conn) CloseIdle() bool {
	taken, rescuing := c.takeIdle()
	if !taken {
		return false
	}
	p := c.closeInfo()
	if rescuing && c.rescue(p) {
		return true
	}
	c.close(p)
	return true
}

// rescue decides on a connection in phase rescuing, and reports whether it
// was handed back; if not, it is closing.
func (c *Conn) rescue(p pendingClose) bool {
	l := c.l
	ok := false
	if p.rc != nil && p.info.Unread > 0 && !l.isAborting() {
		head := peekBytes(p.rc, min(p.info.Unread, rescuePeek))
		ok = len(head) > 0 && l.cfg.Rescue(head)
	}
	// The waiting Read may take the bytes while we decide, up to the
	// decision itself: the owner then holds the start of its next message,
	// in its own stream, and a close would lose a request it is already
	// reading, and serve it without an answer.
	if !c.decideRescue(ok) {
		return false
	}
	c.report(p.info, p.start, Rescued)
	return true
}
