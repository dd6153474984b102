//go:build !linux

package linger

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// unread cannot tell the receive queue's length portably.
func (c *Conn) unread(syscall.RawConn) int { return -1 }

const copyFreeDiscard = false

// shutdownWakesWriters: elsewhere a close wakes the owner's blocked Writes
// with a deadline.
const shutdownWakesWriters = false

// discardTCP is Linux's copy-free drain; elsewhere the drain reads into a
// pooled buffer.
func discardTCP(syscall.RawConn, int) (int, error) { return 0, errors.ErrUnsupported }

// setUserTimeout: TCP_USER_TIMEOUT is Linux's; elsewhere it is skipped.
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }

// setListenerOptions: elsewhere each accepted connection gets its options.
func setListenerOptions(*net.TCPListener, socketOptions) bool { return false }

// hasSocketOptions is not asked elsewhere (see setListenerOptions).
func hasSocketOptions(syscall.Conn, socketOptions) bool { return false }

// peekBytes is not needed: without unreadBytes, rescue never triggers.
func peekBytes(syscall.RawConn, int) []byte { return nil }

// refuseNewConnections: elsewhere the listener closes as it is.
func refuseNewConnections(syscall.RawConn) error { return errors.ErrUnsupported }

// acceptQueued: elsewhere the accept queue is left to the kernel.
func acceptQueued(syscall.RawConn) []net.Conn { return nil }

// roundTrip: elsewhere Close stops no handshakes, so it needs none.
func roundTrip(syscall.RawConn) (time.Duration, bool) { return 0, false }

// closeRefusing: nothing was refused elsewhere.
func closeRefusing(_ syscall.RawConn, closeGo func() error) ([]net.Conn, error) {
	return nil, closeGo()
}

// isMPTCP: Close stops no handshakes elsewhere, so MPTCP changes nothing.
func isMPTCP(net.Listener) bool { return false }
