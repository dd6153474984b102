package main

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A deployed lingerhttp server whose Shutdown cannot finish (a handler
// that does not return) runs into its deadline, and the report says what
// was open just before: the busy connection, the listener's counts, and
// that Shutdown waited in lingerhttp's connection loop.
func TestShutdownDeadlineSnapshot(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})}
	r, inner := probedLingerHTTP(t, srv)

	c, err := net.Dial("tcp", inner.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	<-entered

	// The handler returns once Shutdown has given up (its context ended
	// with the handler still running); its answer then fails on the
	// aborted connection.
	rep := r.shutdownFirst(request{TimeoutMs: 400})
	close(release)
	require.True(t, rep.DeadlineHit, "%+v", rep)
	assert.Contains(t, rep.Err, "context deadline exceeded")
	assert.Contains(t, rep.Err, "1 active, 0 idle and 0 lingering connections", "lingerhttp's Shutdown says what was open")
	s := rep.AtDeadline
	require.NotNil(t, s)
	assert.Equal(t, map[string]int{"active": 1}, s.Conns)
	assert.Equal(t, int64(1), s.Open)
	assert.Equal(t, int64(0), s.Lingering)
	require.Len(t, s.Oldest, 1)
	assert.Contains(t, s.Oldest[0], "active")
	assert.Contains(t, s.Oldest[0], "1 requests")
	assert.InDelta(t, 300, s.AtMs, 150)
	assert.Contains(t, strings.Join(s.Waiting, " "), "lingerhttp.(*Server).Shutdown at drain.go:")
	assert.Contains(t, s.String(), "net/http's open conns: active 1")
	t.Log(s) // what the bench prints

	// The client saw the abort: an EOF or a reset, no answer.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = http.ReadResponse(bufio.NewReader(c), nil)
	assert.Error(t, err)
}

// A Shutdown that finishes in time reports no deadline and no snapshot.
func TestShutdownInTime(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	r, inner := probedLingerHTTP(t, srv)
	// Served once, so Serve has started: a Shutdown that comes before
	// lingerhttp's Serve has started its sweeper can wait for it forever
	// (lingerhttp's sweep reads its stop channel late).
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get("http://" + inner.Addr().String() + "/")
	require.NoError(t, err)
	resp.Body.Close()

	rep := r.shutdownFirst(request{TimeoutMs: 5000})
	assert.False(t, rep.DeadlineHit)
	assert.Nil(t, rep.AtDeadline)
	assert.Empty(t, rep.Err)
	// The idle keep-alive connection closes once quiet (1 s, checked
	// every second).
	assert.Less(t, rep.Ms, 2500.0)
}

// probedLingerHTTP serves srv with lingerhttp on loopback, as the deploy's
// backend run does with a probe on its connections, and stops it when the
// test ends. inner is the listener lingerhttp serves.
func probedLingerHTTP(t *testing.T, srv *http.Server) (r *backendRun, inner net.Listener) {
	t.Helper()
	p := &connProbe{}
	p.hook(srv)
	inner, err := testnet.ListenTCP("127.0.0.1:0")
	require.NoError(t, err)
	ln := serveLingerHTTP(srv, inner, 0)
	r = &backendRun{lns: []net.Listener{ln}, srvs: []*http.Server{srv}, probe: p}
	t.Cleanup(func() { r.stop() })
	return r, inner
}
