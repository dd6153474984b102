package linger_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/require"
)

// listen starts a linger.Listener on 127.0.0.1 and shuts it down (waiting
// for every close) when the test ends. OnClose, if set in cfg, still runs.
func listen(t testing.TB, cfg linger.Config) *testnet.Server {
	t.Helper()
	return testnet.Serve(t, cfg, func(cfg linger.Config) (*linger.Listener, error) {
		return linger.Listen("tcp", "127.0.0.1:0", cfg)
	})
}

// pair dials ln and accepts, returning the client and server ends.
func pair(t testing.TB, ln net.Listener) (client *net.TCPConn, srv net.Conn) {
	t.Helper()
	c, s := testnet.Pair(t, ln)
	return c.(*net.TCPConn), s
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

// wrappingListener is a listener under linger that wraps the connections
// it accepts, as middleware does (go-proxyproto's listener, a metrics
// wrapper): they are not *net.TCPConn. On Linux their lingering closes
// then cannot go into the epoll set, which hands the socket over by
// closing a *net.TCPConn it knows closes it, and linger in goroutines of
// their own, the path of other platforms, drained through the wrapper's
// Read. wrappedConn embeds the *net.TCPConn, so its methods (CloseWrite,
// SyscallConn, the option setters) stay; only the concrete type is
// hidden. The listener hides the *net.TCPListener's methods too, as
// go-proxyproto's does, so linger's Close does not take its accept queue
// past the wrapper's Accept.
type wrappingListener struct{ net.Listener }

func (l wrappingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c.(*net.TCPConn)}, nil
}

// wrappedConn is a connection wrappingListener accepted.
type wrappedConn struct{ *net.TCPConn }

// tcpConn returns the *net.TCPConn c is or wraps (wrappedConn).
func tcpConn(c net.Conn) *net.TCPConn {
	if w, ok := c.(wrappedConn); ok {
		return w.TCPConn
	}
	return c.(*net.TCPConn)
}

// closePath is a way a close lingers, and how a test makes a listener
// whose closes take it.
type closePath struct {
	name string
	// wrapped: the listener under linger wraps its connections
	// (wrappingListener), so they linger in goroutines of their own.
	wrapped bool
	prepare func(*linger.Listener) // nil: nothing to prepare
}

// wrap wraps ln with cfg for p's path.
func (p closePath) wrap(ln net.Listener, cfg linger.Config) *linger.Listener {
	if p.wrapped {
		ln = wrappingListener{ln}
	}
	l := linger.Wrap(ln, cfg)
	if p.prepare != nil {
		p.prepare(l)
	}
	return l
}

// listen is listen for p's path.
func (p closePath) listen(t testing.TB, cfg linger.Config) *testnet.Server {
	t.Helper()
	if !p.wrapped {
		s := listen(t, cfg)
		if p.prepare != nil {
			p.prepare(s.Listener)
		}
		return s
	}
	return testnet.Serve(t, cfg, func(cfg linger.Config) (*linger.Listener, error) {
		ln, err := testnet.ListenTCP("127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		return p.wrap(ln, cfg), nil
	})
}
