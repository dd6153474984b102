package testnet

import (
	"context"
	"net"
	"time"

	"github.com/linger-go/linger"
)

// TB is the part of testing.TB these helpers use. The package does not
// import testing (nor testify, which does), so a program that uses its
// other helpers, the bench, links no test code.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

func must(t TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Server is a linger.Listener whose finished closes a test reads, one at a
// time, with [Server.Next].
type Server struct {
	*linger.Listener
	closes chan linger.CloseInfo
}

// Serve makes a Server of the listener open returns for cfg, with cfg's
// OnClose (if set) still called, and shuts it down when the test ends,
// failing the test if that does not finish every close within 10 s.
func Serve(t TB, cfg linger.Config, open func(linger.Config) (*linger.Listener, error)) *Server {
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
	must(t, err, "listen")
	s.Listener = ln
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		must(t, ln.Shutdown(ctx), "Shutdown at test end")
	})
	return s
}

// Next waits for the next finished close, failing the test after 10 s.
func (s *Server) Next(t TB) linger.CloseInfo {
	t.Helper()
	select {
	case ci := <-s.closes:
		return ci
	case <-time.After(10 * time.Second):
		t.Fatalf("no close finished within 10s")
		return linger.CloseInfo{}
	}
}

// Listen is a plain listener on 127.0.0.1:0, closed when the test ends.
func Listen(t TB) net.Listener {
	t.Helper()
	ln, err := ListenTCP("127.0.0.1:0")
	must(t, err, "listen")
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Pair dials ln, over its own network (TCP or unix), and accepts,
// returning the client's and the server's ends, both closed when the test
// ends.
func Pair(t TB, ln net.Listener) (client, srv net.Conn) {
	t.Helper()
	c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	must(t, err, "dial")
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	must(t, err, "accept")
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
