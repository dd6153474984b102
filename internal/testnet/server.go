package testnet

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/require"
)

// Server is a linger.Listener whose finished closes a test reads, one at a
// time, with [Server.Next].
type Server struct {
	*linger.Listener
	closes chan linger.CloseInfo
}

// Serve makes a Server of the listener open returns for cfg, with cfg's
// OnClose (if set) still called, and shuts it down when the test ends,
// failing the test if that does not finish every close within 10 s.
func Serve(t testing.TB, cfg linger.Config, open func(linger.Config) (*linger.Listener, error)) *Server {
	t.Helper()
	s := &Server{closes: make(chan linger.CloseInfo, 4096)}
	user := cfg.OnClose
	cfg.OnClose = func(ci linger.CloseInfo) {
		if user != nil {
			user(ci)
		}
		s.closes <- ci
	}
	ln, err := open(cfg)
	require.NoError(t, err)
	s.Listener = ln
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, ln.Shutdown(ctx), "Shutdown at test end")
	})
	return s
}

// Next waits for the next finished close, failing the test after 10 s.
func (s *Server) Next(t testing.TB) linger.CloseInfo {
	t.Helper()
	select {
	case ci := <-s.closes:
		return ci
	case <-time.After(10 * time.Second):
		t.Fatal("no close finished within 10s")
		return linger.CloseInfo{}
	}
}

// Listen is a plain listener on 127.0.0.1:0, closed when the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := ListenTCP("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Pair dials ln, over its own network (TCP or unix), and accepts,
// returning the client's and the server's ends, both closed when the test
// ends.
func Pair(t testing.TB, ln net.Listener) (client, srv net.Conn) {
	t.Helper()
	c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c, s
}

// ListenTCP listens on addr with plain TCP, as linger's README tells
// users to: a module of go 1.24 or later (the bench is one) would listen
// with MPTCP, whose sockets refuse the socket filter linger's Close stops
// new handshakes with.
func ListenTCP(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}
