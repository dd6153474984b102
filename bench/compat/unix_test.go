//go:build linux

package compat_test

import (
	"bytes"
	"log"
	"net"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// listenUnix listens on a unix stream socket in a fresh directory.
func listenUnix(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestUnixListener: linger.Wrap over a unix stream listener. Linux does
// not send RSTs on unix sockets, but closing one with unread data makes
// the peer's read fail with ECONNRESET (unix_release_sock), which the raw
// control shows. linger half-closes through UnixConn.CloseWrite and drains,
// so the client reads EOF; TCP socket options are skipped without an
// error.
func TestUnixListener(t *testing.T) {
	t.Run("raw/unread", func(t *testing.T) {
		ln := listenUnix(t)
		client, srv := testnet.Pair(t, ln)
		err := closeUnread(t, client, srv, nil)
		assert.True(t, testnet.IsReset(err), "control: a unix close with unread data resets the peer, got %v", err)
	})
	t.Run("linger/unread", func(t *testing.T) {
		var logged bytes.Buffer
		ls := wrapLinger(t, listenUnix(t), linger.Config{ErrorLog: log.New(&logged, "", 0)})
		client, srv := testnet.Pair(t, ls)
		assert.IsType(t, (*net.UnixConn)(nil), srv.(*linger.Conn).NetConn())
		assert.NoError(t, closeUnread(t, client, srv, nil), "client must read EOF")
		ci := ls.Next(t)
		assert.Equal(t, linger.Pending, ci.Outcome)
		assert.Positive(t, ci.Unread, "SIOCINQ works on unix sockets too")
		assert.EqualValues(t, len(request)-1, ci.Discarded)
		assert.Empty(t, logged.String(), "no socket option errors for unix conns")
	})
	t.Run("linger/closewrite", func(t *testing.T) {
		ls := wrapLinger(t, listenUnix(t), linger.Config{})
		client, srv := testnet.Pair(t, ls)
		_, err := srv.Write([]byte("bye"))
		require.NoError(t, err)
		require.NoError(t, srv.(*linger.Conn).CloseWrite(), "UnixConn.CloseWrite passes through")
		got := make([]byte, 8)
		n, _ := client.Read(got)
		assert.Equal(t, "bye", string(got[:n]))
		assert.NoError(t, readEnd(client), "EOF after the owner's CloseWrite")
		require.NoError(t, srv.Close())
		require.NoError(t, client.Close())
		assert.Equal(t, linger.Clean, ls.Next(t).Outcome)
	})
}

// TestInheritedListener: a listener rebuilt from an inherited descriptor,
// as under systemd socket activation (LISTEN_FDS) or a hot restart:
// net.FileListener of a listener's File(). Its connections are
// *net.TCPConn, so linger works in full: lingering close, keep-alive and
// TCP_USER_TIMEOUT.
func TestInheritedListener(t *testing.T) {
	orig := testnet.Listen(t).(*net.TCPListener)
	f, err := orig.File()
	require.NoError(t, err)
	inherited, err := net.FileListener(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, orig.Close()) // the inherited descriptor still listens
	t.Cleanup(func() { inherited.Close() })

	ls := wrapLinger(t, inherited, linger.Config{})
	client, srv := testnet.Pair(t, ls)
	lc := srv.(*linger.Conn)
	require.IsType(t, (*net.TCPConn)(nil), lc.NetConn())

	rc, err := lc.SyscallConn()
	require.NoError(t, err)
	var keepAlive, userTimeout int
	var kaErr, utErr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		keepAlive, kaErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		userTimeout, utErr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}))
	require.NoError(t, kaErr)
	require.NoError(t, utErr)
	assert.Equal(t, 1, keepAlive, "SO_KEEPALIVE set by linger")
	assert.Equal(t, 150000, userTimeout, "TCP_USER_TIMEOUT = 15s + 15s×9, in ms")

	assert.NoError(t, closeUnread(t, client, srv, nil), "client must read EOF, not a reset")
	assert.Equal(t, linger.Pending, ls.Next(t).Outcome)
}
