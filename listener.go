package linger

import (
	"context"
	"fmt"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Listener is a [net.Listener] whose connections close gracefully: see the
// package documentation. Create one with [Wrap] or [Listen]. Its methods
// are safe for concurrent use.
type Listener struct {
	ln    net.Listener
	cfg   Config // with defaults applied
	stats counters

	lingerers sync.WaitGroup // one per lingering close goroutine

	mu       sync.Mutex
	conns    map[*Conn]struct{} // accepted, close not yet finished
	changed  chan struct{}      // closed and cleared when conns shrinks; nil if nobody waits
	aborting bool               // Shutdown's context ended
	closed   bool               // Close was called
	backlog  []*Conn            // taken from the kernel's accept queue at Close, for Accept
	accepts  atomic.Int32       // Accept calls in progress

	// With Config.Rescue, Accept takes connections from a loop that
	// accepts from ln, and rescued connections from requeued.
	acceptOnce sync.Once
	accepted   chan acceptResult
	requeued   chan *Conn    // guarded by mu for sends: never after closed
	done       chan struct{} // closed by Close
	loops      sync.WaitGroup

	optErr [numSockopts]sync.Once
}

// Wrap returns a Listener that accepts from ln and gives every accepted
// connection the socket options and graceful close configured by cfg.
// Wrap panics if cfg is invalid, with the error [Listen] would return;
// use Listen, or check the Config yourself, where cfg comes from input.
func Wrap(ln net.Listener, cfg Config) *Listener {
	if err := cfg.validate(); err != nil {
		panic(err.Error())
	}
	l := &Listener{
		ln:    ln,
		cfg:   cfg.withDefaults(),
		conns: make(map[*Conn]struct{}),
		done:  make(chan struct{}),
	}
	if l.cfg.Rescue != nil {
		l.accepted = make(chan acceptResult)
		l.requeued = make(chan *Conn, maxRequeued)
	}
	return l
}

// maxRequeued bounds rescued connections waiting for Accept; beyond it a
// close lingers instead.
const maxRequeued = 256

type acceptResult struct {
	c   *Conn
	err error
}

// Listen announces on the local network address, as [net.Listen] does,
// and wraps the listener with cfg. It returns an error naming the field
// if cfg is invalid.
func Listen(network, address string, cfg Config) (*Listener, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// Keep-alive is set per connection in Accept, from cfg.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), network, address)
	if err != nil {
		return nil, err
	}
	return Wrap(ln, cfg), nil
}

// Accept waits for and returns the next connection, a [*Conn]. Errors of
// the wrapped listener are returned unchanged, so servers' back-off on
// temporary errors keeps working; after [Listener.Close] the error
// satisfies errors.Is(err, net.ErrClosed). A socket option the kernel
// rejects never fails Accept: it is skipped and reported to
// [Config.ErrorLog] once.
func (l *Listener) Accept() (net.Conn, error) {
	l.accepts.Add(1)
	defer l.accepts.Add(-1)
	if l.cfg.Rescue == nil {
		c, err := l.accept()
		if err != nil {
			if c := l.takeBacklog(); c != nil {
				return c, nil
			}
			return nil, err // a nil *Conn must not become a non-nil net.Conn
		}
		return c, nil
	}
	l.acceptOnce.Do(func() {
		l.loops.Add(1)
		go l.acceptLoop()
	})
	select {
	case c := <-l.requeued:
		return c, nil
	default:
	}
	select {
	case c := <-l.requeued:
		return c, nil
	case r := <-l.accepted:
		if r.err != nil {
			if c := l.takeBacklog(); c != nil {
				return c, nil
			}
			return nil, r.err
		}
		return r.c, nil
	case <-l.done:
		if c := l.takeBacklog(); c != nil {
			return c, nil
		}
		return nil, l.closedErr()
	}
}

// takeBacklog returns the next connection Close took from the kernel's
// accept queue, or nil.
func (l *Listener) takeBacklog() *Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.backlog) == 0 {
		return nil
	}
	c := l.backlog[0]
	l.backlog = l.backlog[1:]
	return c
}

// accept accepts one connection from the wrapped listener.
func (l *Listener) accept() (*Conn, error) {
	nc, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	c := newConn(l, nc)
	l.applySockopts(c)
	if !l.track(c) {
		// Shutdown gave up on its connections while this one was being
		// accepted: do not hand out a connection nobody will wait for.
		c.Close()
		return nil, l.closedErr()
	}
	return c, nil
}

// acceptLoop feeds Accept when rescued connections must be merged in. It
// is paced by Accept: it accepts the next connection only once the last
// result was taken, and it stops when the listener closes.
func (l *Listener) acceptLoop() {
	defer l.loops.Done()
	for {
		c, err := l.accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.done:
			if c != nil { // accepted before Close: Accept still returns it
				l.mu.Lock()
				l.backlog = append(l.backlog, c)
				l.mu.Unlock()
			}
			return
		}
	}
}

func (l *Listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: l.ln.Addr().Network(), Addr: l.ln.Addr(), Err: net.ErrClosed}
}

// requeue hands nc, a rescue of old, to Accept, if the listener is open and
// the queue has room.
func (l *Listener) requeue(old, nc *Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.aborting {
		return false
	}
	select {
	case l.requeued <- nc:
	default:
		return false
	}
	delete(l.conns, old)
	l.conns[nc] = struct{}{}
	return true
}

// Close stops accepting, closing the wrapped listener. Accepted and
// lingering connections are left alone; see [Listener.Shutdown] to wait for
// them. Rescued connections that Accept had not returned yet are closed.
//
// Connections the kernel had already completed but the server had not
// accepted would be reset by the close (clients see ECONNRESET, a proxy
// 502). On Linux, Close first takes them from the accept queue, and
// Accept returns them before it reports the listener closed: a server that
// calls Accept until it fails, as net/http.Server does, serves them.
// Those that no Accept takes are closed, with a FIN, by
// [Listener.Shutdown].
func (l *Listener) Close() error {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	l.mu.Unlock()
	if first {
		l.takeAcceptQueue()
		close(l.done) // after the backlog is filled: Accept checks it on done
	}
	if first && l.requeued != nil {
		for {
			select {
			case c := <-l.requeued:
				c.Close()
				continue
			default:
			}
			break
		}
	}
	return l.ln.Close()
}

// Addr returns the wrapped listener's address.
func (l *Listener) Addr() net.Addr {
	return l.ln.Addr()
}

// Stats returns the listener's counters. It is cheap (atomic loads) and
// safe to call concurrently; the fields are read one by one, so a snapshot
// taken while connections change may be off by the changes under way.
func (l *Listener) Stats() Stats {
	return l.stats.snapshot()
}

// Shutdown closes the listener, then waits until every accepted connection
// has been closed by its owner and every lingering close has finished. It
// does not close open connections itself: pair it with the server's own
// shutdown (for net/http, call [net/http.Server.Shutdown] first, which
// closes idle connections and waits for active ones).
//
// If ctx ends first, Shutdown closes what is still open, cuts every linger
// short (outcome [Aborted]), waits for those closes to finish, which takes
// no longer than closing the sockets, and returns ctx.Err(). No goroutine
// of the Listener survives Shutdown.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.Close()
	if l.accepts.Load() == 0 {
		// Nobody is accepting: the connections Close took from the
		// kernel's accept queue would wait for nothing.
		for c := l.takeBacklog(); c != nil; c = l.takeBacklog() {
			c.Close()
		}
	}
	for {
		l.mu.Lock()
		if len(l.conns) == 0 {
			l.mu.Unlock()
			l.lingerers.Wait()
			l.loops.Wait()
			return nil
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()

		select {
		case <-changed:
		case <-ctx.Done():
			l.abort()
			l.loops.Wait()
			return ctx.Err()
		}
	}
}

// takeAcceptQueue moves the kernel's completed connections to l.backlog.
func (l *Listener) takeAcceptQueue() {
	sc, ok := l.ln.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	for _, nc := range acceptQueued(rc) {
		c := newConn(l, nc)
		l.applySockopts(c)
		if !l.track(c) {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.backlog = append(l.backlog, c)
		l.mu.Unlock()
	}
}

// abort closes every tracked connection now and waits for their closes.
func (l *Listener) abort() {
	l.mu.Lock()
	l.aborting = true
	conns := make([]*Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()

	for _, c := range conns {
		c.Close() // closes at once while l.aborting; no-op if the owner closed it
		c.cutLinger()
	}
	l.lingerers.Wait()
}

// accepting reports whether the listener is open.
func (l *Listener) accepting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.closed && !l.aborting
}

func (l *Listener) isAborting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.aborting
}

// track adds c to the connections Shutdown waits for. It reports false
// once Shutdown has given up waiting.
func (l *Listener) track(c *Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.accepted.Add(1)
	l.stats.open.Add(1)
	if l.aborting {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

// untrack removes c once its close has finished and wakes Shutdown.
func (l *Listener) untrack(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// epoch anchors the monotonic clock readings kept in Conn as int64.
var epoch = time.Now()

func monotonic() time.Duration { return time.Since(epoch) }

// The socket options applied in Accept, each reported at most once.
const (
	optKeepAlive = iota
	optUserTimeout
	optAbortive
	optHalfClose
	numSockopts
)

var sockoptNames = [numSockopts]string{"TCP keep-alive", "TCP_USER_TIMEOUT", "SO_LINGER 0", "half-close"}

// applySockopts sets the configured options on a new connection. Options
// the connection does not support (not TCP) are skipped; errors are
// reported once per option and never fail Accept.
func (l *Listener) applySockopts(c *Conn) {
	tc, ok := c.conn.(*net.TCPConn)
	if !ok {
		if _, ok := c.conn.(interface{ CloseWrite() error }); !ok {
			l.reportOnce(optHalfClose, fmt.Errorf("the wrapped listener returns %T, which hides CloseWrite: these connections close plainly (outcome plain), without lingering; wrap the TCP listener itself and put other listener wrappers outside linger", c.conn))
		}
		return
	}
	cfg := &l.cfg
	ka := net.KeepAliveConfig{Enable: false}
	if cfg.KeepAliveIdle > 0 {
		ka = net.KeepAliveConfig{Enable: true, Idle: cfg.KeepAliveIdle, Interval: cfg.KeepAliveInterval, Count: cfg.KeepAliveCount}
	}
	l.reportOnce(optKeepAlive, tc.SetKeepAliveConfig(ka))
	if cfg.UserTimeout > 0 {
		if rc, err := tc.SyscallConn(); err == nil {
			l.reportOnce(optUserTimeout, setUserTimeout(rc, cfg.UserTimeout))
		}
	}
	if cfg.AbortiveClose {
		l.reportOnce(optAbortive, c.SetLinger(0))
	}
}

func (l *Listener) reportOnce(opt int, err error) {
	if err == nil {
		return
	}
	l.optErr[opt].Do(func() {
		logf := log.Printf
		if l.cfg.ErrorLog != nil {
			logf = l.cfg.ErrorLog.Printf
		}
		logf("linger: %s on accepted connections is not possible, skipping it (reported once): %v", sockoptNames[opt], err)
	})
}
