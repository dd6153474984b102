package linger_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The package's convention: Listen, which returns an error, returns an
// invalid argument as its error; Wrap, which returns none, panics at once
// with the same error value. The error is short and Go-styled: the field
// and its value, the advice being in the field's doc comment.
func TestInvalidConfigIsRejectedByName(t *testing.T) {
	for _, tc := range []struct {
		cfg  linger.Config
		want string
	}{
		{linger.Config{LingerTimeout: -time.Second}, "linger: Config.LingerTimeout is negative (-1s)"},
		{linger.Config{LingerBytes: -1}, "linger: Config.LingerBytes is negative (-1)"},
		{linger.Config{MaxLingering: -1}, "linger: Config.MaxLingering is negative (-1)"},
		{linger.Config{KeepAliveInterval: -time.Second}, "linger: Config.KeepAliveInterval is negative (-1s)"},
		{linger.Config{KeepAliveCount: -1}, "linger: Config.KeepAliveCount is negative (-1)"},
		{linger.Config{UserTimeout: 25 * 24 * time.Hour}, "linger: Config.UserTimeout is too large (600h0m0s)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			ln, err := linger.Listen("tcp", "127.0.0.1:0", tc.cfg)
			assert.Nil(t, ln)
			require.EqualError(t, err, tc.want)

			raw := testnet.Listen(t)
			assert.PanicsWithError(t, tc.want, func() { linger.Wrap(raw, tc.cfg) })
		})
	}
}

// Wrap of a nil listener panics at once with an error that says so,
// rather than a nil dereference later in Accept, Addr or Close.
func TestWrapOfNilListenerPanics(t *testing.T) {
	assert.PanicsWithError(t, "linger: Wrap of a nil listener", func() { linger.Wrap(nil, linger.Config{}) })
	assert.PanicsWithError(t, "linger: Wrap of a nil listener (*net.TCPListener)", func() {
		linger.Wrap((*net.TCPListener)(nil), linger.Config{})
	})
}

func TestNegativeKeepAliveIdleTurnsKeepAliveOff(t *testing.T) {
	s := listen(t, linger.Config{KeepAliveIdle: -1})
	_, srv := pair(t, s)
	on, ok := keepAliveOn(t, srv)
	if !ok {
		t.Skip("cannot read SO_KEEPALIVE here")
	}
	assert.False(t, on)
}

// errListener returns its errors from Accept, in order.
type errListener struct {
	net.Listener
	errs []error
}

func (l *errListener) Accept() (net.Conn, error) {
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}

type tempErr struct{}

func (tempErr) Error() string   { return "accept: too many open files" }
func (tempErr) Timeout() bool   { return false }
func (tempErr) Temporary() bool { return true }

func TestAcceptErrorsPassThroughUnchanged(t *testing.T) {
	want := tempErr{}
	ln := linger.Wrap(&errListener{Listener: testnet.Listen(t), errs: []error{want}}, linger.Config{})
	c, err := ln.Accept()
	assert.Nil(t, c)
	assert.Equal(t, error(want), err, "net/http backs off on the same error value")
}

func TestAcceptAfterCloseServesErrServerClosed(t *testing.T) {
	s := listen(t, linger.Config{})
	srv := &http.Server{Handler: http.NotFoundHandler()}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s) }()
	require.NoError(t, srv.Close())
	assert.ErrorIs(t, <-done, http.ErrServerClosed)
	_, err := s.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestCloseLeavesConnectionsAlone(t *testing.T) {
	s := listen(t, linger.Config{})
	client, srv := pair(t, s)
	require.NoError(t, s.Close())
	_, err := client.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(srv, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
}

func TestShutdownWaitsForOwnersAndLingers(t *testing.T) {
	s := listen(t, linger.Config{LingerTimeout: time.Minute})
	c1, s1 := pair(t, s) // open until its owner closes it
	c2, s2 := pair(t, s) // lingering until its peer sends FIN
	require.NoError(t, s2.Close())
	_, err := c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()

	// Each remaining connection holds Shutdown until it is finished.
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a connection open and one lingering", err)
	default:
	}
	require.NoError(t, c2.Close())
	assert.Equal(t, linger.Clean, s.Next(t).Outcome)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a connection open", err)
	default:
	}
	require.NoError(t, s1.Close())
	require.NoError(t, c1.Close())
	assert.NoError(t, <-done)
	st := s.Stats()
	assert.EqualValues(t, 2, st.Closed())
	assert.EqualValues(t, 0, st.Open+st.Lingering)
}

func TestShutdownReturnsAtContextDeadline(t *testing.T) {
	s := listen(t, linger.Config{LingerTimeout: time.Hour})
	_, open := pair(t, s)
	c2, lingering := pair(t, s)
	require.NoError(t, lingering.Close())
	_, err := c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)

	const deadline = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err = s.Shutdown(ctx)
	took := time.Since(start)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, took, deadline+2*time.Second, "Shutdown returned on time")

	// Both connections were closed; the open one's owner sees ErrClosed.
	_, err = open.Read(make([]byte, 1))
	assert.ErrorIs(t, err, net.ErrClosed)
	outcomes := []linger.Outcome{s.Next(t).Outcome, s.Next(t).Outcome}
	assert.Equal(t, []linger.Outcome{linger.Aborted, linger.Aborted}, outcomes)
	assert.EqualValues(t, 0, s.Stats().Lingering)
}

func TestStatsCountAcceptedOpenAndLingering(t *testing.T) {
	s := listen(t, linger.Config{LingerTimeout: time.Minute})
	c1, s1 := pair(t, s)
	_, _ = pair(t, s)
	require.NoError(t, s1.Close())
	_, err := c1.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
	st := s.Stats()
	assert.EqualValues(t, 2, st.Accepted)
	assert.EqualValues(t, 1, st.Open)
	assert.EqualValues(t, 1, st.Lingering)
	assert.EqualValues(t, 0, st.Closed())
	c1.Close()
	s.Next(t)
	assert.EqualValues(t, 1, s.Stats().Outcomes[linger.Clean])
	assert.EqualValues(t, 1, s.Stats().Outcomes[linger.Clean])
}

func TestRejectedSocketOptionIsReportedOnce(t *testing.T) {
	// The kernel caps TCP_KEEPIDLE at 32767 s (MAX_TCP_KEEPIDLE).
	var logged bytes.Buffer
	s := listen(t, linger.Config{KeepAliveIdle: 10 * time.Hour, ErrorLog: log.New(&logged, "", 0)})
	for range 3 {
		client, srv := pair(t, s)
		_, err := client.Write([]byte("x"))
		require.NoError(t, err)
		_, err = srv.Read(make([]byte, 1))
		require.NoError(t, err, "the connection works without the option")
	}
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if logged.Len() == 0 {
		t.Skip("this kernel accepts a 10 h keep-alive idle time")
	}
	assert.Len(t, lines, 1)
	assert.Contains(t, lines[0], "keep-alive")
}

// linger wrapped around a TLS listener hands the server *linger.Conn
// over *tls.Conn: net/http then never runs its TLS path (no HTTP/2, no
// Request.TLS). Accept says so once, with the right order; the right order
// itself says nothing.
func TestTLSListenerUnderLingerIsReportedOnce(t *testing.T) {
	run := func(t *testing.T, wrongOrder bool) string {
		var logged bytes.Buffer
		cfg := linger.Config{ErrorLog: log.New(&logged, "", 0), LingerTimeout: 100 * time.Millisecond}
		tlsCfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
		raw := testnet.Listen(t)
		var ln, lingerLn net.Listener
		if wrongOrder {
			lingerLn = linger.Wrap(tls.NewListener(raw, tlsCfg), cfg)
			ln = lingerLn
		} else {
			lingerLn = linger.Wrap(raw, cfg)
			ln = tls.NewListener(lingerLn, tlsCfg)
		}
		for range 3 {
			client, srv := pair(t, ln)
			client.Close() // no handshake: the server's close ends at once
			srv.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, lingerLn.(*linger.Listener).Shutdown(ctx))
		return logged.String()
	}
	t.Run("linger over TLS", func(t *testing.T) {
		logged := run(t, true)
		lines := strings.Split(strings.TrimSpace(logged), "\n")
		require.Len(t, lines, 1, "reported once for three connections: %q", logged)
		assert.Contains(t, lines[0], "returns *tls.Conn, a TLS connection")
		assert.Contains(t, lines[0], "put linger under TLS", "and says how to layer it")
	})
	t.Run("TLS over linger", func(t *testing.T) {
		assert.Empty(t, run(t, false))
	})
}

func TestOutcomeString(t *testing.T) {
	assert.Equal(t, "crossed", linger.Crossed.String())
	assert.Equal(t, "Outcome(200)", linger.Outcome(200).String())
	for o := range linger.NumOutcomes {
		assert.NotContains(t, o.String(), "Outcome(", "outcome %d has a name", o)
	}
}

// refusingListener is a listener whose Accept does more than accept, as
// an address allowlist or a PROXY-header parser does: it refuses every
// peer. It embeds the *net.TCPListener, so it has its SyscallConn.
type refusingListener struct{ *net.TCPListener }

func (l refusingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.TCPListener.Accept()
		if err != nil {
			return nil, err
		}
		c.Close()
	}
}

// Close takes the accept queue only from Go's own listeners: from another
// type, a connection taken from the queue would skip what its Accept does
// (here, refusing the peer). Its queue goes as a plain close leaves it:
// the kernel resets it, and linger's Accept returns nothing past the
// wrapper's.
func TestCloseLeavesTheQueueOfAnotherListenerTypeAlone(t *testing.T) {
	ln := testnet.Listen(t).(*net.TCPListener)
	l := linger.Wrap(refusingListener{ln}, linger.Config{})
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, l.Close())
	got, err := l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed, "Accept after Close")
	assert.Nil(t, got, "a queued connection returned past the wrapper's Accept")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	b, err := readEnd(c)
	assert.Empty(t, b)
	assert.True(t, testnet.IsReset(err), "the queued client's connection ends as a plain close ends it, reset: %v", err)
}

// Connections the kernel completed but the server had not accepted yet are
// reset when a plain listener closes; linger's Close hands them to Accept.
func TestCloseHandsTheAcceptQueueToTheServer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("taking the accept queue is Linux's")
	}
	const n = 20
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	// queue dials n clients that each send a request while nobody accepts.
	queue := func(t *testing.T, ln net.Listener) []net.Conn {
		clients := make([]net.Conn, n)
		for i := range clients {
			c, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			_, err = io.WriteString(c, req)
			require.NoError(t, err)
			clients[i] = c
		}
		return clients
	}
	t.Run("raw", func(t *testing.T) {
		ln := testnet.Listen(t)
		clients := queue(t, ln)
		require.NoError(t, ln.Close())
		resets := 0
		for _, c := range clients {
			if _, err := readEnd(c); testnet.IsReset(err) {
				resets++
			}
		}
		assert.Equal(t, n, resets, "control: the kernel resets the accept queue")
	})
	for name, cfg := range map[string]linger.Config{
		"linger":        {},
		"linger+rescue": {Rescue: linger.HTTP1Request},
	} {
		t.Run(name, func(t *testing.T) {
			s := listen(t, cfg)
			clients := queue(t, s)
			require.NoError(t, s.Close())
			for range n {
				c, err := s.Accept()
				require.NoError(t, err, "Accept returns the queued connections first")
				buf := make([]byte, len(req))
				_, err = io.ReadFull(c, buf)
				require.NoError(t, err)
				assert.Equal(t, req, string(buf))
				io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
				c.Close()
			}
			_, err := s.Accept()
			assert.ErrorIs(t, err, net.ErrClosed, "then it reports the listener closed")
			for _, c := range clients {
				got, err := readEnd(c)
				assert.NoError(t, err)
				assert.Contains(t, string(got), "204 No Content", "every queued request was served")
			}
		})
	}
}

// With nobody accepting, Shutdown closes what Close took from the accept
// queue, with FINs, instead of waiting for an Accept that never comes.
func TestShutdownWithNobodyAccepting(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("taking the accept queue is Linux's")
	}
	s := listen(t, linger.Config{})
	clients := make([]net.Conn, 5)
	for i := range clients {
		c, err := net.Dial("tcp", s.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\n\r\n")
		require.NoError(t, err)
		clients[i] = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	for _, c := range clients {
		_, err := readEnd(c)
		assert.NoError(t, err, "a FIN, not the kernel's reset")
		c.Close()
	}
	assert.NoError(t, <-done)
	assert.EqualValues(t, 5, s.Stats().Outcomes[linger.Pending])
}

// A connection its owner detached (a hijacked one) is not waited for by
// Shutdown, nor closed when Shutdown's context ends; its later Close still
// lingers and is reported.
func TestShutdownDoesNotWaitForDetachedConnections(t *testing.T) {
	s := listen(t, linger.Config{})
	client, srv := pair(t, s)
	srv.(*linger.Conn).Detach()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx), "Shutdown returns with the detached connection open")
	_, err := io.WriteString(srv, "still served")
	require.NoError(t, err, "and it works")
	require.NoError(t, srv.Close())
	got, err := readEnd(client)
	assert.NoError(t, err, "a FIN")
	assert.Equal(t, "still served", string(got))
	client.Close()
	assert.Equal(t, linger.Clean, s.Next(t).Outcome, "its close lingered")
}

// A detached connection that is already closing when Shutdown is called is
// waited for like any other.
func TestShutdownWaitsForDetachedConnectionsClosing(t *testing.T) {
	s := listen(t, linger.Config{})
	client, srv := pair(t, s)
	srv.(*linger.Conn).Detach()
	require.NoError(t, srv.Close())
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	waitParked(t, "linger.(*Listener).Shutdown") // Shutdown waits for the linger
	client.Close()
	assert.NoError(t, <-done)
	st := s.Stats()
	assert.EqualValues(t, 1, st.Outcomes[linger.Clean], "the linger ended before Shutdown returned")
	assert.EqualValues(t, 0, st.Lingering)
}

func TestStatsTable(t *testing.T) {
	var a linger.Stats
	for o := range linger.NumOutcomes {
		a.Outcomes[o] = int64(o) + 1
	}
	a.Accepted = 100
	b := a.Add(a)
	assert.EqualValues(t, 200, b.Accepted)
	assert.EqualValues(t, 2*(int64(linger.Crossed)+1), b.Outcomes[linger.Crossed])
	var closes int64
	for o := range linger.NumOutcomes {
		if o != linger.Rescued {
			closes += a.Outcomes[o]
		}
	}
	assert.Equal(t, closes, a.Closed(), "rescues are not closes")
	assert.Equal(t, "Outcome(10)", linger.NumOutcomes.String())
}
