package compat_test

import (
	"net"
	"testing"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The right order is proxyproto outermost, linger innermost:
//
//	ln := &proxyproto.Listener{Listener: linger.Wrap(tcpListener, cfg)}
//
// Tested both ways round below. With linger inside, proxyproto's Conn
// reads the header through *linger.Conn (which passes bytes unchanged), so
// RemoteAddr is the proxied client, and its Close reaches linger, whose
// lingering close acts on the real *net.TCPConn: half-close, discard, no
// RST; keep-alive and TCP_USER_TIMEOUT are set on the socket too.
// With linger outside, RemoteAddr is right as well (linger asks the
// proxyproto.Conn), but *proxyproto.Conn has no CloseWrite and no
// SyscallConn, so linger cannot half-close and closes plainly: a close
// with bytes unread resets the client (the PROXY hop, usually a load
// balancer), which is what linger exists to prevent.
//
// One thing the right order costs: linger's CloseInfo.RemoteAddr is the
// proxy's address (linger sits under the header), not the client's.

// proxyHeader is a PROXY protocol v1 header naming 127.1.2.3:4321 as the
// client (an address of this machine's loopback range that no test dials).
var proxyHeader = []byte("PROXY TCP4 127.1.2.3 127.0.0.1 4321 443\r\n")

func TestProxyProtoOutside(t *testing.T) {
	ls := wrapLinger(t, testnet.Listen(t), linger.Config{})
	ln := &proxyproto.Listener{Listener: ls}

	client, srv := testnet.Pair(t, ln)
	pc, ok := srv.(*proxyproto.Conn)
	require.True(t, ok, "accepted %T", srv)
	lc, ok := pc.Raw().(*linger.Conn)
	require.True(t, ok, "proxyproto.Conn.Raw() is %T, want *linger.Conn", pc.Raw())
	assert.IsType(t, (*net.TCPConn)(nil), lc.NetConn())
	assert.Equal(t, map[string]bool{"ReadFrom": true, "WriteTo": true, "CloseWrite": false, "SyscallConn": false, "NetConn": false},
		optionalMethods(srv), "proxyproto.Conn keeps ReadFrom and WriteTo only")

	_, err := client.Write(proxyHeader)
	require.NoError(t, err)
	assert.Equal(t, "127.1.2.3:4321", srv.RemoteAddr().String(), "RemoteAddr is the proxied client")

	assert.NoError(t, closeUnread(t, client, srv, nil), "client must read EOF, not a reset")
	ci := ls.Next(t)
	assert.Equal(t, linger.Pending, ci.Outcome)
	assert.Positive(t, ci.Discarded)
	assert.Equal(t, client.LocalAddr().String(), ci.RemoteAddr.String(), "linger sees the proxy's address")
}

func TestProxyProtoInside(t *testing.T) {
	ls := wrapLinger(t, &proxyproto.Listener{Listener: testnet.Listen(t)}, linger.Config{})

	client, srv := testnet.Pair(t, ls)
	lc := srv.(*linger.Conn)
	assert.IsType(t, (*proxyproto.Conn)(nil), lc.NetConn())

	_, err := client.Write(proxyHeader)
	require.NoError(t, err)
	assert.Equal(t, "127.1.2.3:4321", srv.RemoteAddr().String(), "RemoteAddr is the proxied client")

	err = closeUnread(t, client, srv, nil)
	assert.True(t, testnet.IsReset(err), "linger cannot half-close a *proxyproto.Conn: the client is reset, got %v", err)
	ci := ls.Next(t)
	assert.Equal(t, linger.Plain, ci.Outcome, "reported as a plain close")
	assert.Equal(t, -1, ci.Unread)
}
