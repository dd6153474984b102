package linger

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/linger-go/linger/internal/cond"
)

// Listener is a [net.Listener] whose connections close gracefully: see the
// package documentation. Create one with [Wrap] or [Listen]. Its methods
// are safe for concurrent use.
type Listener struct {
	ln    net.Listener
	cfg   Config // with defaults applied
	stats counters

	st        atomic.Uint64 // the lifecycle: see state.go (lphase)
	closeDone chan struct{} // closed when the first Close or Handoff has closed ln
	owned     bool          // Listen made ln: no other process holds its socket; set before Listen returns

	mu      sync.Mutex
	conns   connSet   // accepted, close not yet finished, not detached while open
	running int       // lingering-close goroutines not yet returned
	changed cond.Cond // broadcast when conns or running shrink; L is &mu
	backlog []*Conn   // taken from the kernel's accept queue at Close, for Accept

	// lingerGoroutines counts the closes lingering in goroutines of their
	// own, not in the epoll set (Linux: see maxLingerGoroutines).
	lingerGoroutines atomic.Int64

	// Those closes in the order they began, and the one timer that ends
	// them at LingerTimeout (reap), so that a close arms no timer of its
	// own. Guarded by mu.
	lingering   lingerList
	reaper      *time.Timer
	reaperArmed bool

	sockopts atomic.Int32 // where accepted connections get their socket options: sockoptsFrom*
	optErr   [numSockopts]sync.Once
	tlsWarn  sync.Once // a TLS listener under linger, reported once
	watchErr sync.Once // the kernel refused to watch a lingering close

	lingerer lingerer // Linux: lingering TCP closes in one epoll set (lingerer_linux.go)
}

// Wrap returns a Listener that accepts from ln and gives every accepted
// connection the socket options and graceful close configured by cfg.
//
// Wrap returns no error, so it panics on invalid arguments, as
// [regexp.MustCompile] does: a nil ln ("linger: Wrap of a nil listener"),
// or an invalid cfg, with the error [Listen] would return. Use Listen, or
// check the Config first, where cfg comes from input.
//
// On Linux, Wrap sets cfg's keep-alive and TCP_USER_TIMEOUT options on a
// *net.TCPListener's own socket too: the sockets it accepts inherit them,
// so Accept need not set them again on each, unless the listener's Accept
// sets other values of its own (as net.Listen's does where cfg's
// keep-alive differs from Go's default of 15 s, 15 s and 9 probes).
//
// On Linux, Wrap reports to [Config.ErrorLog] a listener that is MPTCP,
// which Go 1.24 and later create by default: on it, Close cannot stop new
// handshakes (see [Listener.Close]).
func Wrap(ln net.Listener, cfg Config) *Listener {
	if isNil(ln) {
		panic(nilListenerError(ln))
	}
	if err := cfg.validate(); err != nil {
		panic(err)
	}
	l := &Listener{
		ln:        ln,
		cfg:       cfg.withDefaults(),
		closeDone: make(chan struct{}),
	}
	l.changed.L = &l.mu
	l.sockopts.Store(sockoptsFromEachConn)
	if tl, ok := ln.(*net.TCPListener); ok && setListenerOptions(tl, l.cfg.socketOptions()) {
		// Go's TCPListener applies its ListenConfig's options to every
		// connection it accepts, so the first one tells for all.
		l.sockopts.Store(sockoptsUnknown)
	}
	if isMPTCP(ln) {
		l.logf("linger: listener %v is MPTCP: Close cannot stop its new handshakes", ln.Addr())
	}
	return l
}

// isNil reports whether ln is nil, or a nil pointer in an interface: a
// nil *net.TCPListener dereferences nil in Addr.
func isNil(ln net.Listener) bool {
	if ln == nil {
		return true
	}
	v := reflect.ValueOf(ln)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

func nilListenerError(ln net.Listener) error {
	if ln == nil {
		return errors.New("linger: Wrap of a nil listener")
	}
	return fmt.Errorf("linger: Wrap of a nil listener (%T)", ln)
}

// Listen announces on the local network address, as [net.Listen] does,
// and wraps the listener with cfg. A TCP listener is plain TCP, not
// MPTCP, so that Close can stop new handshakes (see [Listener.Close]),
// and its socket is the Listener's alone, so Close leaves no gap. It
// returns an error naming the field if cfg is invalid.
func Listen(network, address string, cfg Config) (*Listener, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// Go's Accept sets no keep-alive: the accepted sockets inherit cfg's
	// from the listening socket (Wrap).
	lc := net.ListenConfig{KeepAlive: -1}
	// Plain TCP, also where Go would listen with MPTCP: Close stops new
	// handshakes with a socket filter, which MPTCP sockets refuse.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), network, address)
	if err != nil {
		return nil, err
	}
	l := Wrap(ln, cfg)
	l.owned = true
	return l, nil
}

// Accept waits for and returns the next connection, a [*Conn]. Errors of
// the wrapped listener are returned unchanged, so servers' back-off on
// temporary errors keeps working; after [Listener.Close] the error
// satisfies errors.Is(err, net.ErrClosed). A socket option the kernel
// rejects never fails Accept: it is skipped and reported to
// [Config.ErrorLog] once. Each accepted socket is returned once.
func (l *Listener) Accept() (net.Conn, error) {
	l.noteAccept(+1)
	defer l.noteAccept(-1)
	nc, err := l.ln.Accept()
	if err != nil {
		if l.lload().closing() {
			// Close takes the queue once more as the socket closes:
			// report the listener closed only after that.
			<-l.closeDone
		}
		if c := l.takeBacklog(); c != nil {
			return c, nil
		}
		return nil, err // a nil *Conn must not become a non-nil net.Conn
	}
	c := newConn(l, nc)
	l.applySockopts(c, true)
	if !l.track(c) {
		// Shutdown gave up on its connections while this one was being
		// accepted: do not hand out a connection nobody will wait for.
		c.Close()
		return nil, l.closedErr()
	}
	return c, nil
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

func (l *Listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: l.ln.Addr().Network(), Addr: l.ln.Addr(), Err: net.ErrClosed}
}

// Close stops accepting, closing the wrapped listener. Accepted and
// lingering connections are left alone; see [Listener.Shutdown] to wait for
// them.
//
// Connections the kernel had already completed but the server had not
// accepted would be reset by the close (clients see ECONNRESET, a proxy
// 502). On Linux, Close first takes them from the accept queue, and Accept
// returns them before it reports the listener closed: a server that calls
// Accept until it fails, as net/http.Server does, serves them. Those that
// no Accept takes are closed, with a FIN, by [Listener.Shutdown] (unless
// an Accept has run since Close). Only where the wrapped listener is Go's
// own (*net.TCPListener, *net.UnixListener): a listener of another type
// may do more in its Accept than accept (parse a PROXY header, check the
// peer's address), which connections taken from the queue would skip, so
// its queue is left to the kernel, as a plain close leaves it.
//
// So that no connection completes between the last accept and the close,
// a TCP listener first stops answering new handshakes (a socket filter
// drops their SYNs: the client retries in 1 s, finds the port closed and
// is refused, which a balancer retries elsewhere) and gives those under
// way two round trips of its peers (the kernel's measure on its open
// connections; 200 µs to 5 ms) to complete before it closes. The filter
// belongs to the socket, which another process may hold too (systemd
// socket activation, a restart's successor), so Close removes it again
// just before the socket closes; a SYN in the microseconds between the two
// can still be reset. A [Listen] listener is nobody else's and closes with
// its filter.
//
// The kernel refuses the filter on an MPTCP listener, which Go creates by
// default on Linux when the main module's go.mod says go 1.24 or later
// (GODEBUG multipathtcp): Close then reports it to [Config.ErrorLog] and
// closes without it, so a connection that completes while it closes is
// reset with its request. [Wrap] reports such a listener at once. Listen
// with plain TCP instead: [Listen] does, or
// [net.ListenConfig.SetMultipathTCP](false), or GODEBUG=multipathtcp=0.
//
// When another process goes on accepting from the same socket (a restart
// in place), use [Listener.Handoff] instead, which leaves the queue to it.
func (l *Listener) Close() error {
	if !l.beginClose() {
		// net/http closes a listener more than once (Serve's deferred
		// close, Shutdown's): a later Close must not close the socket
		// while the first one is still taking the accept queue.
		<-l.closeDone
		return l.ln.Close()
	}
	rc, refusing := l.takeAcceptQueue()
	defer l.endClose()
	if !refusing {
		return l.ln.Close()
	}
	// New handshakes are stopped; those under way complete into the
	// queue within a round trip. (Close holds up its caller for that
	// long: http.Server.Shutdown closes its idle connections only after
	// its listeners, and meanwhile net/http ends every connection after
	// its response, a race with the balancer's next request; so the wait
	// is the peers' round trip, not more.)
	time.Sleep(l.handshakeSettle())
	l.backlogAppend(acceptQueued(rc))
	if l.owned {
		// Nobody else holds the socket (Listen made it): it goes with
		// its filter, at once.
		return l.ln.Close()
	}
	late, err := closeRefusing(rc, l.ln.Close)
	l.backlogAppend(late)
	return err
}

// Handoff stops accepting, as Close does, when the listening socket lives
// on in another process that accepts from it: a successor that inherited
// it for a restart in place (github.com/cloudflare/tableflip passes it on
// exec), or systemd, which holds a socket unit's socket while the service
// restarts. Call it only then: that the socket lives on is your statement,
// and nothing in the kernel's API lets linger check it.
//
// Close takes (on Linux) the connections the kernel has completed but
// nobody has accepted, because closing the last descriptor of a listening
// socket resets them (inet_csk_listen_stop). When another process holds
// the socket, closing ours resets nothing, and those connections are the
// other process's to accept: taking them would make this process, which
// is going away, serve them, or, once nobody here accepts,
// [Listener.Shutdown] would close them with a FIN, unserved. Handoff
// leaves them in the queue. It also keeps a unix socket's file, which
// [net.UnixListener.Close] removes by default, so the successor stays
// reachable by its path.
//
// Accepted and lingering connections are left alone, as by Close; call
// Shutdown afterwards to wait for them. A later Close is a second close
// and returns an error wrapping [net.ErrClosed]: so may
// [net/http.Server.Shutdown], which closes the listeners its Serve still
// tracks; that error means nothing more. Handoff returns an error, and
// closes nothing, if the wrapped listener is not a socket (it has no
// SyscallConn, so no other process can hold it); after Close or Handoff it
// returns an error wrapping [net.ErrClosed], since Close may already have
// taken the queue. SO_REUSEPORT is another thing: a second socket on the
// same port has its own queue, which the kernel resets when its owner
// closes it (unless net.ipv4.tcp_migrate_req is set, Linux 5.14+);
// Handoff cannot save those.
func (l *Listener) Handoff() error {
	if _, ok := l.ln.(syscall.Conn); !ok {
		return fmt.Errorf("linger: Handoff: %T is not a socket another process can hold", l.ln)
	}
	if !l.beginClose() {
		return &net.OpError{Op: "close", Net: l.ln.Addr().Network(), Addr: l.ln.Addr(),
			Err: fmt.Errorf("linger: Handoff after Close or Handoff: %w", net.ErrClosed)}
	}
	defer l.endClose()
	if ul, ok := l.ln.(interface{ SetUnlinkOnClose(bool) }); ok {
		ul.SetUnlinkOnClose(false)
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
// closes idle connections and waits for active ones). Connections their
// owner has detached ([Conn.Detach], for hijacked ones) are not waited for
// unless they are already closing.
//
// If ctx ends first, Shutdown closes what is still open and not detached,
// cuts every linger short (outcome [Aborted]), waits for those closes to
// finish, which takes no longer than closing the sockets, and returns
// ctx.Err(). No goroutine of the Listener survives Shutdown, except the
// lingering close of a detached connection closed after it returned, which
// ends within LingerTimeout.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.Close()
	if s := l.lload(); s.accepts() == 0 && !s.has(lflagLoopSeen) {
		// Nobody is accepting, nor has since Close: the connections
		// Close took from the kernel's accept queue would wait for
		// nothing. (A server whose accept loop is between two calls at
		// this moment loses them: call Shutdown after the loop has
		// returned, as net/http's Serve does once Accept fails.)
		for c := l.takeBacklog(); c != nil; c = l.takeBacklog() {
			c.Close()
		}
	}
	if l.changed.Wait(ctx.Done(), func() bool { return l.conns.head == nil && l.running == 0 }) {
		l.stopReaper()
		return nil
	}
	l.abort()
	l.stopReaper()
	return ctx.Err()
}

// takeAcceptQueue moves the kernel's completed connections to l.backlog.
// On a TCP listener it first stops new handshakes (refuseNewConnections),
// so that none completes between the last accept and the close, and
// reports it: Close then takes the queue again after handshakeSettle,
// before it closes the socket.
func (l *Listener) takeAcceptQueue() (rc syscall.RawConn, refusing bool) {
	var sc syscall.Conn
	switch ln := l.ln.(type) {
	case *net.TCPListener:
		sc = ln
	case *net.UnixListener:
		sc = ln
	default:
		// Its Accept may do more than accept (see Close).
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	// Only TCP: a unix socket's connects carry no TCP header to filter on.
	if _, isTCP := l.ln.(*net.TCPListener); isTCP && runtime.GOOS == "linux" {
		err := refuseNewConnections(rc)
		refusing = err == nil
		if err != nil {
			l.logf("linger: Close cannot stop new handshakes on %v: %v", l.ln.Addr(), err)
		}
	}
	l.backlogAppend(acceptQueued(rc))
	return rc, refusing
}

// Close waits, new handshakes stopped, two round trips of the listener's
// own peers for the handshakes under way to complete: a handshake's last
// segment follows its SYN-ACK by one round trip. The round trip is the
// shortest the kernel has seen (TCP_INFO) on up to settleSamples open
// connections, the largest of those; with none open, or none measured,
// maxSettle.
const (
	minSettle     = 200 * time.Microsecond
	maxSettle     = 5 * time.Millisecond
	settleSamples = 8
)

// handshakeSettle is how long Close waits for handshakes under way.
func (l *Listener) handshakeSettle() time.Duration {
	var rcs []syscall.RawConn
	l.mu.Lock()
	for c := l.conns.head; c != nil; c = c.next {
		if len(rcs) == settleSamples {
			break
		}
		if rc := c.rawConn(); rc != nil {
			rcs = append(rcs, rc)
		}
	}
	l.mu.Unlock()
	var rtt time.Duration
	for _, rc := range rcs {
		if r, ok := roundTrip(rc); ok {
			rtt = max(rtt, r)
		}
	}
	if rtt == 0 {
		return maxSettle
	}
	return min(max(2*rtt, minSettle), maxSettle)
}

// backlogAppend tracks ncs and queues them for Accept.
func (l *Listener) backlogAppend(ncs []net.Conn) {
	for _, nc := range ncs {
		c := newConn(l, nc)
		l.applySockopts(c, false)
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
	l.startAbort()
	var conns []*Conn
	for c := l.conns.head; c != nil; c = c.next {
		conns = append(conns, c)
	}
	l.mu.Unlock()

	for _, c := range conns {
		c.Close() // closes at once while aborting; no-op if the owner closed it
		c.cutLinger()
	}
	l.changed.Wait(nil, func() bool { return l.running == 0 })
}

func (l *Listener) isAborting() bool { return l.lload().phase() == lAborting }

// track adds c to the connections Shutdown waits for. It reports false
// once Shutdown has given up waiting.
func (l *Listener) track(c *Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.accepted.Add(1)
	l.stats.open.Add(1)
	if l.isAborting() { // startAbort runs with l.mu held, too
		return false
	}
	l.conns.add(c)
	return true
}

// untrack removes c once its close has finished and wakes Shutdown.
func (l *Listener) untrack(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns.remove(c)
	l.changed.Broadcast()
}

// detach stops Shutdown from waiting for c while its owner has not closed
// it. Under l.mu, so that it orders with retrack.
func (l *Listener) detach(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.load().closed() {
		l.conns.remove(c)
		l.changed.Broadcast()
	}
}

// retrack makes Shutdown wait for the close of a detached connection whose
// owner has closed it.
func (l *Listener) retrack(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns.add(c)
}

// connSet is the connections a Listener tracks, a list linked through
// them, so that tracking a connection costs neither an allocation nor a
// hash. Guarded by Listener.mu.
type connSet struct{ head *Conn }

// add tracks c, if it is not tracked already.
func (s *connSet) add(c *Conn) {
	if c.tracked {
		return
	}
	c.tracked = true
	c.prev, c.next = nil, s.head
	if s.head != nil {
		s.head.prev = c
	}
	s.head = c
}

// remove stops tracking c, if it is tracked.
func (s *connSet) remove(c *Conn) {
	if !c.tracked {
		return
	}
	c.tracked = false
	if c.prev == nil {
		s.head = c.next
	} else {
		c.prev.next = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
}

// goroutineStarted and goroutineDone count the lingering-close goroutines,
// so Shutdown can promise none survives it.
func (l *Listener) goroutineStarted() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running++
}

func (l *Listener) goroutineDone() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running--
	l.changed.Broadcast()
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

// applySockopts sets the configured options on a new connection, which
// the wrapped listener's Accept returned (accepted) or Close took from the
// accept queue. Options the connection does not support (not TCP) are
// skipped; errors are reported once per option and never fail Accept.
func (l *Listener) applySockopts(c *Conn, accepted bool) {
	tc, ok := c.conn.(*net.TCPConn)
	if !ok {
		if _, ok := c.conn.(tlsConn); ok {
			l.tlsWarn.Do(func() { l.logf(tlsUnderLinger, c.conn) })
			return
		}
		if _, ok := c.conn.(interface{ CloseWrite() error }); !ok {
			l.optErr[optHalfClose].Do(func() {
				l.logf("linger: the wrapped listener returns %T, which hides CloseWrite: its connections close without lingering (outcome plain)", c.conn)
			})
		}
		return
	}
	cfg := &l.cfg
	if !l.inheritsSockopts(tc, accepted) {
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
	}
	if cfg.AbortiveClose {
		l.reportOnce(optAbortive, c.SetLinger(0))
	}
}

// Where accepted connections get their keep-alive and TCP_USER_TIMEOUT
// options (Listener.sockopts).
const (
	// Wrap set them on the listening socket; the first connection the
	// wrapped Accept returns tells whether they survive it.
	sockoptsUnknown = iota
	// Every accepted socket has them from the listening socket: on Linux
	// a socket accepted from a listening one starts as its copy, options
	// included (sk_clone_lock in net/core/sock.c; tcp_create_openreq_child
	// in net/ipv4/tcp_minisocks.c starts the keep-alive timer when
	// SO_KEEPALIVE is on), and the wrapped Accept sets none or the same.
	sockoptsInherited
	// Set on each connection: they could not be set on the listening
	// socket, or the wrapped Accept sets its own (a net.ListenConfig's
	// KeepAlive other than linger's, as net.Listen's 15 s where
	// Config.KeepAliveIdle is not).
	sockoptsFromEachConn
)

// inheritsSockopts reports whether tc has the configured keep-alive and
// TCP_USER_TIMEOUT options from the listening socket already, so that
// Accept spares their five system calls. A connection Close took from
// the accept queue (not accepted) was made by net.FileConn, which sets
// Go's default keep-alive: it never has them.
func (l *Listener) inheritsSockopts(tc *net.TCPConn, accepted bool) bool {
	if !accepted {
		return false
	}
	switch l.sockopts.Load() {
	case sockoptsInherited:
		return true
	case sockoptsFromEachConn:
		return false
	}
	got := sockoptsFromEachConn
	if hasSocketOptions(tc, l.cfg.socketOptions()) {
		got = sockoptsInherited
	}
	// Concurrent Accepts learn the same: one ListenConfig set both.
	l.sockopts.CompareAndSwap(sockoptsUnknown, int32(got))
	return got == sockoptsInherited
}

func (l *Listener) reportOnce(opt int, err error) {
	if err == nil {
		return
	}
	l.optErr[opt].Do(func() {
		l.logf("linger: cannot set %s on accepted connections: %v", sockoptNames[opt], err)
	})
}

// tlsConn is what a TLS connection has that a TCP connection has not: a
// handshake. crypto/tls's *Conn has it, and so do the TLS libraries that
// mimic it; checking the method spares the root package crypto/tls.
type tlsConn interface {
	HandshakeContext(context.Context) error
}

// tlsUnderLinger is the report for a TLS listener wrapped by linger
// ([Config.ErrorLog] says what it breaks). A *tls.Conn has CloseWrite, so
// the half-close report never fires for it, yet the layering breaks what
// servers learn from the *tls.Conn itself: net/http's Serve runs its TLS
// path (ALPN, HTTP/2, Request.TLS) only for a *tls.Conn (net/http/server.go,
// conn.serve).
const tlsUnderLinger = "linger: the wrapped listener returns %T, a TLS connection, which the server above linger cannot see: put linger under TLS"

// logf writes to Config.ErrorLog, or the standard logger.
func (l *Listener) logf(format string, args ...any) {
	if l.cfg.ErrorLog != nil {
		l.cfg.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}
