package lingerhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedSocket returns two listeners on one listening socket, as a process
// and the successor it passed the socket to (tableflip, systemd) hold it.
func sharedSocket(t *testing.T) (old, successor net.Listener) {
	t.Helper()
	old, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { old.Close() })
	f, err := old.(*net.TCPListener).File()
	require.NoError(t, err)
	successor, err = net.FileListener(f)
	f.Close()
	require.NoError(t, err)
	t.Cleanup(func() { successor.Close() })
	return old, successor
}

// generation is one process's Server in a restart in place: it answers
// every request with its name, and /ready with its ReadyHandler.
type generation struct {
	*Server
	serve chan error
}

func serveGeneration(t *testing.T, ln net.Listener, name string, cfg Config) *generation {
	t.Helper()
	g := &generation{serve: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) { g.ReadyHandler().ServeHTTP(w, r) })
	g.Server = New(&http.Server{Handler: mux, IdleTimeout: time.Minute}, cfg)
	go func() { g.serve <- g.Serve(ln) }()
	g.waitServing(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
		<-g.serve
		g.serve <- http.ErrServerClosed
	})
	return g
}

func (c *client) getBody(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		require.NoError(t, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp, string(b)
}

func dialAddr(t *testing.T, addr string) *client {
	return (&harness{addr: addr}).dial(t)
}

// A restart in place with lingerhttp: the successor serves on the shared
// socket, the old process hands off. It does not wait for DrainDelay, its
// ReadyHandler stays 200, its connections end with their next response,
// and new connections reach the successor.
func TestHandoffDrainsWhileTheSuccessorServes(t *testing.T) {
	inner, dup := sharedSocket(t)
	addr := inner.Addr().String()
	cfg := Config{DrainDelay: time.Minute, DrainIdle: 200 * time.Millisecond}
	old := serveGeneration(t, inner, "old", cfg)

	used, probe, quiet := dialAddr(t, addr), dialAddr(t, addr), dialAddr(t, addr)
	for _, c := range []*client{used, probe, quiet} {
		_, body := c.getBody(t, "/")
		require.Equal(t, "old", body, "only the old process accepts so far")
	}

	serveGeneration(t, dup, "successor", Config{DrainIdle: 200 * time.Millisecond}) // the successor is ready
	begin := time.Now()
	done := make(chan error, 1)
	go func() { done <- old.Handoff(context.Background()) }()
	require.Eventually(t, func() bool { return old.draining.Load() }, 5*time.Second, time.Millisecond)

	resp, body := used.getBody(t, "/")
	assert.Equal(t, "old", body, "a request on a held connection is served")
	assert.True(t, resp.Close, "with Connection: close")
	resp, _ = probe.getBody(t, "/ready")
	assert.Equal(t, 200, resp.StatusCode, "the address stays ready: a 503 would take the successor out too")
	assert.True(t, resp.Close)

	for range 5 {
		_, body := dialAddr(t, addr).getBody(t, "/")
		assert.Equal(t, "successor", body, "new connections reach the successor")
	}

	_, err := quiet.br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the connection that stays idle is closed after DrainIdle, with a FIN")
	for _, c := range []*client{used, probe, quiet} {
		c.Close()
	}
	require.NoError(t, <-done)
	assert.Less(t, time.Since(begin), 10*time.Second, "no DrainDelay (a minute)")
	assert.ErrorIs(t, <-old.serve, http.ErrServerClosed)
	old.serve <- http.ErrServerClosed
	st := old.Listener().Stats()
	assert.EqualValues(t, 0, st.Open+st.Lingering)
	assert.EqualValues(t, 0, st.Outcomes[linger.Pending]+st.Outcomes[linger.Crossed]+st.Outcomes[linger.Reset]+st.Outcomes[linger.Aborted])
}

// noSocket is a listener another process cannot hold: no descriptor.
type noSocket struct{ net.Listener }

func TestHandoffIsRejected(t *testing.T) {
	t.Run("before Serve", func(t *testing.T) {
		s := New(&http.Server{}, Config{})
		assert.ErrorContains(t, s.Handoff(context.Background()), "lingerhttp: Handoff before Serve")
	})
	t.Run("not a socket", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		g := serveGeneration(t, noSocket{ln}, "old", Config{})
		err = g.Handoff(context.Background())
		assert.ErrorContains(t, err, "is not a socket another process can hold")
		c := dialAddr(t, ln.Addr().String())
		resp, body := c.getBody(t, "/ready")
		assert.Equal(t, "ready\n", body, "nothing changed: still serving, still ready")
		assert.False(t, resp.Close)
		c.Close()
	})
	t.Run("after Shutdown", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		g := serveGeneration(t, ln, "old", Config{})
		require.NoError(t, g.Shutdown(context.Background()))
		assert.ErrorContains(t, g.Handoff(context.Background()), "lingerhttp: Handoff after Shutdown began")
	})
	t.Run("Shutdown after Handoff joins it", func(t *testing.T) {
		inner, _ := sharedSocket(t)
		g := serveGeneration(t, inner, "old", Config{DrainDelay: time.Minute})
		require.NoError(t, g.Handoff(context.Background()))
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		assert.NoError(t, g.Shutdown(ended), "no DrainDelay, nothing left to wait for")
	})
}

// A drain that begins the moment Serve has started, or before it, stops
// the sweeper Serve starts (goleak checks at the end), and Serve returns
// http.ErrServerClosed.
func TestDrainAtServeStart(t *testing.T) {
	for i := range 50 {
		inner, _ := sharedSocket(t)
		s := New(&http.Server{}, Config{})
		served := make(chan error, 1)
		if i%2 == 0 {
			go func() { served <- s.Serve(inner) }()
			s.waitServing(t)
			require.NoError(t, s.Handoff(context.Background()))
		} else {
			require.NoError(t, s.Shutdown(context.Background()))
			served <- s.Serve(inner)
		}
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
	}
}
