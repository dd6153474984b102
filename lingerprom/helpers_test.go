package lingerprom_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
)

// listen starts a linger.Listener on 127.0.0.1 whose OnClose is cfg's,
// and shuts it down (waiting for every close) when the test ends.
func listen(t testing.TB, cfg linger.Config) *linger.Listener {
	t.Helper()
	ln, err := linger.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, ln.Shutdown(ctx), "Shutdown at test end")
	})
	return ln
}

// pair dials ln and accepts, returning the client and server ends.
func pair(t testing.TB, ln net.Listener) (client, srv net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c, s
}

// closeWith closes srv, waits for its FIN at the client, has the client
// send late (if any: it crosses the close on the wire) and close, and
// waits for the close to finish.
func closeWith(t testing.TB, client, srv net.Conn, late string, closes <-chan linger.CloseInfo) linger.CloseInfo {
	t.Helper()
	require.NoError(t, srv.Close())
	_, err := client.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the server's FIN")
	if late != "" {
		_, err = io.WriteString(client, late)
		require.NoError(t, err)
	}
	require.NoError(t, client.Close())
	select {
	case ci := <-closes:
		return ci
	case <-time.After(10 * time.Second):
		t.Fatal("no close finished within 10 s")
		return linger.CloseInfo{}
	}
}

// serveMetrics serves reg's /metrics on loopback, as a service does for
// Prometheus, and returns its URL.
func serveMetrics(t testing.TB, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// httpClient is a raw HTTP/1.1 client on one connection.
type httpClient struct {
	net.Conn
	br *bufio.Reader
}

func dialHTTP(t testing.TB, addr string) *httpClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &httpClient{Conn: c, br: bufio.NewReader(c)}
}

func (c *httpClient) get(t testing.TB) *http.Response {
	t.Helper()
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}
