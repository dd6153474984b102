//go:build linux

package linger

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// unread returns how many bytes wait unread in c's receive queue
// (SIOCINQ, tcp(7) and unix(7)), or -1 if it cannot tell.
func (c *Conn) unread(rc syscall.RawConn) int { return c.fdOp(rc, inqBytes) }

func inqBytes(fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return -1
	}
	return n
}

// fdOp runs op on c's descriptor (rc.Control) and returns its result, or
// -1 if the descriptor is closed.
func (c *Conn) fdOp(rc syscall.RawConn, op func(fd int) int) int {
	x := fdCalls.Get().(*fdCall)
	x.op, x.result = op, -1
	err := rc.Control(x.run)
	n := x.result
	x.op = nil
	fdCalls.Put(x)
	if err != nil {
		return -1
	}
	return n
}

// fdCall is one fdOp's call of RawConn.Control. Its function, which
// Control makes escape, is made once per fdCall, and fdCalls are pooled:
// a close runs two such operations (SIOCINQ and the dup), which would
// otherwise cost an allocation each.
type fdCall struct {
	op     func(fd int) int
	result int
	run    func(fd uintptr)
}

var fdCalls = sync.Pool{New: func() any {
	x := new(fdCall)
	x.run = func(fd uintptr) { x.result = x.op(int(fd)) }
	return x
}}

// dupOf duplicates fd as F_DUPFD_CLOEXEC does, or returns -1.
func dupOf(fd int) int {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return dup
}

// copyFreeDiscard says discardTCP works here.
const copyFreeDiscard = true

// shutdownWakesWriters says that a TCP socket's shutdown(SHUT_WR) wakes
// the Writes blocked in it, which then fail: inet_shutdown
// (net/ipv4/af_inet.c) wakes the socket's waiters, Go's epoll among them
// (sk_state_change), tcp_poll (net/ipv4/tcp.c) reports it writable once
// SEND_SHUTDOWN is set, and the Write that Go's poller retries gets EPIPE.
// (A Unix socket's is not reported writable while its peer's queue is
// full, so its Writes are woken with a deadline.)
const shutdownWakesWriters = true

// discardTCP waits until the socket is readable, then drops up to max bytes
// without copying them: for TCP, recv with MSG_TRUNC discards the data
// instead of filling a buffer (tcp(7), since Linux 2.4), so a lingering
// connection holds no read buffer. It returns io.EOF at the peer's FIN and
// honours the read deadline.
func discardTCP(rc syscall.RawConn, max int) (int, error) {
	x := discardCalls.Get().(*discardCall)
	x.max, x.n, x.err = max, 0, nil
	rerr := rc.Read(x.run)
	n, err := x.n, x.err
	x.err = nil
	discardCalls.Put(x)
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}

// discardCall is one discardTCP's call of RawConn.Read, pooled as fdCall
// is: a lingering close in a goroutine calls it at least once, and its
// function with the two results it sets would otherwise cost three
// allocations each time.
type discardCall struct {
	max, n int
	err    error
	run    func(fd uintptr) bool
}

var discardCalls = sync.Pool{New: func() any {
	x := new(discardCall)
	x.run = x.recv
	return x
}}

// recv is discardCall's function for RawConn.Read: false to wait for
// readability (or the deadline), true when it has a result.
func (x *discardCall) recv(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, 0, uintptr(x.max), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			x.n = int(r)
			if x.n == 0 {
				x.err = io.EOF
			}
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for readability, or the deadline
		default:
			x.err = e
			return true
		}
	}
}

// setUserTimeout sets TCP_USER_TIMEOUT (RFC 5482), in milliseconds.
func setUserTimeout(rc syscall.RawConn, d time.Duration) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	}); cerr != nil {
		return cerr
	}
	return err
}

// setListenerOptions sets o on ln's listening socket, for the sockets
// it accepts to inherit (see sockoptsInherited), and reports whether all
// were set.
func setListenerOptions(ln *net.TCPListener, o socketOptions) bool {
	rc, err := ln.SyscallConn()
	if err != nil {
		return false
	}
	if cerr := rc.Control(func(fd uintptr) {
		err = setSocketOptions(int(fd), o)
	}); cerr != nil {
		return false
	}
	return err == nil
}

func setSocketOptions(fd int, o socketOptions) error {
	if !o.keepAlive {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0); err != nil {
			return err
		}
	} else {
		for _, opt := range [...]struct{ level, name, v int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, o.idle},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, o.interval},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, o.count},
		} {
			if err := unix.SetsockoptInt(fd, opt.level, opt.name, opt.v); err != nil {
				return err
			}
		}
	}
	if o.userTimeout >= 0 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, o.userTimeout)
	}
	return nil
}

// hasSocketOptions reports whether c's socket has o.
func hasSocketOptions(c syscall.Conn, o socketOptions) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	has := false
	rc.Control(func(fd uintptr) {
		get := func(level, name int) int {
			v, err := unix.GetsockoptInt(int(fd), level, name)
			if err != nil {
				return -1
			}
			return v
		}
		if (get(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0) != o.keepAlive {
			return
		}
		if o.keepAlive && (get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE) != o.idle ||
			get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL) != o.interval ||
			get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT) != o.count) {
			return
		}
		has = o.userTimeout < 0 || get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) == o.userTimeout
	})
	return has
}

// peekBytes returns up to n queued bytes without consuming them (MSG_PEEK).
func peekBytes(rc syscall.RawConn, n int) []byte {
	buf := make([]byte, n)
	var got int
	if cerr := rc.Control(func(fd uintptr) {
		got, _, _ = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); cerr != nil || got < 0 {
		return nil
	}
	return buf[:got]
}

// refuseNewConnections attaches a socket filter to a listening socket that
// drops segments opening a connection (SYN without ACK) and passes every
// other, so handshakes already under way still complete into the accept
// queue while no new one begins. A peer's dropped SYN is retransmitted
// (after 1 s, RFC 6298 §2) and then meets the closed port: a refused
// connect, which a balancer retries on another backend, instead of a
// connection that completes between the last accept and the close and is
// reset with its request (inet_csk_listen_stop). For a TCP socket, a
// classic BPF program sees the segment from its TCP header (tcp_filter in
// net/ipv4/tcp_ipv4.c runs on it after the IP header is pulled); byte 13
// holds the flags.
func refuseNewConnections(rc syscall.RawConn) error {
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 13},           // A = TCP flags
		{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0x12},        // A &= SYN|ACK
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x02, Jf: 1}, // SYN alone?
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},                          // drop
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff},                 // keep
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog)
	}); cerr != nil {
		return cerr
	}
	return err
}

// allowNewConnections removes the filter refuseNewConnections attached.
// The filter belongs to the socket, not to our descriptor: were the
// socket held by another process too (systemd socket activation, a
// restart's successor), it would go on dropping every new connection
// there after our close.
func allowNewConnections(fd int) {
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
}

// acceptQueued accepts every connection the kernel has already completed
// on a listening socket, without blocking. Closing a listener resets them
// otherwise: inet_csk_listen_stop() (net/ipv4/inet_connection_sock.c)
// disconnects each child still in the accept queue, which sends a RST.
func acceptQueued(rc syscall.RawConn) []net.Conn {
	var conns []net.Conn
	rc.Control(func(fd uintptr) { conns = acceptQueuedFD(int(fd)) })
	return conns
}

func acceptQueuedFD(fd int) []net.Conn {
	var conns []net.Conn
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return conns // EAGAIN: the queue is empty
		}
		f := os.NewFile(uintptr(nfd), "")
		c, err := net.FileConn(f) // dups the descriptor
		f.Close()
		if err == nil {
			conns = append(conns, c)
		}
	}
}

// closeRefusing closes a listening socket that refuses new handshakes
// (refuseNewConnections), and that another process may hold too, with
// closeGo, which closes Go's descriptor; it returns the connections that
// completed meanwhile. The filter must go (allowNewConnections), yet not
// while the socket can still take a handshake it would then reset: a dup
// keeps the socket open across Go's close (which waits for a blocked
// Accept to return, tens of microseconds), the queue is taken once more
// through it, and the filter goes just before the dup's close, two system
// calls apart. A SYN in that gap meets the closed listener at its ACK: in
// a test closing 8 listeners under 64 clients connecting in tight loops
// on loopback, 1 run in 40 saw one such reset.
func closeRefusing(rc syscall.RawConn, closeGo func() error) ([]net.Conn, error) {
	dup, err := dupFD(rc)
	if err != nil {
		rc.Control(func(fd uintptr) { allowNewConnections(int(fd)) })
		return nil, closeGo()
	}
	err = closeGo()
	conns := acceptQueuedFD(dup)
	allowNewConnections(dup)
	unix.Close(dup)
	return conns, err
}

// dupFD returns a second descriptor of rc's socket (F_DUPFD_CLOEXEC),
// which keeps the socket open across the close of rc's, and shares its
// open file's flags (O_NONBLOCK among them).
func dupFD(rc syscall.RawConn) (int, error) {
	dup, err := -1, error(nil)
	if cerr := rc.Control(func(fd uintptr) { dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return -1, cerr
	}
	return dup, err
}

// roundTrip is the shortest round trip the kernel has seen on a TCP
// connection (TCP_INFO's tcpi_min_rtt, Linux 4.6; from the handshake on):
// the path's own delay, which a handshake takes. The smoothed estimate
// (tcpi_rtt) is no good here: on a request-response connection it holds
// the peer's delayed ACKs, milliseconds.
func roundTrip(rc syscall.RawConn) (time.Duration, bool) {
	var info *unix.TCPInfo
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil || info.Min_rtt == 0 || info.Min_rtt == ^uint32(0) {
		return 0, false
	}
	return time.Duration(info.Min_rtt) * time.Microsecond, true
}

// isMPTCP reports whether ln's socket is MPTCP: its protocol (SO_PROTOCOL,
// socket(7)) is IPPROTO_MPTCP (262, Linux 5.6). Go listens with MPTCP by
// default from the go 1.24 line of a main module's go.mod on, where the
// kernel has it (GODEBUG multipathtcp; net/dial.go).
func isMPTCP(ln net.Listener) bool {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	proto := 0
	rc.Control(func(fd uintptr) { proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) })
	return proto == unix.IPPROTO_MPTCP
}
