package linger

// The lingering close, RFC 9112 §9.6: "a server that closes a connection
// [...] SHOULD first half-close by closing only the write side of the
// read/write connection. The server SHOULD then continue to read from the
// connection until it receives a corresponding close by the client, or until
// the server is reasonably certain that its own TCP stack has received the
// client's acknowledgement of the packet(s) containing the server's last
// response."
//
// Why it matters on Linux: tcp_close() (net/ipv4/tcp.c) sends a RST instead
// of a FIN when the receive queue still holds unread data, and a socket that
// is fully closed answers any later segment with a RST. A RST that reaches
// the client before it has read our last response makes its kernel drop that
// response (the data still queued for the application is discarded when the
// RST is processed), and a proxy in front reports 502.

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// aLongTimeAgo is a deadline in the past: setting it wakes blocked calls.
var aLongTimeAgo = time.Unix(1, 0)

// pendingClose is what a close decides from: measured when the owner
// closes, before anything irreversible.
type pendingClose struct {
	info  CloseInfo
	start time.Duration // monotonic time of the owner's Close
	rc    syscall.RawConn
}

// closeInfo measures the connection as the owner closes it.
func (c *Conn) closeInfo() pendingClose {
	start := monotonic()
	p := pendingClose{
		info: CloseInfo{
			LocalAddr:  c.conn.LocalAddr(),
			RemoteAddr: c.conn.RemoteAddr(),
			Idle:       start - time.Duration(c.lastIO.Load()),
			Unread:     -1,
		},
		start: start,
		rc:    c.rawConn(),
	}
	if p.rc != nil {
		p.info.Unread = c.unread(p.rc)
	}
	return p
}

// close runs once, from the owner's Close or CloseIdle, in phase closing. It decides
// whether the connection can close at once or must linger, and starts the
// linger.
func (c *Conn) close(p pendingClose) {
	l := c.l
	info, start, rc := p.info, p.start, p.rc
	l.stats.open.Add(-1)
	s := c.load()
	if s.has(flagDetached) {
		l.retrack(c)
	}

	cw, canHalfClose := c.conn.(interface{ CloseWrite() error })
	switch {
	case s.has(flagAbortive):
		// SO_LINGER 0 is set: the kernel sends RST, as the user asked.
		c.conn.Close()
		c.finish(info, start, Aborted)
		return
	case l.isAborting():
		// Shutdown's context has ended: FIN after queued data, no waiting.
		if canHalfClose {
			cw.CloseWrite()
		}
		c.conn.Close()
		c.finish(info, start, Aborted)
		return
	case !canHalfClose:
		c.conn.Close()
		c.finish(info, start, Plain)
		return
	case info.Unread == 0 && s.has(flagEOF):
		// The peer closed first and everything was read: a plain close
		// sends no RST.
		c.conn.Close()
		c.finish(info, start, Clean)
		return
	}
	if l.stats.lingering.Add(1) > int64(l.cfg.MaxLingering) {
		l.stats.lingering.Add(-1)
		c.conn.Close()
		c.finish(info, start, Shed)
		return
	}
	// The FIN follows whatever the owner has queued, and leaves now, as a
	// plain close's would: sending it from the linger goroutine would wait
	// for that goroutine to be scheduled and widen the window in which the
	// peer's next request crosses it. shutdown(SHUT_WR) does not block.
	cw.CloseWrite()
	c.startLinger()
	// A close lingers in a goroutine of its own, or, on Linux, a TCP
	// connection's once more than a few linger at a time, in the
	// Listener's epoll set, watched by one goroutine for all
	// (lingerer_linux.go).
	if l.lingerer.take(c, info, start, rc) {
		return
	}
	// The owner's calls blocked in the socket must return (net.ErrClosed,
	// see Conn.ioErr). No Read can begin once the connection is closing,
	// so one is in flight only if it is counted now; and on Linux the
	// shutdown above has woken a TCP Write (shutdownWakesWriters). Under
	// connection churn the owner closes from its only goroutine, with
	// neither in flight, and the close spares the wake, and the linger
	// its wait for the Read.
	reading := c.load().reading()
	if _, isTCP := c.conn.(*net.TCPConn); reading || !isTCP || !shutdownWakesWriters {
		c.wakeOwner()
	}
	l.lingerStarted(c, start)
	j, _ := lingerJobs.Get().(*lingerJob)
	if j == nil {
		j = new(lingerJob)
		j.run = j.linger
	}
	j.c, j.info, j.start, j.rc, j.reading = c, info, start, rc, reading
	go j.run()
}

// lingerJob carries a close into its goroutine. It is pooled, with its
// function made once, so that starting the goroutine allocates nothing:
// `go c.linger(…)` would allocate the call's arguments each time.
type lingerJob struct {
	c       *Conn
	info    CloseInfo
	start   time.Duration
	rc      syscall.RawConn
	reading bool
	run     func()
}

var lingerJobs sync.Pool // of *lingerJob; not New, which would make an initialization cycle

func (j *lingerJob) linger() {
	c, info, start, rc, reading := j.c, j.info, j.start, j.rc, j.reading
	*j = lingerJob{run: j.run}
	lingerJobs.Put(j)
	c.linger(info, start, rc, reading)
}

// wakeOwner wakes Read and Write calls blocked in the owner's goroutines,
// which return net.ErrClosed (see Conn.ioErr), for a lingering close that
// keeps the Go conn open. One that moves the socket to a dup closes the Go
// conn instead, which wakes them too.
func (c *Conn) wakeOwner() { c.conn.SetDeadline(aLongTimeAgo) }

// linger reads and discards until the peer's FIN or a bound, then closes:
// the lingering close in a goroutine of its own. reading says that an
// owner's Read was in flight at the close, which woke it.
func (c *Conn) linger(info CloseInfo, start time.Duration, rc syscall.RawConn, reading bool) {
	l := c.l

	// A Read that was blocked when Close set the past deadline may not
	// have returned yet; if we cleared the deadline before it sees the
	// expired one, it would go back to sleep and take the peer's bytes.
	// The runtime lets one Read at a time hold the descriptor, so taking
	// the read lock once, while the deadline is still past, waits for it.
	if reading && rc != nil {
		rc.Read(func(uintptr) bool { return true })
	}
	// The drain waits with no deadline of its own: the Listener's reaper
	// sets a past one at LingerTimeout. Whatever deadline the owner or the
	// wake left goes; and if the reaper or Shutdown's cutLinger has
	// already set theirs, it is set again.
	c.conn.SetReadDeadline(time.Time{})
	if c.load().has(flagCut | flagExpired) {
		c.conn.SetReadDeadline(aLongTimeAgo)
	}

	limit := l.cfg.LingerBytes
	var err error
	var waitBuf []byte // see discard
	flowing := false
	for err == nil && info.Discarded <= limit {
		var n int
		n, err = c.discard(rc, int(min(limit+1-info.Discarded, 1<<20)), &waitBuf, flowing)
		info.Discarded += int64(n)
		flowing = n >= discardWaitSize
	}

	// Bytes the owner's racing Read got after Close (see Conn.Read). They
	// arrived before the peer's FIN, which the loop above has read, so the
	// Read that took them has almost surely counted them by now; if it
	// was preempted in between, they go uncounted and a crossed close
	// reads as clean. Waiting for it would cost every Read a lock.
	info.Discarded += c.late.Load()

	c.conn.Close()
	c.record(info, start, lingerOutcome(info, limit, err, c.load()))
	l.stats.lingering.Add(-1)
	l.lingerDone(c)
}

// lingerStarted counts a close about to linger in a goroutine of its own,
// and hands it to the reaper, which ends it at start+LingerTimeout.
func (l *Listener) lingerStarted(c *Conn, start time.Duration) {
	l.lingerGoroutines.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running++
	c.lingerEnd = start + l.cfg.LingerTimeout
	l.lingering.pushBack(c)
	if !l.reaperArmed {
		// Under connection churn many closes come and go between two
		// firings: the reaper is armed about once a LingerTimeout.
		l.reaperArmed = true
		if l.reaper == nil {
			l.reaper = time.AfterFunc(l.cfg.LingerTimeout, l.reap)
		} else {
			l.reaper.Reset(l.cfg.LingerTimeout)
		}
	}
}

// lingerDone undoes lingerStarted once the close has finished, and
// untracks the connection, under the same lock.
func (l *Listener) lingerDone(c *Conn) {
	l.lingerGoroutines.Add(-1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lingering.remove(c)
	l.conns.remove(c)
	l.running--
	l.changed.Broadcast()
}

// reap ends the closes lingering in goroutines past their LingerTimeout
// (outcome Timeout), and arms itself again for the next, while any
// lingers. The list is in the order the closes began, so nearly in the
// order of their ends: two closes whose owners' Close calls crossed
// between reading the clock and lingerStarted come out of order by as
// much, and the later of them is ended that much late.
func (l *Listener) reap() { l.reapAt(monotonic()) }

// reapAt is reap at monotonic time now. It returns how long from now the
// reaper fires next, or 0 if it is disarmed.
func (l *Listener) reapAt(now time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := l.lingering.head; c != nil; c = l.lingering.head {
		if c.lingerEnd > now {
			l.reaper.Reset(c.lingerEnd - now)
			return c.lingerEnd - now
		}
		l.lingering.remove(c)
		c.setFlag(flagExpired)
		c.conn.SetReadDeadline(aLongTimeAgo)
	}
	l.reaperArmed = false
	return 0
}

// stopReaper stops the reaper once no close lingers in a goroutine
// (Shutdown), so that no goroutine of the Listener fires after it.
func (l *Listener) stopReaper() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reaper != nil && l.lingering.head == nil {
		l.reaper.Stop()
		l.reaperArmed = false
	}
}

// lingerList is the Listener's closes lingering in goroutines, a list
// linked through them. Guarded by Listener.mu.
type lingerList struct{ head, tail *Conn }

func (q *lingerList) pushBack(c *Conn) {
	c.lingerPrev, c.lingerNext = q.tail, nil
	if q.tail == nil {
		q.head = c
	} else {
		q.tail.lingerNext = c
	}
	q.tail = c
}

// remove takes c off the list, if it is on it.
func (q *lingerList) remove(c *Conn) {
	if c.lingerPrev == nil && q.head != c {
		return
	}
	if c.lingerPrev == nil {
		q.head = c.lingerNext
	} else {
		c.lingerPrev.lingerNext = c.lingerNext
	}
	if c.lingerNext == nil {
		q.tail = c.lingerPrev
	} else {
		c.lingerNext.lingerPrev = c.lingerPrev
	}
	c.lingerPrev, c.lingerNext = nil, nil
}

// tlsAlertMax is the most one TLS alert record takes on the wire, a
// client's close_notify: 24 bytes in TLS 1.3 (5 of header, 2 of alert, 1
// of inner content type, 16 of AEAD tag; RFC 8446 §5.2), 31 in TLS 1.2
// with AES-GCM (8 more of explicit nonce; RFC 5288 §3), 23 with ChaCha20
// (RFC 7905). TLS clients send it when they close, so a lingering close
// of a healthy TLS connection discards it after our close, or finds it
// already queued when the server stopped reading first (net/http's HTTP/2
// server does). No request fits: the shortest HTTP/1 request with its
// blank line, "GET / HTTP/1.0\r\n\r\n", is 18 bytes, and a record adds at
// least 14 (TLS 1.3 with AES-CCM-8's 8-byte tag), 22 with Go's suites; an
// HTTP/2 HEADERS frame has 9 bytes of header alone. (CBC suites' alerts
// are larger, 37 bytes and up: those still count as Crossed or Pending.)
const tlsAlertMax = 31

// lingerOutcome says how a lingering close ended, from the bytes it
// discarded (the owner's late ones included), what ended its drain
// (io.EOF at the peer's FIN, os.ErrDeadlineExceeded at the deadline or at
// Shutdown's cut, nil past limit, or the socket's error) and the Conn's
// state (Shutdown's cut, TLS). On a TLS connection, a drain that ended on
// the peer's FIN having discarded no more than one alert record (its
// close_notify) is Clean: it is how a healthy TLS connection ends.
func lingerOutcome(info CloseInfo, limit int64, err error, s state) Outcome {
	if info.Discarded > limit {
		return Overflow
	}
	if err != io.EOF {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && s.has(flagCut):
			return Aborted
		case errors.Is(err, os.ErrDeadlineExceeded):
			return Timeout
		default:
			return Reset
		}
	}
	switch {
	case s.has(flagTLS) && info.Discarded <= tlsAlertMax:
		return Clean
	case info.Unread > 0:
		return Pending
	case info.Discarded > 0:
		return Crossed
	default:
		return Clean
	}
}

// cutLinger ends a lingering close at once (Shutdown's context ended).
func (c *Conn) cutLinger() {
	c.setFlag(flagCut)
	if c.load().closed() {
		c.conn.SetReadDeadline(aLongTimeAgo)
		c.l.lingerer.cut()
	}
}

// discard reads and drops up to max bytes. It returns io.EOF at the peer's
// FIN.
//
// Where it must read into a buffer (not Linux, or a connection that a
// listener under linger wraps), a lingering close mostly waits, for the
// peer's FIN, blocked in that Read: it waits with a small buffer of its
// own (*waitBuf, made on first use), and reads into a pooled 32 KiB one,
// which it holds only for that Read, while bytes flow (the last read
// filled the small one). A waiting close then holds discardWaitSize bytes,
// not 32 KiB (measured with BenchmarkLingeringMemory's goroutine row: 36
// KB a lingering close with the pooled buffer held while waiting).
func (c *Conn) discard(rc syscall.RawConn, max int, waitBuf *[]byte, flowing bool) (int, error) {
	if _, isTCP := c.conn.(*net.TCPConn); isTCP && rc != nil && copyFreeDiscard {
		return discardTCP(rc, max)
	}
	if !flowing {
		if *waitBuf == nil {
			*waitBuf = make([]byte, discardWaitSize)
		}
		return c.conn.Read((*waitBuf)[:min(max, discardWaitSize)])
	}
	buf := discardBufs.Get().(*[]byte)
	defer discardBufs.Put(buf)
	return c.conn.Read((*buf)[:min(max, len(*buf))])
}

// discardWaitSize is the buffer a lingering close waits with (see
// discard): more than a TLS close_notify (tlsAlertMax), so the healthy end
// of a TLS connection needs no other.
const discardWaitSize = 512

var discardBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// finish records a finished close and untracks the connection.
func (c *Conn) finish(info CloseInfo, start time.Duration, o Outcome) {
	c.record(info, start, o)
	c.l.untrack(c)
}

// record marks the connection closed and reports how its close ended.
func (c *Conn) record(info CloseInfo, start time.Duration, o Outcome) {
	c.l.stats.discarded.Add(info.Discarded)
	c.markClosed()
	c.report(info, start, o)
}

// report counts a close's outcome, or a rescue, and tells Config.OnClose.
func (c *Conn) report(info CloseInfo, start time.Duration, o Outcome) {
	l := c.l
	info.Outcome = o
	info.Linger = monotonic() - start
	l.stats.outcomes[o].Add(1)
	if l.cfg.OnClose != nil {
		l.cfg.OnClose(info)
	}
}

func (c *Conn) rawConn() syscall.RawConn {
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
