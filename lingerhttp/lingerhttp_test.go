package lingerhttp

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is the sweeper's and ConnState's clock in tests.
type fakeClock struct{ ns atomic.Int64 }

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) now() time.Time          { return base.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) set(d time.Duration)     { c.ns.Store(int64(d)) }
func (c *fakeClock) elapsed() time.Duration  { return time.Duration(c.ns.Load()) }
func newFakeClock(s *Server) *fakeClock      { c := &fakeClock{}; s.now = c.now; return c }
func (s *Server) open() int64                { return s.Listener().Stats().Open }
func (s *Server) waitServing(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Listener() != nil }, 5*time.Second, time.Millisecond)
}
func ok(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

// harness runs a Server on loopback and reports its connections' idle
// transitions, so tests move the clock only once a connection is idle.
type harness struct {
	*Server
	srv   *http.Server
	addr  string
	idle  chan net.Conn
	serve chan error
}

func start(t *testing.T, h http.Handler, srvIdle time.Duration, cfg Config, fake bool) (*harness, *fakeClock) {
	t.Helper()
	hs := &harness{idle: make(chan net.Conn, 64), serve: make(chan error, 1)}
	hs.srv = &http.Server{
		Handler:     h,
		IdleTimeout: srvIdle,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateIdle {
				hs.idle <- c
			}
		},
	}
	hs.Server = New(hs.srv, cfg)
	var clock *fakeClock
	if fake {
		clock = newFakeClock(hs.Server)
	}
	hs.addr = serveLoopback(t, hs.Server, hs.serve, hs.Serve)
	return hs, clock
}

// serveLoopback serves s with serve (Serve or ServeTLS) on a new loopback
// listener, its result going to served, waits until it serves and shuts it
// down when the test ends. It returns the listener's address.
func serveLoopback(t *testing.T, s *Server, served chan error, serve func(net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { served <- serve(ln) }()
	s.waitServing(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-served
	})
	return ln.Addr().String()
}

// client is one keep-alive connection speaking HTTP/1.1 by hand, so the
// test sees every Connection header and how the connection ends.
type client struct {
	net.Conn
	br *bufio.Reader
}

func (h *harness) dial(t *testing.T) *client {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{Conn: c, br: bufio.NewReader(c)}
}

func (c *client) get(path string) (*http.Response, error) {
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, err
}

// waitIdle waits until the server has marked a connection idle.
func (h *harness) waitIdle(t *testing.T) {
	t.Helper()
	select {
	case <-h.idle:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection went idle")
	}
}

func TestRetireSendsConnectionCloseOnceOnTheRetiredConnection(t *testing.T) {
	// The server's IdleTimeout of 1 s becomes the retire threshold.
	h, clock := start(t, http.HandlerFunc(ok), time.Second, Config{}, true)
	a, b := h.dial(t), h.dial(t)
	for _, c := range []*client{a, b} {
		resp, err := c.get("/")
		require.NoError(t, err)
		assert.False(t, resp.Close)
		h.waitIdle(t)
	}
	clock.advance(1500 * time.Millisecond) // both idle 1.5 s: past the threshold

	resp, err := a.get("/")
	require.NoError(t, err)
	assert.True(t, resp.Close, "the retired connection's next response says Connection: close")
	_, err = a.br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "and the server ends it with a FIN")

	resp, err = b.get("/")
	require.NoError(t, err)
	assert.True(t, resp.Close, "b was idle as long: retired too")

	c := h.dial(t)
	for range 3 {
		resp, err = c.get("/")
		require.NoError(t, err)
		assert.False(t, resp.Close, "a connection reused within the threshold is never retired")
		h.waitIdle(t)
		clock.advance(500 * time.Millisecond)
	}
	assert.EqualValues(t, 0, h.Listener().Stats().Outcomes[linger.Crossed]+h.Listener().Stats().Outcomes[linger.Pending])
	assert.EqualValues(t, 2, h.Advice().Retired, "a and b were retired, c never")
}

func TestHardCapClosesIdleConnectionsAndGrowsWithReuse(t *testing.T) {
	h, clock := start(t, http.HandlerFunc(ok), time.Second, Config{CloseIdleAfter: 10 * time.Second}, true)
	a := h.dial(t)
	_, err := a.get("/")
	require.NoError(t, err)
	h.waitIdle(t)
	start := clock.elapsed()

	clock.set(start + 10*time.Second - time.Millisecond)
	h.closeIdle()
	assert.EqualValues(t, 1, h.open(), "not closed before the cap")
	clock.set(start + 10*time.Second)
	h.closeIdle()
	assert.EqualValues(t, 0, h.open(), "closed at the cap")
	_, err = a.br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "with a FIN")

	// A peer reuses a connection after 9 s: the cap grows to 9 s + 2.25 s.
	b := h.dial(t)
	_, err = b.get("/")
	require.NoError(t, err)
	h.waitIdle(t)
	clock.advance(9 * time.Second)
	resp, err := b.get("/")
	require.NoError(t, err)
	assert.True(t, resp.Close, "retired after 9 s idle")
	assert.Equal(t, 9*time.Second, h.Advice().LongestReuse)
	_, err = b.br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the server ends the retired connection")
	b.Close()
	require.Eventually(t, func() bool { return h.open() == 0 }, 10*time.Second, time.Millisecond)

	c := h.dial(t)
	_, err = c.get("/")
	require.NoError(t, err)
	h.waitIdle(t)
	idleFrom := clock.elapsed()
	clock.set(idleFrom + 11*time.Second)
	h.closeIdle()
	assert.EqualValues(t, 1, h.open(), "the grown cap holds at 11 s")
	clock.set(idleFrom + 11250*time.Millisecond)
	h.closeIdle()
	assert.EqualValues(t, 0, h.open(), "and closes at 11.25 s")
}

func TestAdviceReportsWhatWasProvoked(t *testing.T) {
	var advised []Advice
	var mu sync.Mutex
	cfg := Config{CloseIdleAfter: 10 * time.Second, OnAdvice: func(a Advice) { mu.Lock(); advised = append(advised, a); mu.Unlock() }}
	h, clock := start(t, http.HandlerFunc(ok), time.Second, cfg, true)

	// One reuse after 4 s.
	a := h.dial(t)
	_, err := a.get("/")
	require.NoError(t, err)
	h.waitIdle(t)
	clock.advance(4 * time.Second)
	resp, err := a.get("/")
	require.NoError(t, err)
	require.True(t, resp.Close, "retired")
	_, err = a.br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	a.Close()

	// Two requests cross the hard cap's close on the wire.
	for range 2 {
		c := h.dial(t)
		_, err = c.get("/")
		require.NoError(t, err)
		h.waitIdle(t)
		clock.advance(20 * time.Second)
		h.closeIdle()
		_, err = c.br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "our FIN arrived")
		io.WriteString(c, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n") // crosses it
		c.Close()
	}
	require.Eventually(t, func() bool { return h.Advice().Lost == 2 }, 10*time.Second, time.Millisecond)
	adv := h.Advice()
	assert.Equal(t, 4*time.Second, adv.LongestReuse)
	assert.Equal(t, max(4*time.Second, adv.LongestLostIdle)+time.Second, adv.Suggested)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, advised, 1, "advice is given once")
	assert.EqualValues(t, 1, advised[0].Lost)
}

func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", ok)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		<-release
		io.WriteString(w, "slow ok")
	})
	var h *harness
	mux.Handle("/ready", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ReadyHandler().ServeHTTP(w, r) }))
	h, _ = start(t, mux, 50*time.Millisecond, Config{DrainDelay: 100 * time.Millisecond, DrainIdle: 100 * time.Millisecond}, false)

	idle := h.dial(t)
	_, err := idle.get("/")
	require.NoError(t, err)
	busy := h.dial(t)
	busyResp := make(chan *http.Response, 1)
	go func() {
		resp, err := busy.get("/slow")
		assert.NoError(t, err)
		busyResp <- resp
	}()
	<-inHandler
	probe := h.dial(t)
	resp, err := probe.get("/ready")
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)

	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool { return h.draining.Load() }, 5*time.Second, time.Millisecond)
	resp, err = probe.get("/ready")
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode, "the balancer's health check fails first")
	assert.True(t, resp.Close, "and even that response ends its connection")

	_, err = idle.br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the idle connection gets a FIN after DrainIdle")
	idle.Close()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	r := <-busyResp
	require.NotNil(t, r)
	busy.Close()
	probe.Close()
	assert.Equal(t, 200, r.StatusCode)
	assert.True(t, r.Close, "the in-flight response says Connection: close")
	assert.NoError(t, <-done)
	assert.ErrorIs(t, <-h.serve, http.ErrServerClosed)
	h.serve <- http.ErrServerClosed // for the cleanup
	st := h.Listener().Stats()
	assert.EqualValues(t, 0, st.Open+st.Lingering, "every connection and linger finished")
	assert.EqualValues(t, 0, st.Outcomes[linger.Pending]+st.Outcomes[linger.Crossed]+st.Outcomes[linger.Reset])
}

// The drain holds idle connections (DefaultDrainIdle, longer than this
// context allows): a request the balancer sends on one meanwhile is
// answered, with "Connection: close", instead of racing a close; the one
// that stays idle is closed in time for its lingering close to end before
// the deadline.
func TestShutdownHoldsIdleConnections(t *testing.T) {
	const lingerFor = 100 * time.Millisecond
	h, _ := start(t, http.HandlerFunc(ok), time.Second, Config{Linger: linger.Config{LingerTimeout: lingerFor}}, false)
	used, quiet := h.dial(t), h.dial(t)
	for _, c := range []*client{used, quiet} {
		_, err := c.get("/")
		require.NoError(t, err)
		h.waitIdle(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(ctx) }()
	require.Eventually(t, func() bool { return h.draining.Load() }, 5*time.Second, time.Millisecond)

	resp, err := used.get("/")
	require.NoError(t, err, "a request on a held idle connection is served")
	assert.Equal(t, 200, resp.StatusCode)
	assert.True(t, resp.Close, "with Connection: close")

	_, err = quiet.br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the quiet one gets a FIN")
	assert.WithinDuration(t, deadline.Add(-lingerFor-time.Second), time.Now(), 500*time.Millisecond,
		"closed as late as the deadline allows, no sooner")
	quiet.Close()
	used.Close()
	assert.NoError(t, <-done)
	st := h.Listener().Stats()
	assert.EqualValues(t, 0, st.Outcomes[linger.Pending]+st.Outcomes[linger.Crossed]+st.Outcomes[linger.Reset]+st.Outcomes[linger.Aborted])
}

// A second Shutdown does not serve a second DrainDelay: with the delay
// over and nothing left to wait for, it succeeds even with a context that
// has already ended (one that waited for the delay again would abort).
func TestShutdownAgainSkipsTheDrainDelay(t *testing.T) {
	h, _ := start(t, http.HandlerFunc(ok), time.Second, Config{DrainDelay: 50 * time.Millisecond}, false)
	require.NoError(t, h.Shutdown(context.Background()))
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	assert.NoError(t, h.Shutdown(ended))
}

func TestShutdownReturnsAtContextDeadline(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	h, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		<-release
	}), time.Second, Config{}, false)
	t.Cleanup(func() { close(release) }) // before the harness's Shutdown
	c := h.dial(t)
	go c.get("/")
	<-inHandler
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	assert.ErrorIs(t, h.Shutdown(ctx), context.DeadlineExceeded)
	assert.Less(t, time.Since(begin), 2*time.Second)
}

// A user who calls http.Server.Shutdown instead still gets FINs, not RSTs.
func TestHTTPServerShutdownDegradesSafely(t *testing.T) {
	h, _ := start(t, http.HandlerFunc(ok), time.Second, Config{}, false)
	clients := make([]*client, 10)
	for i := range clients {
		clients[i] = h.dial(t)
		_, err := clients[i].get("/")
		require.NoError(t, err)
		h.waitIdle(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.srv.Shutdown(ctx))
	for _, c := range clients {
		_, err := c.br.ReadByte()
		assert.ErrorIs(t, err, io.EOF)
		assert.False(t, testnet.IsReset(err))
		c.Close()
	}
	assert.ErrorIs(t, <-h.serve, http.ErrServerClosed)
	h.serve <- http.ErrServerClosed
	require.NoError(t, h.Listener().Shutdown(ctx))
}

func TestInvalidConfigPanicsByName(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{CloseIdleAfter: -1}, "lingerhttp: Config.CloseIdleAfter is negative (-1ns)"},
		{Config{DrainDelay: -1}, "lingerhttp: Config.DrainDelay is negative (-1ns)"},
		{Config{DrainIdle: -time.Second}, "lingerhttp: Config.DrainIdle is negative (-1s)"},
		{Config{RetireAfter: -1}, "lingerhttp: Config.RetireAfter is negative (-1ns)"},
		{Config{ShutdownTimeout: -1}, "lingerhttp: Config.ShutdownTimeout is negative (-1ns)"},
		{Config{Linger: linger.Config{LingerBytes: -1}}, "lingerhttp: Config.Linger: linger: Config.LingerBytes is negative (-1)"},
	} {
		func() {
			defer func() {
				err, _ := recover().(error)
				require.Error(t, err, "New(%+v) panics with an error", tc.cfg)
				assert.True(t, strings.HasPrefix(err.Error(), tc.want), "%q, want %q", err, tc.want)
			}()
			New(&http.Server{}, tc.cfg)
		}()
	}
	assert.PanicsWithError(t, "lingerhttp: New of a nil *http.Server", func() { New(nil, Config{}) })
	s := New(&http.Server{}, Config{})
	assert.EqualError(t, s.Serve(nil), "lingerhttp: Serve of a nil listener")
	assert.EqualError(t, s.ServeTLS(nil, "", ""), "lingerhttp: ServeTLS of a nil listener")
	lln, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{})
	require.NoError(t, err)
	defer lln.Close()
	assert.EqualError(t, s.Serve(lln), "lingerhttp: Serve of a *linger.Listener", "it would wrap it twice")
}

// The handler wrapper keeps what handlers rely on: ResponseController's
// Flush and Hijack, io.ReaderFrom (sendfile) and io.StringWriter.
func TestHandlerKeepsResponseWriterFeatures(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/features", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "before ")
		if err := http.NewResponseController(w).Flush(); err != nil {
			io.WriteString(w, "flush failed")
		}
		io.WriteString(w, "flushed")
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		brw.Flush()
		c.Close()
	})
	h, _ := start(t, mux, time.Second, Config{}, false)
	c := h.dial(t)
	io.WriteString(c, "GET /features HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "before flushed", string(body))
	assert.Equal(t, []string{"chunked"}, resp.TransferEncoding, "flushed before the end")

	c2 := h.dial(t)
	resp, err = c2.get("/hijack")
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	c.Close()
	c2.Close()
}

// A Server serves one listener: a second Serve fails at once, and the
// first goes on serving.
func TestSecondServeFails(t *testing.T) {
	h, _ := start(t, http.HandlerFunc(ok), time.Second, Config{}, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	assert.ErrorIs(t, h.Serve(ln), errServeTwice)
	assert.ErrorIs(t, h.ServeTLS(ln, "", ""), errServeTwice)
	_, err = h.dial(t).get("/")
	assert.NoError(t, err, "the first Serve still serves")
}

// A Shutdown right after Serve starts, or before it, returns, and leaves
// no sweeper behind (goleak checks at the end): the sweeper used to read
// its stop channel after Shutdown had closed and cleared it, and wait on
// nil forever.
func TestShutdownRightAfterOrBeforeServe(t *testing.T) {
	for range 50 {
		s := New(&http.Server{Handler: http.HandlerFunc(ok)}, Config{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		require.NoError(t, s.Shutdown(ctx))
		cancel()
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
		ln.Close()
	}
	s := New(&http.Server{Handler: http.HandlerFunc(ok)}, Config{})
	require.NoError(t, s.Shutdown(context.Background()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	assert.ErrorIs(t, s.Serve(ln), http.ErrServerClosed, "Serve after Shutdown")
}

// Without a near deadline the hold is DefaultDrainIdle, or DrainIdle; a
// deadline cuts it to the lingering close's bound plus 1 s before it.
func TestIdleCloseTime(t *testing.T) {
	s := New(&http.Server{}, Config{})
	for _, tc := range []struct {
		name      string
		drainIdle time.Duration
		ctx       time.Duration // 0: no deadline
		want      time.Duration // from now
	}{
		{"default, no deadline", 0, 0, DefaultDrainIdle},
		{"default, far deadline", 0, time.Minute, DefaultDrainIdle},
		{"default, near deadline", 0, 5 * time.Second, 5*time.Second - linger.DefaultLingerTimeout - time.Second},
		{"set, no deadline", time.Minute, 0, time.Minute},
		{"set, deadline first", time.Minute, 30 * time.Second, 30*time.Second - linger.DefaultLingerTimeout - time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.cfg.DrainIdle = tc.drainIdle
			before := time.Now()
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			got := s.idleCloseTime(ctx)
			after := time.Now()
			assert.False(t, got.Before(before.Add(tc.want)), "%v before %v", got, before.Add(tc.want))
			assert.False(t, got.After(after.Add(tc.want)), "%v after %v", got, after.Add(tc.want))
		})
	}
}

// ListenAndServe serves on a linger.Listen listener (plain TCP, its
// own), and returns http.ErrServerClosed after Shutdown; after Shutdown it
// serves nothing.
func TestListenAndServe(t *testing.T) {
	s := New(&http.Server{Addr: "127.0.0.1:0", Handler: http.HandlerFunc(ok)}, Config{})
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe() }()
	require.Eventually(t, func() bool { return s.Listener() != nil }, 5*time.Second, time.Millisecond)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + s.Listener().Addr().String())
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	assert.ErrorIs(t, <-served, http.ErrServerClosed)

	late := New(&http.Server{Addr: "127.0.0.1:0", Handler: http.HandlerFunc(ok)}, Config{})
	require.NoError(t, late.Shutdown(ctx))
	assert.ErrorIs(t, late.ListenAndServe(), http.ErrServerClosed)
}
