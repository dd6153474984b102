package compat_test

import (
	"context"
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

// lingerServer is a linger.Listener whose finished closes arrive on closes.
type lingerServer struct {
	*linger.Listener
	closes chan linger.CloseInfo
}

// wrapLinger wraps ln with linger and shuts it down at test end.
func wrapLinger(t testing.TB, ln net.Listener, cfg linger.Config) *lingerServer {
	t.Helper()
	s := &lingerServer{closes: make(chan linger.CloseInfo, 64)}
	cfg.OnClose = func(ci linger.CloseInfo) { s.closes <- ci }
	s.Listener = linger.Wrap(ln, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx), "Shutdown at test end")
	})
	return s
}

// next waits for the next finished close, failing the test after 10 s.
func (s *lingerServer) next(t testing.TB) linger.CloseInfo {
	t.Helper()
	select {
	case ci := <-s.closes:
		return ci
	case <-time.After(10 * time.Second):
		t.Fatal("no close finished within 10s")
		return linger.CloseInfo{}
	}
}

// listenTCP is a plain listener on 127.0.0.1:0, closed at test end.
func listenTCP(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
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

// pair dials ln and accepts, returning the client and server ends.
func pair(t testing.TB, ln net.Listener) (client, srv net.Conn) {
	t.Helper()
	client = dial(t, ln)
	return client, accept(t, ln)
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
