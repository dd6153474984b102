package compat_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/netutil"
)

// optionalMethods reports which optional interfaces c offers.
func optionalMethods(c net.Conn) map[string]bool {
	_, rf := c.(io.ReaderFrom)
	_, wt := c.(io.WriterTo)
	_, cw := c.(interface{ CloseWrite() error })
	_, sc := c.(syscall.Conn)
	_, nc := c.(interface{ NetConn() net.Conn })
	return map[string]bool{"ReadFrom": rf, "WriteTo": wt, "CloseWrite": cw, "SyscallConn": sc, "NetConn": nc}
}

// TestLimitListenerOutside: netutil.LimitListener(linger.Wrap(ln), n), the
// right order. LimitListener's conn embeds the net.Conn interface, so every
// optional method of *linger.Conn is hidden above it (net/http loses
// sendfile and its own CloseWrite); Close still reaches linger, so closes
// linger and send no RST. The limit counts connections the server holds:
// Close releases the slot at once while the socket lingers, so up to
// Config.MaxLingering more sockets may exist than the limit.
func TestLimitListenerOutside(t *testing.T) {
	const limit = 2
	ls := wrapLinger(t, testnet.Listen(t), linger.Config{})
	ln := netutil.LimitListener(ls, limit)

	client0, srv0 := testnet.Pair(t, ln)
	assert.Equal(t, map[string]bool{"ReadFrom": false, "WriteTo": false, "CloseWrite": false, "SyscallConn": false, "NetConn": false},
		optionalMethods(srv0), "LimitListener's conn hides every optional method")

	// The close lingers: the client reads EOF although its request was
	// left unread.
	assert.NoError(t, closeUnread(t, client0, srv0, nil), "client must read EOF, not a reset")
	assert.Equal(t, linger.Pending, ls.Next(t).Outcome)

	// The limit holds; the conn the server closed lingers, since its
	// client has not sent FIN.
	assertLimitHolds(t, ln)
	assert.EqualValues(t, 1, ls.Stats().Lingering, "the slot was released while the socket lingers")
}

// TestLimitListenerInside: linger.Wrap(netutil.LimitListener(ln, n)), the
// wrong order. *linger.Conn keeps every method, but LimitListener's conn
// under it has no CloseWrite and no SyscallConn, so linger cannot
// half-close: it closes plainly (reported as Plain) and a close with the
// request unread resets the client, as without linger. The accepted conn
// is not a *net.TCPConn either, so linger's keep-alive and
// TCP_USER_TIMEOUT are not set. The limit itself holds.
func TestLimitListenerInside(t *testing.T) {
	const limit = 2
	ls := wrapLinger(t, netutil.LimitListener(testnet.Listen(t), limit), linger.Config{})

	client0, srv0 := testnet.Pair(t, ls)
	assert.Equal(t, map[string]bool{"ReadFrom": true, "WriteTo": true, "CloseWrite": true, "SyscallConn": true, "NetConn": true},
		optionalMethods(srv0), "*linger.Conn keeps its methods")
	lc := srv0.(*linger.Conn)
	assert.ErrorIs(t, lc.CloseWrite(), errors.ErrUnsupported, "no half-close below")
	_, err := lc.SyscallConn()
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	n, err := lc.ReadFrom(strings.NewReader("x")) // falls back to a copy
	assert.NoError(t, err)
	assert.EqualValues(t, 1, n)
	_, err = io.ReadFull(client0, make([]byte, 1))
	require.NoError(t, err)

	err = closeUnread(t, client0, srv0, nil)
	assert.True(t, testnet.IsReset(err), "linger cannot linger through LimitListener's conn: the client is reset, got %v", err)
	ci := ls.Next(t)
	assert.Equal(t, linger.Plain, ci.Outcome, "reported as a plain close")
	assert.Equal(t, -1, ci.Unread, "linger cannot see the receive queue")

	assertLimitHolds(t, ls)
}

// assertLimitHolds checks a limit of two on ln, which holds no connection
// yet: with two held, a third waits in Accept until the server closes one
// of them (its client sends no FIN).
func assertLimitHolds(t *testing.T, ln net.Listener) {
	t.Helper()
	_, srv1 := testnet.Pair(t, ln)
	testnet.Pair(t, ln)
	dial(t, ln)
	third := acceptAsync(t, ln)
	assert.Never(t, func() bool { return len(third) > 0 }, 200*time.Millisecond, 10*time.Millisecond,
		"a third connection accepted past the limit")
	require.NoError(t, srv1.Close())
	r := waitAccept(t, third)
	require.NoError(t, r.err)
	t.Cleanup(func() { r.c.Close() })
}

type acceptResult struct {
	c   net.Conn
	err error
}

// acceptAsync accepts one connection in the background; the result
// arrives on the returned channel.
func acceptAsync(t *testing.T, ln net.Listener) chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := ln.Accept()
		ch <- acceptResult{c, err}
	}()
	return ch
}

func waitAccept(t *testing.T, ch chan acceptResult) acceptResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return within 10s")
		return acceptResult{}
	}
}
