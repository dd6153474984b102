//go:build linux

package linger_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func sockopt(t *testing.T, c net.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.(*linger.Conn).SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }))
	require.NoError(t, gerr)
	return v
}

func keepAliveOn(t *testing.T, c net.Conn) (on, ok bool) {
	return sockopt(t, c, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0, true
}

func TestAcceptAppliesSocketOptions(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		cfg                    linger.Config
		idle, intvl, cnt, user int
	}{
		{"defaults", linger.Config{}, 15, 15, 9, 150_000},
		{"custom", linger.Config{KeepAliveIdle: 30 * time.Second, KeepAliveInterval: 5 * time.Second, KeepAliveCount: 3, UserTimeout: 20 * time.Second}, 30, 5, 3, 20_000},
		{"keep-alive off", linger.Config{KeepAliveIdle: -1}, -1, -1, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := listen(t, tc.cfg)
			_, srv := pair(t, s)
			on, _ := keepAliveOn(t, srv)
			assert.Equal(t, tc.idle > 0, on, "SO_KEEPALIVE")
			if tc.idle > 0 {
				assert.Equal(t, tc.idle, sockopt(t, srv, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE))
				assert.Equal(t, tc.intvl, sockopt(t, srv, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL))
				assert.Equal(t, tc.cnt, sockopt(t, srv, unix.IPPROTO_TCP, unix.TCP_KEEPCNT))
			}
			assert.Equal(t, tc.user, sockopt(t, srv, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT))
			assert.Equal(t, 1, sockopt(t, srv, unix.IPPROTO_TCP, unix.TCP_NODELAY), "Go's default NODELAY stays")
		})
	}
}

func queued(rc syscall.RawConn) int {
	var n int
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n
}

// waitQueued waits, without reading, until c's receive queue holds at
// least n bytes: RawConn.Read parks in Go's poller until c is readable.
func waitQueued(t *testing.T, c net.Conn, n int) {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Read(func(fd uintptr) bool {
		q, _ := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		return q >= n
	}))
}
