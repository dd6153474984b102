package linger

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn is a connection accepted by a [Listener]. Its Close returns at once
// and closes gracefully in the background (see the package documentation).
// Everything the wrapped connection offers passes through: for a
// [*net.TCPConn] that includes sendfile and splice (ReadFrom, WriteTo), the
// half-closes, SyscallConn and the socket-option setters. A method the
// wrapped connection lacks returns a [*net.OpError] wrapping
// [errors.ErrUnsupported].
type Conn struct {
	conn net.Conn
	l    *Listener

	st       atomic.Uint64 // the lifecycle and the facts the close needs: see state.go
	rescueOn bool          // Config.Rescue is set: CloseIdle may hand a waiting Read its request
	lastIO   atomic.Int64  // monotonic time of the last byte read or written
	late     atomic.Int64  // bytes a Read got after Close, dropped

	// In the Listener's tracked connections (connSet), guarded by its mu.
	prev, next *Conn
	tracked    bool

	// Lingering in a goroutine of its own: in the Listener's lingerList
	// until then, guarded by its mu.
	lingerPrev, lingerNext *Conn
	lingerEnd              time.Duration
}

var (
	_ net.Conn                        = (*Conn)(nil)
	_ io.ReaderFrom                   = (*Conn)(nil)
	_ io.WriterTo                     = (*Conn)(nil)
	_ syscall.Conn                    = (*Conn)(nil)
	_ interface{ CloseWrite() error } = (*Conn)(nil)
	_ interface{ CloseRead() error }  = (*Conn)(nil)
)

func newConn(l *Listener, nc net.Conn) *Conn {
	c := &Conn{conn: nc, l: l, rescueOn: l.cfg.Rescue != nil}
	c.lastIO.Store(int64(monotonic()))
	return c
}

// ConnOf returns the [*Conn] c is or wraps, or nil. It follows NetConn
// methods, as [crypto/tls.Conn] has, so a ConnState hook of a server that
// serves TLS over a Listener finds the Conn under the *tls.Conn.
func ConnOf(c net.Conn) *Conn {
	for range 8 { // wrapping chains are short; a cycle must not hang
		switch x := c.(type) {
		case *Conn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// Detach tells the Listener that the connection's owner has handed it to
// code that no longer reports to the server, as net/http's Hijack does:
// [Listener.Shutdown] then does not wait for the connection to be closed,
// and does not close it when its context ends, as
// [net/http.Server.Shutdown] does not wait for hijacked connections. The
// connection works as before, and its Close still lingers; if that Close
// comes before Shutdown returns, Shutdown waits for the linger. With
// net/http, call it from the ConnState hook on [net/http.StateHijacked].
func (c *Conn) Detach() {
	c.setFlag(flagDetached)
	c.l.detach(c)
}

// NetConn returns the wrapped connection, as [crypto/tls.Conn.NetConn]
// does. Closing it directly bypasses the graceful close.
func (c *Conn) NetConn() net.Conn { return c.conn }

// Read reads from the connection. After Close it returns an error wrapping
// [net.ErrClosed].
func (c *Conn) Read(b []byte) (int, error) {
	t, ok := c.beginRead()
	if !ok {
		return 0, c.opError("read", net.ErrClosed)
	}
	n, err := c.conn.Read(b)
	s := c.endRead(t, n > 0)
	if n > 0 {
		if !s.has(flagHeard) {
			c.noteFirstBytes(b[:n])
		}
		if s.closed() {
			// A Read parked when Close woke it can still be handed bytes
			// that arrived meanwhile (the poller reports them ready). They
			// came after Close: they belong to the lingering close, which
			// counts them, not to the owner.
			c.late.Add(int64(n))
			return 0, c.opError("read", net.ErrClosed)
		}
		c.lastIO.Store(int64(monotonic()))
	}
	if err != nil {
		err = c.readErr("read", err)
	}
	return n, err
}

// Write writes to the connection. After Close it returns an error wrapping
// [net.ErrClosed].
func (c *Conn) Write(b []byte) (int, error) {
	if c.load().closed() {
		return 0, c.opError("write", net.ErrClosed)
	}
	n, err := c.conn.Write(b)
	if n > 0 {
		c.lastIO.Store(int64(monotonic()))
	}
	if err != nil {
		err = c.ioErr("write", err)
	}
	return n, err
}

// readErr notes the peer's FIN and reports errors caused by our own Close
// (which wakes blocked calls with a past deadline, or a TCP Write on Linux
// with its shutdown: EPIPE) as net.ErrClosed.
func (c *Conn) readErr(op string, err error) error {
	if err == io.EOF {
		c.setFlag(flagEOF)
		return err
	}
	return c.ioErr(op, err)
}

func (c *Conn) ioErr(op string, err error) error {
	if c.load().closed() {
		return c.opError(op, net.ErrClosed)
	}
	return err
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.conn.LocalAddr().Network(), Source: c.conn.LocalAddr(), Addr: c.conn.RemoteAddr(), Err: err}
}

// Close closes the connection: blocked Read and Write calls return errors
// wrapping [net.ErrClosed] and Close returns at once, while the lingering
// close runs in the background. A second Close returns an error wrapping
// net.ErrClosed.
func (c *Conn) Close() error {
	switch c.takeForClose() {
	case closeNow:
		c.close(c.closeInfo())
	case closeAgain:
		return c.opError("close", net.ErrClosed)
	}
	return nil
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines, as [net.Conn] does. After
// Close the deadlines belong to the lingering close and it returns an error
// wrapping net.ErrClosed.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.load().closed() {
		return c.opError("set", net.ErrClosed)
	}
	return c.conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline; see [Conn.SetDeadline].
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.load().closed() {
		return c.opError("set", net.ErrClosed)
	}
	return c.conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline; see [Conn.SetDeadline].
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.load().closed() {
		return c.opError("set", net.ErrClosed)
	}
	return c.conn.SetWriteDeadline(t)
}

// ReadFrom implements [io.ReaderFrom], so net/http's sendfile and splice
// paths reach the wrapped [*net.TCPConn].
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if c.load().closed() {
		return 0, c.opError("readfrom", net.ErrClosed)
	}
	var n int64
	var err error
	if rf, ok := c.conn.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{c.conn}, r)
	}
	if n > 0 {
		c.lastIO.Store(int64(monotonic()))
	}
	if err != nil {
		err = c.ioErr("readfrom", err)
	}
	return n, err
}

// WriteTo implements [io.WriterTo], so copies out of the connection reach
// the wrapped connection's splice path.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	t, ok := c.beginRead()
	if !ok {
		return 0, c.opError("writeto", net.ErrClosed)
	}
	var n int64
	var err error
	if wt, ok := c.conn.(io.WriterTo); ok {
		n, err = wt.WriteTo(w)
	} else {
		n, err = io.Copy(w, readerOnly{c.conn})
	}
	c.endRead(t, n > 0)
	if n > 0 {
		// The bytes went by unseen: the stream is not known to be TLS.
		c.setFlag(flagHeard)
		c.lastIO.Store(int64(monotonic()))
	}
	if err == nil {
		c.setFlag(flagEOF)
	} else {
		err = c.ioErr("writeto", err)
	}
	return n, err
}

// writerOnly and readerOnly hide ReadFrom and WriteTo from io.Copy, which
// would otherwise call them back.
type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

// CloseWrite shuts down the writing side (the FIN follows queued data).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		c.setFlag(flagShutWrite)
		return cw.CloseWrite()
	}
	return c.opError("close", errors.ErrUnsupported)
}

// CloseRead shuts down the reading side.
func (c *Conn) CloseRead() error {
	if cr, ok := c.conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return c.opError("close", errors.ErrUnsupported)
}

// SyscallConn returns the wrapped connection's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, c.opError("raw-control", errors.ErrUnsupported)
}

// SetLinger sets SO_LINGER as [net.TCPConn.SetLinger] does. SetLinger(0)
// makes Close abortive: the kernel sends RST and no lingering close runs
// (outcome [Aborted]).
func (c *Conn) SetLinger(sec int) error {
	sl, ok := c.conn.(interface{ SetLinger(int) error })
	if !ok {
		return c.opError("set", errors.ErrUnsupported)
	}
	err := sl.SetLinger(sec)
	if err == nil {
		if sec == 0 {
			c.setFlag(flagAbortive)
		} else {
			c.st.And(^uint64(flagAbortive))
		}
	}
	return err
}

// SetNoDelay sets TCP_NODELAY as [net.TCPConn.SetNoDelay] does. Accepted
// connections keep Go's default, on.
func (c *Conn) SetNoDelay(noDelay bool) error {
	return set(c, func(s interface{ SetNoDelay(bool) error }) error { return s.SetNoDelay(noDelay) })
}

// SetKeepAlive turns TCP keep-alive on or off, as [net.TCPConn.SetKeepAlive].
func (c *Conn) SetKeepAlive(keepalive bool) error {
	return set(c, func(s interface{ SetKeepAlive(bool) error }) error { return s.SetKeepAlive(keepalive) })
}

// SetKeepAlivePeriod sets the keep-alive idle time and interval, as
// [net.TCPConn.SetKeepAlivePeriod].
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	return set(c, func(s interface{ SetKeepAlivePeriod(time.Duration) error }) error { return s.SetKeepAlivePeriod(d) })
}

// SetKeepAliveConfig configures keep-alive, as
// [net.TCPConn.SetKeepAliveConfig].
func (c *Conn) SetKeepAliveConfig(cfg net.KeepAliveConfig) error {
	return set(c, func(s interface {
		SetKeepAliveConfig(net.KeepAliveConfig) error
	}) error {
		return s.SetKeepAliveConfig(cfg)
	})
}

// SetReadBuffer sets the socket's receive buffer size.
func (c *Conn) SetReadBuffer(bytes int) error {
	return set(c, func(s interface{ SetReadBuffer(int) error }) error { return s.SetReadBuffer(bytes) })
}

// SetWriteBuffer sets the socket's send buffer size.
func (c *Conn) SetWriteBuffer(bytes int) error {
	return set(c, func(s interface{ SetWriteBuffer(int) error }) error { return s.SetWriteBuffer(bytes) })
}

// set calls f with the wrapped connection if it has the setter f needs
// (S), as a *net.TCPConn has; otherwise the option is unsupported.
func set[S any](c *Conn, f func(S) error) error {
	if s, ok := c.conn.(S); ok {
		return f(s)
	}
	return c.opError("set", errors.ErrUnsupported)
}
