//go:build linux

package linger_test

// The kernel's word on resets: each kind of close that makes Linux send a
// RST is run 1000 times in a private network namespace, once behind a plain
// listener (the control, which must reset) and behind linger.Wrap, which
// must not: as it comes, and with every close in the epoll set by Go's own
// descriptor (the form for closes that queue up). The namespace's counters and a capture of its RSTs, not
// the clients' errors alone, decide: a RST the clients never notice still
// costs a proxy a 502.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
)

const (
	rstRuns        = 1000
	rstConcurrency = 32
	// rstIOTimeout bounds every connection of these tests, client and
	// server side: a hang fails the run instead of stalling it.
	rstIOTimeout = 10 * time.Second
	// rstUnread is what the server leaves unread, or the client sends
	// after the server's close.
	rstUnread = 100
	// uploadSize is the body the 413 handler leaves unread: more than
	// net/http discards on its own (256 KiB), so net/http closes the
	// connection with the body queued.
	uploadSize = 1 << 20
	// uploadConcurrency is higher than rstConcurrency because net/http
	// holds each rejected upload for its 500 ms rstAvoidanceDelay.
	uploadConcurrency = 200
	uploadRejection   = "upload too large\n"
)

// rstKind is one way a server close meets client bytes.
type rstKind struct {
	runs, concurrency int
	// serve starts the server on ln; stop closes ln and waits for
	// everything serve started.
	serve func(t *testing.T, ln net.Listener) (stop func())
	// client runs one connection; nil means it saw what a client should:
	// the whole reply, then EOF.
	client func(c *net.TCPConn) error
	// outcomes are what linger must report for every close, and unread
	// what CloseInfo.Unread must be for each (-1: not checked).
	outcomes []linger.Outcome
	unread   int
	// rawResetsClients: in the control, every client sees the RST (so the
	// client-side assertion is proven able to fail too).
	rawResetsClients bool
	// rawResets checks the resets of the control run; serverPort is the
	// source port of the server's RSTs.
	rawResets func(t *testing.T, r resetCounts, serverPort int)
}

// TestRSTUnreadAtClose: the server answers and closes while the client's
// next 100 bytes sit unread in its receive queue. Linux's tcp_close sends a
// RST instead of a FIN (TCPAbortOnClose); linger half-closes and drains.
func TestRSTUnreadAtClose(t *testing.T) {
	testRST(t, rstKind{
		runs: rstRuns, concurrency: rstConcurrency,
		// The client sends one segment of 1+100 bytes; once the server
		// has read the first, the other 100 are in its receive queue.
		serve: func(t *testing.T, ln net.Listener) func() {
			return serveEach(t, ln, func(c net.Conn) error {
				var b [1]byte
				if _, err := io.ReadFull(c, b[:]); err != nil {
					return err
				}
				_, err := io.WriteString(c, "ok")
				return err
			})
		},
		client: func(c *net.TCPConn) error {
			if _, err := c.Write(make([]byte, 1+rstUnread)); err != nil {
				return err
			}
			return expectReply(c, "ok")
		},
		outcomes:         []linger.Outcome{linger.Pending},
		unread:           rstUnread,
		rawResetsClients: true,
		rawResets: func(t *testing.T, r resetCounts, port int) {
			assert.Equal(t, int64(rstRuns), r.AbortOnClose, "TCPAbortOnClose: every raw close had unread data")
			assert.GreaterOrEqual(t, r.From(port), rstRuns, "RSTs from the server")
		},
	})
}

// TestRSTWriteAfterClose: the server closes an idle connection and the
// client, having read the FIN, still sends 100 bytes (a keep-alive client
// that sends its next request before it notices the close). The socket
// closed by a plain Close answers them with a RST (TCPAbortOnData); the
// lingering one discards them and reports Crossed. Waiting for the FIN
// makes every run cross, where a race would mix in Pending closes.
func TestRSTWriteAfterClose(t *testing.T) {
	testRST(t, rstKind{
		runs: rstRuns, concurrency: rstConcurrency,
		serve: func(t *testing.T, ln net.Listener) func() {
			return serveEach(t, ln, func(net.Conn) error { return nil })
		},
		client: func(c *net.TCPConn) error {
			if err := expectReply(c, ""); err != nil {
				return err
			}
			if _, err := c.Write(make([]byte, rstUnread)); err != nil {
				return err
			}
			// A plain socket sends its RST in answer to the write; the
			// client learns of it on its next write (EPIPE), while its
			// reads keep returning the FIN's EOF.
			if err := c.CloseWrite(); err != nil {
				return err
			}
			return expectReply(c, "")
		},
		outcomes: []linger.Outcome{linger.Crossed},
		unread:   0,
		rawResets: func(t *testing.T, r resetCounts, port int) {
			// A closed socket that has already become a FIN-WAIT-2
			// timewait socket resets without counting TCPAbortOnData.
			assert.Positive(t, r.AbortOnData, "TCPAbortOnData")
			assert.GreaterOrEqual(t, r.From(port), rstRuns, "RSTs from the server: every raw close got data after it")
		},
	})
}

// TestRSTWriteRacingClose: the server closes each connection as soon as it
// accepts it, and the client sends 100 bytes as soon as it has connected,
// so the bytes arrive before or after the close, as they do when an idle
// timeout meets a request. A plain close resets either way; linger reports
// Pending or Crossed and resets never.
func TestRSTWriteRacingClose(t *testing.T) {
	testRST(t, rstKind{
		runs: rstRuns, concurrency: rstConcurrency,
		serve: func(t *testing.T, ln net.Listener) func() {
			return serveEach(t, ln, func(net.Conn) error { return nil })
		},
		client: func(c *net.TCPConn) error {
			if _, err := c.Write(make([]byte, rstUnread)); err != nil {
				return err
			}
			return expectReply(c, "")
		},
		outcomes: []linger.Outcome{linger.Pending, linger.Crossed},
		unread:   -1,
		rawResets: func(t *testing.T, r resetCounts, port int) {
			assert.Positive(t, r.AbortOnClose, "TCPAbortOnClose")
			assert.GreaterOrEqual(t, r.From(port), rstRuns, "RSTs from the server: every raw close met data")
		},
	})
}

// TestRSTRejectedUpload: net/http answers 413 to a 1 MiB upload without
// reading it and closes the connection. net/http half-closes and waits
// 500 ms first (rstAvoidanceDelay), yet a plain close still resets the
// client that is still sending; behind linger the client finishes sending,
// reads the whole 413 and then EOF.
func TestRSTRejectedUpload(t *testing.T) {
	testRST(t, rstKind{
		runs: rstRuns, concurrency: uploadConcurrency,
		serve: func(t *testing.T, ln net.Listener) func() {
			srv := &http.Server{
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, strings.TrimSuffix(uploadRejection, "\n"), http.StatusRequestEntityTooLarge)
				}),
				ReadHeaderTimeout: rstIOTimeout,
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			return func() {
				ctx, cancel := context.WithTimeout(context.Background(), rstIOTimeout)
				defer cancel()
				assert.NoError(t, srv.Shutdown(ctx), "http.Server.Shutdown")
				assert.ErrorIs(t, <-served, http.ErrServerClosed)
			}
		},
		client:           uploadClient,
		outcomes:         []linger.Outcome{linger.Pending},
		unread:           -1,
		rawResetsClients: true,
		rawResets: func(t *testing.T, r resetCounts, port int) {
			assert.Positive(t, r.AbortOnClose, "TCPAbortOnClose")
			assert.Positive(t, r.From(port), "RSTs from the server")
		},
	})
}

// testRST runs k in network namespaces of its own, with a plain listener,
// with linger.Wrap, and with linger.Wrap handing every lingering close to
// its epoll set by Go's own descriptor (the form for closes that queue).
func testRST(t *testing.T, k rstKind) {
	for _, v := range []struct {
		name    string
		prepare func(*linger.Listener) // nil: the plain listener
	}{{"raw", nil}, {"linger", func(*linger.Listener) {}}, {"linger/Go's descriptor", linger.HandOverGoFD}} {
		t.Run(v.name, func(t *testing.T) {
			inNetns(t, func(t *testing.T, ns *testNetns) { runRSTKind(t, ns, k, v.prepare) })
		})
	}
}

// runRSTKind runs in the namespace: k.runs connections, then the checks.
// With prepare nil the listener is the plain one; otherwise linger.Wrap's,
// prepared.
func runRSTKind(t *testing.T, ns *testNetns, k rstKind, prepare func(*linger.Listener)) {
	wrap := prepare != nil
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	port := raw.Addr().(*net.TCPAddr).Port
	ln := raw
	var wl *linger.Listener
	var wrongUnread, firstUnread atomic.Int64
	if wrap {
		wl = linger.Wrap(raw, linger.Config{OnClose: func(ci linger.CloseInfo) {
			if k.unread >= 0 && ci.Unread != k.unread && wrongUnread.Add(1) == 1 {
				firstUnread.Store(int64(ci.Unread))
			}
		}})
		prepare(wl)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), rstIOTimeout)
			defer cancel()
			wl.Shutdown(ctx)
		})
		ln = wl
	}

	stop := k.serve(t, ln)
	res := runClients(ln.Addr().String(), k.runs, k.concurrency, k.client)
	stop()
	if wrap {
		ctx, cancel := context.WithTimeout(context.Background(), rstIOTimeout)
		defer cancel()
		require.NoError(t, wl.Shutdown(ctx), "Shutdown: lingering closes did not finish")
	}
	r := ns.resets(t)
	t.Logf("%d connections: %v; RSTs from the server %d, from clients %d (%d without ACK)", k.runs, r, r.From(port), r.NotFrom(port), r.BareNotFrom(port))
	t.Logf("clients: %v", res)
	t.Logf("all counters that moved: %v", r.Moved)

	if !wrap {
		k.rawResets(t, r, port)
		if k.rawResetsClients {
			assert.Equal(t, int64(k.runs), res.resets.Load(), "control: every client should have seen the RST; %v", res)
		}
		return
	}

	assert.Zero(t, r.From(port), "RSTs sent by the linger server")
	assert.Zero(t, r.AbortOnClose, "TcpExtTCPAbortOnClose: linger closed with unread data")
	assert.Zero(t, r.AbortOnData, "TcpExtTCPAbortOnData: data reached a closed socket")
	// TcpOutRsts counts the clients' RSTs too. A client answers with one
	// when the server's TIME-WAIT socket ACKs a stale segment of a
	// connection the client has already forgotten (see netns_test.go):
	// loopback reordering, more of it the busier the CPUs, and not the
	// server's doing. Such a RST carries no ACK (resetCounts.Bare); a
	// client that aborts its own connection, because the server sent what
	// it did not read, sends RST with ACK, and none may.
	assert.Zero(t, r.NotFrom(port)-r.BareNotFrom(port), "RSTs with ACK sent by the clients: aborts (by source port: %v; without ACK: %v)", r.BySource, r.Bare)
	assert.LessOrEqual(t, r.BareNotFrom(port), k.runs/20, "RSTs without ACK sent by the clients (by source port: %v)", r.Bare)

	assert.Equal(t, int64(k.runs), res.ok.Load(), "every client should read the whole reply and EOF; %v", res)
	assert.Zero(t, res.resets.Load(), "clients saw ECONNRESET or EPIPE; %v", res)

	s := wl.Stats()
	t.Logf("stats: %+v", s)
	assert.Equal(t, int64(k.runs), s.Accepted, "accepted")
	assert.Equal(t, int64(k.runs), s.Closed(), "closes finished")
	var got int64
	for _, o := range k.outcomes {
		got += s.Outcomes[o]
	}
	assert.Equal(t, int64(k.runs), got, "closes with outcome %v; stats %+v", k.outcomes, s)
	assert.Zero(t, wrongUnread.Load(), "closes whose CloseInfo.Unread was not %d (first: %d)", k.unread, firstUnread.Load())
}

// serveEach accepts from ln until it is closed and runs handle on each
// connection in its own goroutine, then closes the connection.
func serveEach(t *testing.T, ln net.Listener, handle func(c net.Conn) error) (stop func()) {
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first firstError
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					first.set(fmt.Errorf("accept: %w", err))
					failed.Add(1)
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				err := c.SetDeadline(time.Now().Add(rstIOTimeout))
				if err == nil {
					err = handle(c)
				}
				if err != nil {
					first.set(err)
					failed.Add(1)
				}
			}()
		}
	}()
	return func() {
		ln.Close()
		wg.Wait()
		assert.Zero(t, failed.Load(), "server-side errors; first: %v", first.get())
	}
}

// clientResults counts how client connections ended.
type clientResults struct {
	ok, resets, other atomic.Int64
	firstReset        firstError
	firstOther        firstError
}

// firstError keeps the first error set, for the failure message.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (r *clientResults) String() string {
	return fmt.Sprintf("%d clean, %d reset (first: %v), %d other errors (first: %v)",
		r.ok.Load(), r.resets.Load(), r.firstReset.get(), r.other.Load(), r.firstOther.get())
}

// runClients runs client on runs connections to addr, concurrency at a
// time. Each connection is closed when its client returns.
func runClients(addr string, runs, concurrency int, client func(c *net.TCPConn) error) *clientResults {
	res := new(clientResults)
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				err := dialAndRun(addr, client)
				switch {
				case err == nil:
					res.ok.Add(1)
				case testnet.IsReset(err):
					res.firstReset.set(err)
					res.resets.Add(1)
				default:
					res.firstOther.set(err)
					res.other.Add(1)
				}
			}
		}()
	}
	for range runs {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return res
}

func dialAndRun(addr string, client func(c *net.TCPConn) error) error {
	c, err := net.DialTimeout("tcp", addr, rstIOTimeout)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(rstIOTimeout)); err != nil {
		return err
	}
	return client(c.(*net.TCPConn))
}

// expectReply reads until EOF and checks that want came before it.
func expectReply(c net.Conn, want string) error {
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read after %q: %w", got, err)
	}
	if string(got) != want {
		return fmt.Errorf("read %q, want %q then EOF", got, want)
	}
	return nil
}

var uploadRequest = fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", uploadSize)

// uploadBody is shared, read-only, by every upload client.
var uploadBody = make([]byte, uploadSize)

// uploadClient sends a 1 MiB upload while it reads the response, as HTTP
// clients do, and expects the whole 413, EOF, and its upload sent whole.
func uploadClient(c *net.TCPConn) error {
	// A small send buffer keeps the client sending when net/http closes
	// (as a slow uplink would), instead of the kernel taking the whole
	// upload at once.
	if err := c.SetWriteBuffer(64 << 10); err != nil {
		return err
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, uploadRequest)
		if err == nil {
			_, err = c.Write(uploadBody)
		}
		wrote <- err
	}()
	readErr := func() error {
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("reading the response: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("reading the response body: %w", err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(body) != uploadRejection {
			return fmt.Errorf("got %s %q, want 413 %q", resp.Status, body, uploadRejection)
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
			return fmt.Errorf("after the response: %q, %v; want EOF", rest, err)
		}
		return nil
	}()
	if readErr != nil {
		c.SetWriteDeadline(time.Unix(1, 0)) // unblock the writer
	}
	if err := <-wrote; err != nil {
		return errors.Join(readErr, fmt.Errorf("sending the upload: %w", err))
	}
	return readErr
}
