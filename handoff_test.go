package linger_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedSocket returns two listeners on one listening socket, as a process
// and the successor it passed the socket to hold it after a restart in
// place: the second is a dup of the first's descriptor (what tableflip
// passes on exec, and systemd to a socket-activated service), not a second
// socket on the same port (SO_REUSEPORT), which would have its own accept
// queue.
func sharedSocket(t testing.TB, network, addr string) (old, successor net.Listener) {
	t.Helper()
	old, err := net.Listen(network, addr)
	require.NoError(t, err)
	t.Cleanup(func() { old.Close() })
	f, err := old.(interface{ File() (*os.File, error) }).File()
	require.NoError(t, err)
	successor, err = net.FileListener(f)
	f.Close()
	require.NoError(t, err)
	t.Cleanup(func() { successor.Close() })
	return old, successor
}

// serveName serves HTTP on ln, answering every request with name, until
// the test ends.
func serveName(t testing.TB, ln net.Listener, name string) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
}

// A restart in place: connections the kernel queued on the shared socket
// when the old process stops accepting are the successor's. Handoff leaves
// them to it; Close, the control, takes them, and the old process's
// Shutdown, with nobody accepting there any more, closes them unserved.
func TestHandoffLeavesTheAcceptQueueToTheSuccessor(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Close takes the accept queue on Linux only; elsewhere it is Handoff already")
	}
	const n = 20
	const req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	for _, handoff := range []bool{true, false} {
		name := map[bool]string{true: "Handoff", false: "Close (control)"}[handoff]
		t.Run(name, func(t *testing.T) {
			inner, dup := sharedSocket(t, "tcp", "127.0.0.1:0")
			old := linger.Wrap(inner, linger.Config{})
			successor := linger.Wrap(dup, linger.Config{})
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				assert.NoError(t, successor.Shutdown(ctx))
			})

			// Requests that arrive while neither process accepts: the
			// old one is draining, the successor is starting.
			clients := make([]net.Conn, n)
			for i := range clients {
				c, err := net.Dial("tcp", inner.Addr().String())
				require.NoError(t, err)
				t.Cleanup(func() { c.Close() })
				_, err = io.WriteString(c, req)
				require.NoError(t, err)
				clients[i] = c
			}
			if handoff {
				require.NoError(t, old.Handoff())
			} else {
				require.NoError(t, old.Close())
			}
			// The old process exits: Shutdown waits for the lingering
			// closes of what it closed, until the clients close.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			exited := make(chan error, 1)
			go func() { exited <- old.Shutdown(ctx) }()

			serveName(t, successor, "successor")
			served, lost := 0, 0
			for _, c := range clients {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				got, err := readEnd(c)
				c.Close()
				switch {
				case err == nil && strings.HasSuffix(string(got), "successor"):
					served++
				case err == nil && len(got) == 0:
					lost++ // a FIN and no answer: the request was lost
				default:
					t.Errorf("a client read %q, %v", got, err)
				}
			}
			require.NoError(t, <-exited, "the old process's Shutdown")
			if handoff {
				assert.Equal(t, n, served, "every queued request is served by the successor")
				assert.Zero(t, old.Stats().Accepted, "the old process took nothing from the queue")
			} else {
				assert.Equal(t, n, lost, "control: Close took the queue, and Shutdown closed it unserved")
			}
		})
	}
}

// Both processes accept from the shared socket while clients connect
// without pause; the old one hands off in the middle. Every request is
// answered, by one or the other.
func TestHandoffWhileTheSuccessorAccepts(t *testing.T) {
	inner, dup := sharedSocket(t, "tcp", "127.0.0.1:0")
	old := linger.Wrap(inner, linger.Config{})
	successor := linger.Wrap(dup, linger.Config{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, successor.Shutdown(ctx))
	})
	serveName(t, old, "old")
	serveName(t, successor, "successor")

	const workers, perWorker = 8, 100
	var byName sync.Map // answer → *atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	var sent atomic.Int64
	handedOff := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			for range perWorker {
				if sent.Add(1) == workers*perWorker/2 {
					go func() {
						defer close(handedOff)
						assert.NoError(t, old.Handoff())
					}()
				}
				resp, err := cl.Get("http://" + inner.Addr().String() + "/")
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					n, _ := byName.LoadOrStore(string(b), new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	<-handedOff
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, old.Shutdown(ctx))

	assert.Zero(t, failed.Load(), "failed requests (first: %v)", firstErr.Load())
	count := func(name string) int64 {
		if n, ok := byName.Load(name); ok {
			return n.(*atomic.Int64).Load()
		}
		return 0
	}
	assert.Equal(t, int64(workers*perWorker), count("old")+count("successor"), "every answer came from one of the two")
	assert.Positive(t, count("successor"), "the successor served")
	t.Logf("old served %d, the successor %d", count("old"), count("successor"))
}

// noSocket is a listener with no descriptor behind it.
type noSocket struct {
	net.Listener
	closed bool
}

func (l *noSocket) Close() error { l.closed = true; return nil }

func TestHandoffIsRejected(t *testing.T) {
	t.Run("not a socket", func(t *testing.T) {
		inner := &noSocket{Listener: testnet.Listen(t)}
		ln := linger.Wrap(inner, linger.Config{})
		err := ln.Handoff()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "linger: Handoff: *linger_test.noSocket is not a socket another process can hold")
		assert.False(t, inner.closed, "a rejected Handoff closes nothing")
	})
	t.Run("after Close", func(t *testing.T) {
		ln := listen(t, linger.Config{})
		require.NoError(t, ln.Close())
		err := ln.Handoff()
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.Contains(t, err.Error(), "linger: Handoff after Close or Handoff")
	})
	t.Run("twice", func(t *testing.T) {
		ln := listen(t, linger.Config{})
		require.NoError(t, ln.Handoff())
		assert.ErrorIs(t, ln.Handoff(), net.ErrClosed)
		assert.ErrorIs(t, ln.Close(), net.ErrClosed, "Close after Handoff is a second close")
		_, err := ln.Accept()
		assert.ErrorIs(t, err, net.ErrClosed, "Accept after Handoff reports the listener closed")
	})
}

// net.UnixListener.Close removes the socket's file, which would leave the
// successor's socket unreachable; Handoff keeps it.
func TestHandoffKeepsTheUnixSocketFile(t *testing.T) {
	for _, handoff := range []bool{true, false} {
		name := map[bool]string{true: "Handoff", false: "Close (control)"}[handoff]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			inner, dup := sharedSocket(t, "unix", path)
			old := linger.Wrap(inner, linger.Config{})
			if handoff {
				require.NoError(t, old.Handoff())
			} else {
				require.NoError(t, old.Close())
			}
			_, err := os.Stat(path)
			if !handoff {
				assert.True(t, errors.Is(err, os.ErrNotExist), "control: Close removed the socket file (%v)", err)
				return
			}
			require.NoError(t, err, "the socket file is still there")
			successor := linger.Wrap(dup, linger.Config{})
			serveName(t, successor, "successor")
			cl := &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", path)
				},
				DisableKeepAlives: true,
			}, Timeout: 10 * time.Second}
			resp, err := cl.Get("http://unix/")
			require.NoError(t, err, "the successor is reachable by the path")
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, "successor", string(b))
		})
	}
}
