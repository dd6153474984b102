//go:build linux

package linger_test

// Descriptor pressure: the process at its descriptor limit, so Accept
// fails with EMFILE, while the closes that hold the descriptors linger.
// A lingering close holds its socket's descriptor until the peer's FIN (or
// LingerTimeout), and on Linux it may need one more for a moment (the dup
// it hands to the epoll set, and the set's own epoll descriptor): at the
// limit those fail, and the close must still end with an outcome, never
// be lost. The accept loop must see EMFILE as temporary (net/http's Serve
// backs off and retries on net.Error.Temporary, as does the loop here),
// and Accept must serve again once the lingers end and free descriptors.
//
// The test lowers RLIMIT_NOFILE, which is the whole process's, so it runs
// in a child process (this test binary again, selecting only itself),
// never in the go test process that runs other tests in parallel.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

const (
	// pressureChildEnv is set in the child process that runs the test body.
	pressureChildEnv = "LINGER_TEST_FD_PRESSURE_CHILD"
	pressureDoneMark = "linger-fd-pressure-child-passed"
	// pressureClients connect before the limit is lowered; pressureRoom
	// is the descriptors left above those open then, so that about that
	// many server connections fit and the rest meet EMFILE.
	pressureClients = 120
	pressureRoom    = 24
)

func TestDescriptorPressure(t *testing.T) {
	if !inChildProcess(t, pressureChildEnv, pressureDoneMark) {
		return
	}
	t.Run("accept-loop", func(t *testing.T) { pressure(t, pressureLoop, false, false) })
	t.Run("net-http", func(t *testing.T) { pressure(t, pressureHTTP, true, false) })
	t.Run("accept-loop-silent-peers", func(t *testing.T) { pressure(t, pressureLoop, false, true) })
	if !t.Failed() {
		goleak.VerifyNone(t)
		fmt.Println(pressureDoneMark)
	}
}

// inChildProcess runs t's test again in a child process (this test
// binary, selecting only t's test, with env set) and reports whether this
// is that child, which runs the body. The parent fails t unless the child
// passed and printed doneMark, which the body prints last, when nothing
// failed.
func inChildProcess(t *testing.T, env, doneMark string) bool {
	t.Helper()
	if os.Getenv(env) != "" {
		return true
	}
	self, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v=true", "-test.shuffle=off", "-test.timeout=50s")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), doneMark) {
		t.Fatalf("the child process of %s failed (%v):\n%s", t.Name(), err, out)
	}
	if testing.Verbose() {
		t.Logf("child:\n%s", out)
	}
	return false
}

// A pressureServer serves ln until it is closed: each connection gets one
// answer, then its owner closes it (a lingering close, since the client
// has not closed yet). It returns when its accept loop has.
type pressureServer func(t *testing.T, ln net.Listener) (wait func())

// pressureLoop is a plain accept loop: on a temporary error it backs off
// as net/http's Serve does (5 ms doubling to 1 s), on any other it stops.
func pressureLoop(t *testing.T, ln net.Listener) func() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var backoff time.Duration
		for {
			c, err := ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Temporary() {
					backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
					time.Sleep(backoff) // the back-off of a server's accept loop, not a synchronisation
					continue
				}
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("accept: a non-temporary error: %v", err)
				}
				return
			}
			backoff = 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil || line != "ping\n" {
					t.Errorf("server read %q, %v", line, err)
					return
				}
				_, err = io.WriteString(c, "pong\n")
				assert.NoError(t, err)
			}()
		}
	}()
	return wg.Wait
}

// pressureHTTP is net/http's Serve, which answers and closes (the
// clients ask for Connection: close).
func pressureHTTP(t *testing.T, ln net.Listener) func() {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "pong\n")
		}),
		ErrorLog: log.New(io.Discard, "", 0), // its "Accept error: ...; retrying" lines
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	return func() {
		srv.Close()
		<-done
	}
}

// emfileListener records the Accept errors of the linger.Listener under
// it: the first EMFILE closes emfile, so clients know the limit was met.
type emfileListener struct {
	net.Listener
	emfiles atomic.Int64
	other   atomic.Value // error: the first error that is not EMFILE
	once    sync.Once
	emfile  chan struct{}
}

func (l *emfileListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	switch {
	case err == nil, errors.Is(err, net.ErrClosed):
	case errors.Is(err, syscall.EMFILE):
		l.emfiles.Add(1)
		l.once.Do(func() { close(l.emfile) })
	default:
		l.other.CompareAndSwap(nil, err)
	}
	return c, err
}

// pressure runs pressureClients clients against serve at the descriptor
// limit. With silent, the clients never close: each lingering close ends
// by its LingerTimeout, and only that frees descriptors for Accept.
func pressure(t *testing.T, serve pressureServer, overHTTP, silent bool) {
	// The runtime's poller and a first listener exist before the count.
	warm, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	warm.Close()
	fdsBefore := countFDs(t)

	var rl syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl))
	saved := rl
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved) })

	// Longer than the test, so that only the clients' FINs end these
	// lingers; with silent peers, short, so that their timeouts do.
	lingerTimeout, want := 10*time.Second, linger.Clean
	if silent {
		lingerTimeout, want = 200*time.Millisecond, linger.Timeout
	}
	outcomes := make(chan linger.CloseInfo, pressureClients)
	inner, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{
		LingerTimeout: lingerTimeout,
		OnClose:       func(ci linger.CloseInfo) { outcomes <- ci },
	})
	require.NoError(t, err)
	ln := &emfileListener{Listener: inner, emfile: make(chan struct{})}

	// Every client connects and sends its request before the limit is
	// lowered: the kernel completes the handshakes into the accept queue,
	// and the server takes them as descriptors allow.
	clients := make([]net.Conn, 0, pressureClients)
	for range pressureClients {
		c, err := net.Dial("tcp", inner.Addr().String())
		require.NoError(t, err)
		clients = append(clients, c)
	}
	rl.Cur = uint64(countFDs(t) + pressureRoom)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl))
	t.Logf("RLIMIT_NOFILE lowered to %d (%d open)", rl.Cur, countFDs(t))

	wait := serve(t, ln)

	// Each client reads its answer and then keeps its end open, so the
	// server's close lingers and holds its descriptor, until Accept has
	// met EMFILE; then it reads to EOF (the server's FIN: the lingering
	// close half-closed) and closes, which ends that linger (Clean) and
	// frees the descriptor for the next Accept.
	var cw sync.WaitGroup
	var answered, eofs, noEMFILE atomic.Int64
	if silent {
		t.Cleanup(func() {
			for _, c := range clients {
				c.Close()
			}
		})
	}
	for _, c := range clients {
		cw.Add(1)
		go func() {
			defer cw.Done()
			if !silent {
				defer c.Close()
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			if !pressureExchange(t, c, br, overHTTP) {
				return
			}
			answered.Add(1)
			select {
			case <-ln.emfile:
			case <-time.After(15 * time.Second):
				noEMFILE.Add(1)
			}
			if n, err := io.Copy(io.Discard, br); err != nil || n != 0 {
				t.Errorf("client: after its answer read %d more bytes, then %v; want EOF", n, err)
				return
			}
			eofs.Add(1)
		}()
	}
	cw.Wait()

	// Every close reports its outcome; the lingers ended on the clients'
	// FINs (silent: their timeouts), none was cut or shed.
	got := make(map[linger.Outcome]int)
	for range pressureClients {
		select {
		case ci := <-outcomes:
			got[ci.Outcome]++
		case <-time.After(15 * time.Second):
			t.Fatalf("only %d of %d closes reported an outcome: %v; stats %+v", len(got), pressureClients, got, inner.Stats())
		}
	}
	assert.Equal(t, map[linger.Outcome]int{want: pressureClients}, got, "outcomes")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	require.NoError(t, inner.Shutdown(ctx))
	wait()
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved))

	s := inner.Stats()
	t.Logf("EMFILE from Accept %d times; %d answered, %d EOFs; Shutdown %v; stats %+v", ln.emfiles.Load(), answered.Load(), eofs.Load(), time.Since(t0).Round(time.Millisecond), s)
	require.Positive(t, ln.emfiles.Load(), "Accept never met EMFILE, so the test tested too little")
	assert.Zero(t, noEMFILE.Load(), "clients that waited in vain for EMFILE")
	if err, _ := ln.other.Load().(error); err != nil {
		t.Errorf("Accept failed other than with EMFILE: %v", err)
	}
	assert.EqualValues(t, pressureClients, answered.Load(), "clients answered")
	assert.EqualValues(t, pressureClients, eofs.Load(), "clients that read the server's FIN")
	assert.EqualValues(t, pressureClients, s.Accepted, "accepted")
	assert.EqualValues(t, pressureClients, s.Closed(), "closed")
	assert.Zero(t, s.Open, "open")
	assert.Zero(t, s.Lingering, "lingering")
	open := fdsBefore
	if silent {
		open += pressureClients // the clients' own ends, closed at cleanup
	}
	assert.Equal(t, open, countFDs(t), "descriptors open after Shutdown")
}

// pressureExchange sends the client's request and reads its answer, a
// line or, overHTTP, an HTTP/1.1 response.
func pressureExchange(t *testing.T, c net.Conn, br *bufio.Reader, overHTTP bool) bool {
	if !overHTTP {
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Errorf("client write: %v", err)
			return false
		}
		line, err := br.ReadString('\n')
		if err != nil || line != "pong\n" {
			t.Errorf("client read %q, %v", line, err)
			return false
		}
		return true
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: pressure\r\nConnection: close\r\n\r\n"); err != nil {
		t.Errorf("client write: %v", err)
		return false
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Errorf("client: %v", err)
		return false
	}
	// Only the body's declared length: the EOF after it is read later.
	body := make([]byte, resp.ContentLength)
	_, err = io.ReadFull(resp.Body, body)
	if err != nil || string(body) != "pong\n" {
		t.Errorf("client read body %q, %v", body, err)
		return false
	}
	return true
}
