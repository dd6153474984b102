package lingerhttp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A peer that sends the start of a request and stops is held no longer
// than plain net/http holds it for the same bytes and the same timeouts,
// and a drain ends it (issue 21). Each case runs against plain net/http,
// the control, and a lingerhttp Server with the zero Config.

// slowServer serves ok on loopback, plainly or through a lingerhttp
// Server, with srv's timeouts; it returns the address and the Server (nil
// for plain), and shuts down when the test ends.
func slowServer(t *testing.T, lingering bool, idle, header time.Duration, cfg Config) (string, *Server) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(ok), IdleTimeout: idle, ReadHeaderTimeout: header}
	if !lingering {
		return serveWith(t, srv, nil)
	}
	return slowServerWith(t, srv, cfg)
}

// slowServerWith serves srv through a Server with cfg, as slowServer does.
func slowServerWith(t *testing.T, srv *http.Server, cfg Config) (string, *Server) {
	t.Helper()
	return serveWith(t, srv, New(srv, cfg))
}

// serveWith serves srv on loopback, through s if not nil.
func serveWith(t *testing.T, srv *http.Server, s *Server) (string, *Server) {
	t.Helper()
	lingering := s != nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	if lingering {
		go func() { served <- s.Serve(ln) }()
		s.waitServing(t)
	} else {
		go func() { served <- srv.Serve(ln) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if s != nil {
			s.Shutdown(ctx)
		} else {
			srv.Shutdown(ctx)
		}
		<-served
	})
	return ln.Addr().String(), s
}

// slowPeer is a client connection that has been answered once, if reused.
type slowPeer struct {
	net.Conn
	br *bufio.Reader
}

func dialSlow(t *testing.T, addr string, reused bool) *slowPeer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	p := &slowPeer{Conn: c, br: bufio.NewReader(c)}
	if reused {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(p.br, nil)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.False(t, resp.Close)
	}
	return p
}

// heldFor waits, at most limit, for the server to end the connection, and
// returns how long that took; it fails the test if the server still held
// it at the limit.
func (p *slowPeer) heldFor(t *testing.T, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	p.SetReadDeadline(since.Add(limit))
	_, err := io.Copy(io.Discard, p.br) // a 408 or nothing, then the end
	held := time.Since(since)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server still held the connection after %v", held.Round(time.Millisecond))
	}
	return held
}

func TestPartialRequestIsHeldNoLongerThanByNetHTTP(t *testing.T) {
	const idle = 400 * time.Millisecond
	// Generous against a loaded machine; main held these for ever.
	const slack = 1500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		reused bool
		header time.Duration
		bytes  string
		bound  time.Duration // net/http's: from the last response, or from the dial
	}{
		// net/http waits for the first 4 bytes of the next request
		// within IdleTimeout, then for the head within ReadHeaderTimeout.
		{"reused, 1 byte, no header timeout", true, 0, "G", idle},
		{"reused, 1 byte, header timeout", true, 300 * time.Millisecond, "G", idle},
		{"reused, 3 bytes", true, 300 * time.Millisecond, "GET", idle},
		{"reused, a request line", true, 300 * time.Millisecond, "GET / HTTP/1.1\r\n", 300 * time.Millisecond},
		// A new connection's head is bounded by ReadHeaderTimeout.
		{"new, 1 byte", false, 300 * time.Millisecond, "G", 300 * time.Millisecond},
		{"new, a request line", false, 300 * time.Millisecond, "GET / HTTP/1.1\r\n", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var held [2]time.Duration
			for i, lingering := range []bool{false, true} {
				addr, _ := slowServer(t, lingering, idle, tc.header, Config{})
				p := dialSlow(t, addr, tc.reused)
				since := time.Now()
				_, err := io.WriteString(p, tc.bytes)
				require.NoError(t, err)
				held[i] = p.heldFor(t, since, tc.bound+slack)
			}
			t.Logf("held: net/http %v, lingerhttp %v", held[0].Round(time.Millisecond), held[1].Round(time.Millisecond))
		})
	}
}

// A request that begins after the connection has been idle longer than
// net/http's IdleTimeout (net/http would have closed it; the Server keeps
// it, to retire it) gets ReadHeaderTimeout, else IdleTimeout, from its
// first byte. Plain net/http has closed such a connection by then.
func TestPartialRequestAfterALongIdle(t *testing.T) {
	const idle = 200 * time.Millisecond
	for _, header := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run("header timeout "+header.String(), func(t *testing.T) {
			plain, _ := slowServer(t, false, idle, header, Config{})
			addr, _ := slowServer(t, true, idle, header, Config{})
			control := dialSlow(t, plain, true)
			p := dialSlow(t, addr, true)
			// net/http closes the control connection at its IdleTimeout;
			// the Server's stays open past it.
			since := time.Now()
			control.heldFor(t, since, idle+time.Second)
			p.SetReadDeadline(since.Add(idle + 300*time.Millisecond))
			_, err := p.br.ReadByte()
			require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the Server keeps the idle connection")

			since = time.Now()
			io.WriteString(p, "G")
			bound := header
			if bound == 0 {
				bound = idle
			}
			held := p.heldFor(t, since, bound+time.Second)
			assert.GreaterOrEqual(t, held, bound-50*time.Millisecond, "the head gets the bound from its first byte")
		})
	}
}

// The drain ends connections net/http still reports as idle or new while
// a request has begun to arrive on them, as http.Server.Shutdown does,
// with or without ReadHeaderTimeout: Shutdown(context.Background())
// returns, and every such peer sees the end of its connection.
func TestDrainEndsPartialRequests(t *testing.T) {
	for _, header := range []time.Duration{0, time.Minute} {
		t.Run("header timeout "+header.String(), func(t *testing.T) {
			cfg := Config{DrainIdle: 100 * time.Millisecond}
			addr, s := slowServer(t, true, 0, header, cfg)
			var peers []*slowPeer
			for _, p := range []struct {
				reused bool
				bytes  string
			}{
				{true, "G"},
				{true, "GET / HTTP/1.1\r\nHo"},
				{false, "G"},
				{false, "GET / HTTP/1.1\r\nHo"},
			} {
				peer := dialSlow(t, addr, p.reused)
				io.WriteString(peer, p.bytes)
				peers = append(peers, peer)
			}
			// The Server has read the bytes (linger counts them as
			// in use): only then is the peer a partial request.
			require.Eventually(t, func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return len(s.conns) == len(peers)
			}, 5*time.Second, time.Millisecond)
			shut := make(chan error, 1)
			go func() { shut <- s.Shutdown(context.Background()) }()
			since := time.Now()
			for _, p := range peers {
				p.heldFor(t, since, 10*time.Second)
				p.Close() // the FIN the lingering close waits for
			}
			select {
			case err := <-shut:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Shutdown did not return")
			}
		})
	}
}

// The next request's first byte can reach net/http before it waits for
// it: its background read, in flight while the handler runs, takes it once
// the response is out. That byte starts the head as one read in the wait.
func TestPartialRequestReadByTheBackgroundRead(t *testing.T) {
	const idle = 400 * time.Millisecond
	release := make(chan struct{})
	srv := &http.Server{IdleTimeout: idle, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
			http.NewResponseController(w).Flush()
			<-release
		}
	})}
	addr, s := slowServerWith(t, srv, Config{})
	var once sync.Once
	releaseOnce := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseOnce) // before the Shutdown, should the test fail first
	p := dialSlow(t, addr, false)
	io.WriteString(p, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(p.br, nil)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	io.WriteString(p, "G")
	require.Eventually(t, func() bool { // the background read has it
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			if hc := connOf(c); hc != nil && hc.early.Load() {
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond)
	since := time.Now()
	releaseOnce()
	p.heldFor(t, since, idle+time.Second)
}
