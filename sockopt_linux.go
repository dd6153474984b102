//go:build linux

package linger

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// unreadBytes returns how many bytes wait unread in the receive queue
// (SIOCINQ, tcp(7) and unix(7)).
func unreadBytes(rc syscall.RawConn) (int, bool) {
	var n int
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}); cerr != nil || err != nil {
		return 0, false
	}
	return n, true
}

// copyFreeDiscard says discardTCP works here.
const copyFreeDiscard = true

// discardTCP waits until the socket is readable, then drops up to max bytes
// without copying them: for TCP, recv with MSG_TRUNC discards the data
// instead of filling a buffer (tcp(7), since Linux 2.4), so a lingering
// connection holds no read buffer. It returns io.EOF at the peer's FIN and
// honours the read deadline.
func discardTCP(rc syscall.RawConn, max int) (int, error) {
	var n int
	var err error
	rerr := rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, 0, uintptr(max), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case 0:
				n = int(r)
				if n == 0 {
					err = io.EOF
				}
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait for readability, or the deadline
			default:
				err = e
				return true
			}
		}
	})
	if rerr != nil {
		return 0, rerr
	}
	return n, err
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

// acceptQueued accepts every connection the kernel has already completed
// on a listening socket, without blocking. Closing a listener resets them
// otherwise: inet_csk_listen_stop() (net/ipv4/inet_connection_sock.c)
// disconnects each child still in the accept queue, which sends a RST.
func acceptQueued(rc syscall.RawConn) []net.Conn {
	var conns []net.Conn
	rc.Control(func(fd uintptr) {
		for {
			nfd, _, err := unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				return // EAGAIN: the queue is empty
			}
			f := os.NewFile(uintptr(nfd), "")
			c, err := net.FileConn(f) // dups the descriptor
			f.Close()
			if err == nil {
				conns = append(conns, c)
			}
		}
	})
	return conns
}
