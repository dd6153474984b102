package compat_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/require"
)

// wrapLinger wraps ln with linger and shuts it down at test end.
func wrapLinger(t testing.TB, ln net.Listener, cfg linger.Config) *testnet.Server {
	t.Helper()
	return testnet.Serve(t, cfg, func(cfg linger.Config) (*linger.Listener, error) { return linger.Wrap(ln, cfg), nil })
}

// dial connects to ln and closes the connection at test end.
func dial(t testing.TB, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// accept accepts one connection and closes it at test end.
func accept(t testing.TB, ln net.Listener) net.Conn {
	t.Helper()
	c, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// request is what a client sends and the server leaves unread: more than
// any wrapper's read buffer (go-proxyproto's is 256 bytes, crypto/tls reads
// a record at a time), so some of it is still in the kernel's receive
// queue when the server closes.
var request = make([]byte, 64<<10)

// closeUnread has the client send prefix and request in one write, the
// server read one byte and close, and returns how the client's read of
// the rest ended: nil for a clean EOF. The client then closes, so a
// lingering close ends.
func closeUnread(t testing.TB, client, srv net.Conn, prefix []byte) error {
	t.Helper()
	_, err := client.Write(append(append([]byte(nil), prefix...), request...))
	require.NoError(t, err)
	_, err = io.ReadFull(srv, make([]byte, 1))
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	err = readEnd(client)
	client.Close()
	return err
}

// readEnd reads until the connection ends, bounded by 10 s, and returns
// what ended it: nil for a clean EOF.
func readEnd(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return err
}

// selfSigned returns a certificate for 127.0.0.1, made now, and a pool
// that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	return testnet.Certificate("linger compat test")
}
