//go:build linux

package linger_test

import (
	"context"
	"fmt"
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
	return socketOption(t, c.(*linger.Conn), level, opt)
}

func socketOption(t *testing.T, c syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
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

// notTCPListener hides the *net.TCPListener it wraps, as a listener of
// another package would: linger cannot know what its Accept sets.
type notTCPListener struct{ net.Listener }

// Every accepted socket has Config's keep-alive and TCP_USER_TIMEOUT,
// whatever the wrapped listener's Accept sets of its own: on Linux, Wrap
// sets them on the listening socket, and Accept sets them again only on
// connections that lost them (a net.ListenConfig with another KeepAlive).
// Three connections each, so that those after the first, which tells
// Accept what the listener does, are checked too; and one that waited in
// the accept queue when the Listener closed, which Close takes itself.
func TestAcceptedSocketsHaveTheOptionsWhateverTheListener(t *testing.T) {
	listeners := map[string]func(t *testing.T, cfg linger.Config) *linger.Listener{
		"linger.Listen": func(t *testing.T, cfg linger.Config) *linger.Listener {
			l, err := linger.Listen("tcp", "127.0.0.1:0", cfg)
			require.NoError(t, err)
			return l
		},
		"Wrap(net.Listen)": func(t *testing.T, cfg linger.Config) *linger.Listener {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			return linger.Wrap(ln, cfg)
		},
		"Wrap(KeepAlive 40s)": func(t *testing.T, cfg linger.Config) *linger.Listener {
			lc := net.ListenConfig{KeepAlive: 40 * time.Second}
			ln, err := lc.Listen(context.Background(), "tcp", "[::1]:0")
			if err != nil {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			return linger.Wrap(ln, cfg)
		},
		"Wrap(KeepAlive off)": func(t *testing.T, cfg linger.Config) *linger.Listener {
			lc := net.ListenConfig{KeepAlive: -1}
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			require.NoError(t, err)
			return linger.Wrap(ln, cfg)
		},
		"Wrap(another listener type)": func(t *testing.T, cfg linger.Config) *linger.Listener {
			lc := net.ListenConfig{KeepAlive: 40 * time.Second}
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			require.NoError(t, err)
			return linger.Wrap(notTCPListener{ln}, cfg)
		},
	}
	configs := map[string]struct {
		cfg                    linger.Config
		idle, intvl, cnt, user int
	}{
		"defaults":       {linger.Config{}, 15, 15, 9, 150_000},
		"custom":         {linger.Config{KeepAliveIdle: 30 * time.Second, KeepAliveInterval: 5 * time.Second, KeepAliveCount: 3, UserTimeout: 20 * time.Second}, 30, 5, 3, 20_000},
		"rounded up":     {linger.Config{KeepAliveIdle: 1500 * time.Millisecond, KeepAliveInterval: 200 * time.Millisecond, KeepAliveCount: 2, UserTimeout: 2500 * time.Millisecond}, 2, 1, 2, 2_500},
		"keep-alive off": {linger.Config{KeepAliveIdle: -1}, -1, -1, -1, 0},
	}
	for lname, listen := range listeners {
		for cname, want := range configs {
			t.Run(lname+"/"+cname, func(t *testing.T) {
				l := listen(t, want.cfg)
				t.Cleanup(func() { l.Close() })
				check := func(what string, c syscall.Conn) {
					t.Helper()
					on := socketOption(t, c, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
					assert.Equal(t, want.idle > 0, on, "%s: SO_KEEPALIVE", what)
					if want.idle > 0 {
						assert.Equal(t, want.idle, socketOption(t, c, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE), "%s: TCP_KEEPIDLE", what)
						assert.Equal(t, want.intvl, socketOption(t, c, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL), "%s: TCP_KEEPINTVL", what)
						assert.Equal(t, want.cnt, socketOption(t, c, unix.IPPROTO_TCP, unix.TCP_KEEPCNT), "%s: TCP_KEEPCNT", what)
					}
					assert.Equal(t, want.user, socketOption(t, c, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT), "%s: TCP_USER_TIMEOUT", what)
				}
				if lname != "Wrap(another listener type)" {
					// Set on the listening socket, for its accepted
					// sockets to inherit (Wrap's doc).
					check("the listening socket", linger.ListenerSocket(l))
				}
				for i := range 3 {
					_, srv := pair(t, l)
					check(fmt.Sprintf("connection %d", i+1), srv.(*linger.Conn))
				}
				if lname == "Wrap(another listener type)" {
					return // Close takes the accept queue of a syscall.Conn only
				}
				// One more, left in the accept queue until Close takes it.
				c, err := net.Dial("tcp", l.Addr().String())
				require.NoError(t, err)
				t.Cleanup(func() { c.Close() })
				_, err = c.Write([]byte("x"))
				require.NoError(t, err)
				require.NoError(t, l.Close())
				srv, err := l.Accept()
				require.NoError(t, err, "Close hands the queued connection to Accept")
				defer srv.Close()
				check("the queued connection", srv.(*linger.Conn))
			})
		}
	}
}
