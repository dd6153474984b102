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
