package lingerhttp

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// After New, the http.Server served directly is plain net/http: nothing
// of it changed, and its IdleTimeout closes an idle connection (issue 22).
func TestNewLeavesTheServerAlone(t *testing.T) {
	const idle = 300 * time.Millisecond
	srv := &http.Server{Handler: http.HandlerFunc(ok), IdleTimeout: idle}
	New(srv, Config{})
	assert.Equal(t, idle, srv.IdleTimeout)
	assert.Nil(t, srv.ConnState)
	assert.Nil(t, srv.ConnContext)
	_, isOK := srv.Handler.(http.HandlerFunc)
	assert.True(t, isOK, "the handler is the one given")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-served }()
	p := dialSlow(t, ln.Addr().String(), true)
	p.heldFor(t, time.Now(), idle+time.Second)
}

// Served through the Server, an idle HTTP/1 connection outlives
// net/http's IdleTimeout (net/http's idle deadline is held back) and is
// retired by its next response instead. This fails if net/http stops
// setting that deadline the way conn expects, between StateIdle and its
// wait for the next request.
func TestIdleHTTP1ConnectionOutlivesIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	addr, _ := slowServer(t, true, idle, time.Second, Config{})
	p := dialSlow(t, addr, true)
	p.SetReadDeadline(time.Now().Add(3 * idle))
	_, err := p.br.ReadByte()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "still open after 3 × IdleTimeout")
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(p.br, nil)
	require.NoError(t, err, "the request on it is answered")
	resp.Body.Close()
	assert.True(t, resp.Close, "retired: Connection: close")
}

// Run listens on srv.Addr, serves, and when its context ends drains and
// returns nil; an idle keep-alive connection ends with a FIN.
func TestRun(t *testing.T) {
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: http.HandlerFunc(ok)}
	s := New(srv, Config{DrainIdle: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	s.waitServing(t)
	p := dialSlow(t, s.Listener().Addr().String(), true)
	cancel()
	p.heldFor(t, time.Now(), 5*time.Second)
	p.Close()
	select {
	case err := <-ran:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	assert.Equal(t, 17*time.Second, New(&http.Server{}, Config{}).shutdownTimeout(), "the zero Config's bound")
	assert.Equal(t, time.Minute, New(&http.Server{}, Config{ShutdownTimeout: time.Minute}).shutdownTimeout())
}

// Run returns at once the error that keeps it from serving.
func TestRunReportsListenErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	s := New(&http.Server{Addr: ln.Addr().String()}, Config{})
	err = s.Run(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "address already in use")
}

// ListenAndServe listens on srv.Addr; a second call while it serves
// fails without listening, and a refused ListenAndServeTLS changes
// nothing.
func TestListenAndServeUsesAddr(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := probe.Addr().String()
	probe.Close()
	s := New(&http.Server{Addr: addr, Handler: http.HandlerFunc(ok)}, Config{})
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe() }()
	s.waitServing(t)
	assert.Equal(t, addr, s.Listener().Addr().String())
	assert.ErrorIs(t, s.ListenAndServe(), errServeTwice)
	assert.ErrorIs(t, s.ListenAndServeTLS("", ""), errServeTwice)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	assert.ErrorIs(t, <-served, http.ErrServerClosed)
}

// A close net/http makes itself with a request's body unread (here after
// "Connection: close") leaves the bytes unread, as plain net/http does:
// linger reports them, but the Server's advice, which is about the idle
// timeout, counts no lost request (issue 21).
func TestAdviceIgnoresNetHTTPsOwnCloses(t *testing.T) {
	var advised []Advice
	addr, s := slowServer(t, true, time.Second, time.Second, Config{OnAdvice: func(a Advice) { advised = append(advised, a) }})
	for _, head := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000000\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, head+strings.Repeat("x", 300<<10))
		body, err := io.ReadAll(c)
		require.NoError(t, err)
		assert.Contains(t, string(body), "200 OK")
		c.Close()
	}
	require.Eventually(t, func() bool { return s.Listener().Stats().Closed() == 2 }, 10*time.Second, time.Millisecond)
	st := s.Listener().Stats()
	assert.Positive(t, st.Outcomes[linger.Pending]+st.Outcomes[linger.Crossed], "the bytes were left unread: %+v", st)
	assert.Zero(t, s.Advice().Lost)
	assert.Empty(t, advised)
}

// HTTP/1 responses that keep their connection tell the client the idle
// bound the Server keeps (Keep-Alive: timeout=N, in whole seconds);
// responses that end it, and HTTP/2 ones, do not.
func TestKeepAliveAdvertisesTheIdleBound(t *testing.T) {
	for _, tc := range []struct {
		idle time.Duration
		cfg  Config
		want string
	}{
		{2500 * time.Millisecond, Config{}, "timeout=2"},
		{0, Config{}, "timeout=90"},
		{0, Config{CloseIdleAfter: 30 * time.Second}, "timeout=30"},
		{time.Hour, Config{}, "timeout=90"},
		{100 * time.Millisecond, Config{}, "timeout=1"},
	} {
		addr, _ := slowServer(t, true, tc.idle, time.Second, tc.cfg)
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for _, req := range []struct {
			conn string
			want string
		}{
			{"", tc.want},
			{"Connection: close\r\n", ""},
		} {
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"+req.conn+"\r\n")
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			assert.Equal(t, req.want, resp.Header.Get("Keep-Alive"), "IdleTimeout %v, %+v, %q", tc.idle, tc.cfg, req.conn)
		}
	}
}

// A body the handler left unread is read and discarded by net/http after
// the handler returns: those reads are not the next request's start, and
// the idle connection still outlives IdleTimeout, to be retired.
func TestUnreadBodyLeavesTheIdleWaitAlone(t *testing.T) {
	const idle = 200 * time.Millisecond
	addr, _ := slowServer(t, true, idle, time.Second, Config{})
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	const body = 64 << 10 // under net/http's 256 KiB discard limit: the connection is reused
	// net/http reads most of the body from the socket after the handler
	// (which does not read it) has returned, before it answers.
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(body)+"\r\n\r\n"+strings.Repeat("x", body))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.False(t, resp.Close)

	c.SetReadDeadline(time.Now().Add(4 * idle))
	_, err = br.ReadByte()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "still open after IdleTimeout")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	require.NoError(t, err, "the next request is answered")
	resp.Body.Close()
	assert.True(t, resp.Close, "retired")
}
