package linger_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/require"
)

// server is a linger.Listener on loopback whose OnClose reports to closes.
type server struct {
	*linger.Listener
	closes chan linger.CloseInfo
}

// listen starts a linger.Listener on 127.0.0.1 and shuts it down (waiting
// for every close) when the test ends. OnClose, if set in cfg, still runs.
func listen(t testing.TB, cfg linger.Config) *server {
	t.Helper()
	s := &server{closes: make(chan linger.CloseInfo, 4096)}
	user := cfg.OnClose
	cfg.OnClose = func(ci linger.CloseInfo) {
		if user != nil {
			user(ci)
		}
		s.closes <- ci
	}
	ln, err := linger.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	s.Listener = ln
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, ln.Shutdown(ctx), "Shutdown at test end")
	})
	return s
}

// rawListen is the control: a plain *net.TCPListener on 127.0.0.1.
func rawListen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair dials ln and accepts, returning the client and server ends.
func pair(t testing.TB, ln net.Listener) (client *net.TCPConn, srv net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c.(*net.TCPConn), s
}

// next waits for the next finished close, failing the test after 10 s.
func (s *server) next(t testing.TB) linger.CloseInfo {
	t.Helper()
	select {
	case ci := <-s.closes:
		return ci
	case <-time.After(10 * time.Second):
		t.Fatal("no close finished within 10s")
		return linger.CloseInfo{}
	}
}

// readEnd reads until the connection ends, as io.ReadAll does: the error
// is nil for a clean EOF (a FIN), and says what else ended it.
func readEnd(c net.Conn) ([]byte, error) {
	b, err := io.ReadAll(c)
	return b, err
}

// selfSigned makes a throwaway certificate for 127.0.0.1.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	cert, _, err := testnet.Certificate("linger test")
	require.NoError(t, err)
	return cert
}
