package linger_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/linger-go/linger"
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

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// selfSigned makes a throwaway certificate for 127.0.0.1.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
