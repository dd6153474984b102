package testnet

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIsReset(t *testing.T) {
	assert.True(t, IsReset(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}))
	assert.True(t, IsReset(fmt.Errorf("write: %w", syscall.EPIPE)))
	assert.False(t, IsReset(io.EOF))
	assert.False(t, IsReset(nil))
	assert.False(t, IsReset(errors.New("connection reset by peer")), "only the errno counts, not the text")
}

// A client that trusts the pool completes a handshake with a server that
// presents the certificate, on 127.0.0.1 and on another address named.
func TestCertificate(t *testing.T) {
	cert, pool, err := Certificate("testnet", net.ParseIP("10.0.0.1"))
	require.NoError(t, err)
	assert.Equal(t, "testnet", cert.Leaf.Subject.CommonName)
	require.NoError(t, cert.Leaf.VerifyHostname("10.0.0.1"))
	assert.Error(t, cert.Leaf.VerifyHostname("10.0.0.2"))

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		served <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	require.NoError(t, err)
	c.Close()
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the server's handshake did not end within 10 s")
	}
}

// A Server reports each close to Next, after cfg's own OnClose; Pair's ends
// talk to each other.
func TestServe(t *testing.T) {
	var user []linger.Outcome
	s := Serve(t, linger.Config{OnClose: func(ci linger.CloseInfo) { user = append(user, ci.Outcome) }},
		func(cfg linger.Config) (*linger.Listener, error) { return linger.Wrap(Listen(t), cfg), nil })
	c, srv := Pair(t, s)
	_, err := c.Write([]byte("x"))
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = io.ReadFull(srv, b)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, srv.Close())
	ci := s.Next(t)
	assert.Equal(t, linger.Clean, ci.Outcome)
	assert.Equal(t, []linger.Outcome{linger.Clean}, user, "cfg's OnClose ran first")
}
