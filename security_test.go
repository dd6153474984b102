package linger_test

// Security regression tests for rescue. Each attack runs against three
// backends serving the same handlers:
//
//   - raw: net.Listen and a plain http.Server, the control. It shows what
//     net/http itself does with the bytes: the attack target is real, and
//     plain net/http never serves it.
//   - linger.Wrap: linger.Wrap(ln, Config{Rescue: HTTP1Request}) under a
//     plain http.Server.
//   - lingerhttp: lingerhttp.New(srv, Config{}) (rescue on) serving a plain
//     TCP listener.
//
// The invariant: a wrapped backend never makes net/http parse, as a
// request, bytes that net/http on the raw listener would never parse. A
// rescue that hands a connection back when net/http has decided to close
// it breaks that: the bytes left in the receive queue after net/http's
// last read (its 4 KiB bufio.Reader stops anywhere) can be made to start
// with something that looks like a request line, and are then served.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/linger-go/linger/lingerhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

const (
	// adminMarker is the body of every /admin response: a client that reads
	// it was served a request that plain net/http never parsed.
	adminMarker = "ADMIN-HANDLER-RAN"

	// httpReadBuffer is the size of net/http's per-connection
	// bufio.Reader (newBufioReader in net/http/server.go): its first read
	// takes at most this much of what a client sent in one write.
	httpReadBuffer = 4 << 10

	// maxPostHandlerRead is net/http's maxPostHandlerReadBytes: an unread
	// body larger than this is not discarded after the handler.
	maxPostHandlerRead = 256 << 10

	// clientTimeout bounds every client conversation; a healthy one
	// takes milliseconds.
	clientTimeout = 5 * time.Second

	// shutdownTimeout bounds every Shutdown; a healthy one takes
	// milliseconds, or net/http's 500 ms rstAvoidanceDelay.
	shutdownTimeout = 10 * time.Second

	adminGET = "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"

	// wsUpgrade, wsSwitching, wsClose and wsReply are a websocket-like
	// exchange without a websocket library: the upgrade request, the
	// 101 answer, a 4-byte close frame and the 4-byte reply.
	wsUpgrade   = "GET /hijack HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	wsSwitching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	wsClose     = "\x88\x02\x03\xe8"
	wsReply     = "\x88\x02\x03\xe9"
)

// backendKind names one of the three servers every attack runs against.
type backendKind string

const (
	rawHTTP    backendKind = "raw"
	wrapHTTP   backendKind = "linger.Wrap"
	lingerHTTP backendKind = "lingerhttp"
	// wrapGoFD is wrapHTTP with every lingering close handed to the epoll
	// set by Go's own descriptor, the form for closes that queue up
	// (lingerer_linux.go), which keeps the Go conn open until the linger
	// ends; FuzzDifferential compares it too.
	wrapGoFD backendKind = "linger.Wrap, Go's descriptor"
)

var allBackends = []backendKind{rawHTTP, wrapHTTP, lingerHTTP}

// call is one handler invocation.
type call struct {
	Remote string // the client's address as the handler saw it
	Method string
	Target string // the request-target, as sent
	Body   string // digest of the body read, or "unread"
}

func (c call) String() string {
	m := c.Method
	if len(m) > 12 {
		m = fmt.Sprintf("%s...(%d bytes)", m[:8], len(m))
	}
	return fmt.Sprintf("%s %s [%s]", m, c.Target, c.Body)
}

// recorder records every handler invocation of one backend.
type recorder struct {
	mu      sync.Mutex
	calls   []call
	admin   atomic.Int64   // runs of /admin
	running sync.WaitGroup // handlers in progress, hijacked ones included
}

func (r *recorder) add(c call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// mark returns a position for since.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// since returns the calls recorded after mark.
func (r *recorder) since(mark int) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls[mark:]...)
}

// take removes and returns, in order, the calls made on connections from
// remote.
func (r *recorder) take(remote string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var got []call
	kept := r.calls[:0]
	for _, c := range r.calls {
		if c.Remote == remote {
			got = append(got, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(r.calls[len(kept):])
	r.calls = kept
	return got
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d:%s", len(b), hex.EncodeToString(sum[:6]))
}

// securityHandler serves the paths the attacks use, recording each call.
//
//	/public  answers 401 without reading the body
//	/admin   the target: counts its runs and answers adminMarker
//	/echo    reads the body and echoes it
//	/close   reads the body and answers with Connection: close
//	/abort   flushes part of a response, then panics with ErrAbortHandler
//	/hijack  hijacks: 101, reads a 4-byte frame, writes 4 bytes, closes
//	other    404
func securityHandler(rec *recorder) http.Handler {
	mux := http.NewServeMux()
	note := func(r *http.Request, body string) {
		rec.add(call{Remote: r.RemoteAddr, Method: r.Method, Target: r.RequestURI, Body: body})
	}
	readBody := func(r *http.Request) ([]byte, string) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return nil, digest(b) + " then a read error"
		}
		return b, digest(b)
	}
	mux.HandleFunc("/public", func(w http.ResponseWriter, r *http.Request) {
		note(r, "unread")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "denied\n")
	})
	mux.HandleFunc("/admin", func(w http.ResponseWriter, r *http.Request) {
		note(r, "unread")
		rec.admin.Add(1)
		io.WriteString(w, adminMarker+"\n")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, d := readBody(r)
		note(r, d)
		// One Write with the length set: the framing does not depend on
		// how the body's bytes arrived.
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		_, d := readBody(r)
		note(r, d)
		w.Header().Set("Connection", "close")
		io.WriteString(w, "closing\n")
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		note(r, "unread")
		io.WriteString(w, "partial\n")
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		note(r, "unread")
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, wsSwitching); err != nil {
			return
		}
		// Read exactly the frame, as a frame parser does: what net/http
		// had buffered first, then the socket, never more.
		src := io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), conn)
		var frame [len(wsClose)]byte
		if _, err := io.ReadFull(src, frame[:]); err != nil {
			return
		}
		io.WriteString(conn, wsReply)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		note(r, "unread")
		http.NotFound(w, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.running.Add(1)
		defer rec.running.Done()
		mux.ServeHTTP(w, r)
	})
}

// backend is one server under attack.
type backend struct {
	kind      backendKind
	addr      string
	rec       *recorder
	srv       *http.Server
	ll        *linger.Listener // linger.Wrap's listener, or lingerhttp's once serving
	ls        *lingerhttp.Server
	conns     sync.Map // linger.Wrap's open connections by remote address, for CloseIdle
	serveDone chan struct{}
	stopped   atomic.Bool
}

// startBackend serves securityHandler on 127.0.0.1 with the given backend
// and stops it when the test ends, checking that Shutdown returns nil. If
// above is not nil it wraps the listener the http.Server accepts from
// (above linger for linger.Wrap); lingerhttp has no place for it.
func startBackend(t testing.TB, kind backendKind, above func(net.Listener) net.Listener) *backend {
	t.Helper()
	b := &backend{kind: kind, rec: &recorder{}, serveDone: make(chan struct{})}
	b.srv = &http.Server{Handler: securityHandler(b.rec), ErrorLog: log.New(io.Discard, "", 0)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.addr = ln.Addr().String()
	require.False(t, kind == lingerHTTP && above != nil, "lingerhttp wraps the listener itself: nothing can sit above its linger.Listener")
	if above == nil {
		above = func(l net.Listener) net.Listener { return l }
	}
	switch kind {
	case rawHTTP:
		go func() { defer close(b.serveDone); b.srv.Serve(above(ln)) }()
	case wrapHTTP, wrapGoFD:
		b.ll = linger.Wrap(ln, linger.Config{Rescue: linger.HTTP1Request})
		if kind == wrapGoFD {
			linger.HandOverGoFD(b.ll)
		}
		// As Conn.Detach's documentation asks: Listener.Shutdown then
		// does not wait for hijacked connections, as net/http does not.
		// It also says when net/http is idle, as SetIdle's documentation
		// shows, so a test may close idle connections with CloseIdle.
		b.srv.ConnState = func(c net.Conn, st http.ConnState) {
			lc := linger.ConnOf(c)
			if lc == nil {
				return
			}
			lc.SetIdle(st == http.StateNew || st == http.StateIdle)
			switch st {
			case http.StateNew:
				b.conns.Store(c.RemoteAddr().String(), lc)
			case http.StateHijacked:
				lc.Detach()
				b.conns.Delete(c.RemoteAddr().String())
			case http.StateClosed:
				b.conns.Delete(c.RemoteAddr().String())
			}
		}
		go func() { defer close(b.serveDone); b.srv.Serve(above(b.ll)) }()
	case lingerHTTP:
		b.ls = lingerhttp.New(b.srv, lingerhttp.Config{})
		go func() { defer close(b.serveDone); b.ls.Serve(ln) }()
		for i := 0; b.ls.Listener() == nil; i++ {
			require.Less(t, i, 1_000_000, "lingerhttp never started serving")
			runtime.Gosched()
		}
		b.ll = b.ls.Listener()
	}
	t.Cleanup(func() {
		if !b.stopped.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			assert.NoError(t, b.stop(t, ctx), "%s: Shutdown at test end", kind)
		}
	})
	return b
}

// shutdown is the backend's graceful shutdown, as its users call it.
func (b *backend) shutdown(ctx context.Context) error {
	switch b.kind {
	case rawHTTP:
		return b.srv.Shutdown(ctx)
	case wrapHTTP, wrapGoFD:
		if err := b.srv.Shutdown(ctx); err != nil {
			return err
		}
		return b.ll.Shutdown(ctx)
	default:
		return b.ls.Shutdown(ctx)
	}
}

// stop shuts the backend down, forces what is left closed if that failed,
// and waits for Serve and every handler to return. It returns Shutdown's
// error.
func (b *backend) stop(t testing.TB, ctx context.Context) error {
	t.Helper()
	b.stopped.Store(true)
	err := b.shutdown(ctx)
	if err != nil {
		b.srv.Close()
		if b.ll != nil {
			done, cancel := context.WithCancel(context.Background())
			cancel()
			b.ll.Shutdown(done)
		}
	}
	waitFor(t, b.serveDone, "Serve to return")
	handlers := make(chan struct{})
	go func() { b.rec.running.Wait(); close(handlers) }()
	waitFor(t, handlers, "every handler to return")
	return err
}

// stats returns the linger listener's counters, for failure messages.
func (b *backend) stats() string {
	if b.ll == nil {
		return "raw listener"
	}
	s := b.ll.Stats()
	return fmt.Sprintf("accepted %d, rescued %d, pending %d, crossed %d", s.Accepted, s.Outcomes[linger.Rescued], s.Outcomes[linger.Pending], s.Outcomes[linger.Crossed])
}

// waitFor waits for ch to be closed, failing the test after shutdownTimeout.
func waitFor(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	timer := time.NewTimer(shutdownTimeout)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		t.Errorf("gave up waiting for %s after %v", what, shutdownTimeout)
	}
}

// checkLeaks makes the test fail if it leaves goroutines or (on Linux)
// descriptors behind. Call it first, so its check runs after every other
// cleanup.
func checkLeaks(t *testing.T) {
	// The runtime's poller opens its descriptors on first use and keeps
	// them: warm it up before counting.
	warm, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	warm.Close()
	fds, countable := openFDs()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore)
		if countable {
			after, _ := openFDs()
			assert.Equal(t, fds, after, "open descriptors before and after the test")
		}
	})
}

// openFDs counts this process's open descriptors, where /proc tells.
func openFDs() (int, bool) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, false
	}
	return len(names), true // includes f itself, before and after alike
}

// exchange is what a client saw on one connection.
type exchange struct {
	got      []byte // every byte read
	statuses []int  // status codes of the responses parsed from got
	end      error  // what ended the connection: nil for a clean EOF
}

func (e exchange) sawAdmin() bool { return bytes.Contains(e.got, []byte(adminMarker)) }

func (e exchange) timedOut() bool { return errors.Is(e.end, os.ErrDeadlineExceeded) }

func (e exchange) String() string {
	end := "EOF"
	if e.end != nil {
		end = e.end.Error()
	}
	return fmt.Sprintf("statuses %v, %d bytes, ended by %s", e.statuses, len(e.got), end)
}

// client is one connection speaking HTTP/1.1 by hand.
type client struct {
	*net.TCPConn
	got        bytes.Buffer
	br         *bufio.Reader
	wrote      chan error // the write in progress, if any
	halfClosed bool
}

func dialClient(t testing.TB, addr string) *client {
	t.Helper()
	c, err := dial(addr)
	require.NoError(t, err)
	return c
}

// dial connects to addr; the connection gives up after clientTimeout.
func dial(addr string) (*client, error) {
	nc, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return nil, err
	}
	c := &client{TCPConn: nc.(*net.TCPConn)}
	c.br = bufio.NewReader(io.TeeReader(c.TCPConn, &c.got))
	return c, c.SetDeadline(time.Now().Add(clientTimeout))
}

// send writes p from its own goroutine, after the previous send, so a
// server that stops reading cannot stop the client from reading.
func (c *client) send(p string) {
	prev := c.wrote
	c.wrote = make(chan error, 1)
	go func(done chan<- error) {
		if prev != nil {
			if err := <-prev; err != nil {
				done <- err
				return
			}
		}
		_, err := io.WriteString(c.TCPConn, p)
		done <- err
	}(c.wrote)
}

// sent waits for the sends to finish.
func (c *client) sent() error {
	if c.wrote == nil {
		return nil
	}
	err := <-c.wrote
	c.wrote = nil
	return err
}

// halfClose sends our FIN once everything was sent.
func (c *client) halfClose() {
	if c.halfClosed {
		return
	}
	c.halfClosed = true
	c.sent()
	c.CloseWrite()
}

// finish reads responses until the connection ends. After the first
// final response it half-closes (the attacks send everything up front),
// so a server that keeps the connection open, or a response delimited by
// the close, ends. Then it closes the connection, which ends a send still
// in progress.
func (c *client) finish() exchange {
	defer func() {
		c.Close()
		c.sent()
	}()
	var ex exchange
	for {
		if _, err := c.br.Peek(1); err != nil {
			ex.end = err
			break
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			ex.end = err
			break
		}
		ex.statuses = append(ex.statuses, resp.StatusCode)
		if resp.StatusCode >= 200 {
			// Everything was sent: say so, so that a server that keeps
			// the connection open, or a body delimited by the close,
			// ends.
			c.halfClose()
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			ex.end = err
			break
		}
	}
	if ex.end != io.EOF && !testnet.IsReset(ex.end) && !errors.Is(ex.end, os.ErrDeadlineExceeded) {
		// A response that did not parse (cut short, or followed by
		// garbage): read what is left.
		c.halfClose()
		_, ex.end = io.Copy(io.Discard, c.br)
	}
	if ex.end == io.EOF {
		ex.end = nil
	}
	ex.got = c.got.Bytes()
	return ex
}

// converse sends payload on a new connection and reads to the end.
func converse(t testing.TB, addr, payload string) exchange {
	t.Helper()
	c := dialClient(t, addr)
	c.send(payload)
	return c.finish()
}

// smuggle returns prefix followed by a run of X, then " /x HTTP/1.1" and
// the smuggled request. The run is long enough that net/http's first
// read of a single write (httpReadBuffer) ends inside it, and short
// enough that a rescue guard peeking 8 KiB from there sees the whole
// "request line" XXX…X /x HTTP/1.1: wherever net/http stops reading, the
// bytes left in the receive queue look like the start of a request.
func smuggle(prefix, smuggled string) string {
	n := max(0, httpReadBuffer+64-len(prefix)) + 2048
	return prefix + strings.Repeat("X", n) + " /x HTTP/1.1\r\nHost: a\r\n\r\n" + smuggled
}

// unexpected returns the calls whose target is not one of want.
func unexpected(calls []call, want ...string) []call {
	var bad []call
	for _, c := range calls {
		ok := false
		for _, w := range want {
			ok = ok || c.Target == w
		}
		if !ok {
			bad = append(bad, c)
		}
	}
	return bad
}

// assertNothingSmuggled checks a backend after an attack: the target
// never ran, no client read its answer, and every call was one of want.
func assertNothingSmuggled(t *testing.T, b *backend, adminBefore int64, mark int, exs []exchange, want ...string) {
	t.Helper()
	admin := b.rec.admin.Load() - adminBefore
	saw, hung := 0, 0
	for _, ex := range exs {
		if ex.sawAdmin() {
			saw++
		}
		if ex.timedOut() {
			hung++
		}
	}
	bad := unexpected(b.rec.since(mark), want...)
	assert.Zero(t, admin, "%s: /admin ran %d times in %d attempts (%s)", b.kind, admin, len(exs), b.stats())
	assert.Zero(t, saw, "%s: %d of %d clients read an /admin response", b.kind, saw, len(exs))
	assert.Zero(t, hung, "%s: %d of %d clients waited %v for the connection to end", b.kind, hung, len(exs), clientTimeout)
	if len(bad) > 3 {
		bad = bad[:3]
	}
	assert.Empty(t, bad, "%s: handler calls plain net/http never makes (first 3)", b.kind)
}

// The attack of class 1: a handler answers without reading the body, and
// net/http closes with the body unread. The body is a run of X, then
// " /x HTTP/1.1" and a smuggled DELETE /admin: the bytes net/http left
// in the receive queue look like a request whose method is a run of X.
func TestSecurityUnreadBodySmuggling(t *testing.T) {
	checkLeaks(t)
	const smuggled = "DELETE /admin HTTP/1.1\r\nHost: a\r\n\r\n"
	type variant struct {
		name     string
		payload  string
		attempts int
	}
	var variants []variant
	for _, v := range []struct{ name, head string }{
		{"1.0", "POST /public HTTP/1.0\r\nHost: a\r\nContent-Length: %d\r\n\r\n"},
		{"1.1", "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"},
		{"1.1 Connection: close", "POST /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"},
		{"1.1 Expect: 100-continue", "POST /public HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"},
	} {
		// A body net/http could discard, sent whole.
		short := smuggle(fmt.Sprintf(v.head, 1000), smuggled)
		body := short[len(fmt.Sprintf(v.head, 1000)):]
		variants = append(variants, variant{v.name + ", short body", fmt.Sprintf(v.head, len(body)) + body, 20})
		// A body past maxPostHandlerReadBytes, of which only the start is
		// sent: the rest would follow once the client sees no answer.
		declared := fmt.Sprintf(v.head, maxPostHandlerRead+44<<10)
		variants = append(variants, variant{v.name + ", 300 KiB declared", smuggle(declared, smuggled), 20})
		// A body past maxPostHandlerReadBytes, sent whole.
		tail := " /x HTTP/1.1\r\nHost: a\r\n\r\n" + smuggled
		big := strings.Repeat("X", maxPostHandlerRead+44<<10-len(tail)) + tail
		variants = append(variants, variant{v.name + ", 300 KiB sent", fmt.Sprintf(v.head, len(big)) + big, 5})
	}
	// A chunked body whose first chunk size is invalid: net/http's
	// post-handler discard fails on it and closes.
	variants = append(variants, variant{"1.1 chunked, bad chunk size",
		smuggle("POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", smuggled), 20})

	for _, kind := range allBackends {
		t.Run(string(kind), func(t *testing.T) {
			b := startBackend(t, kind, nil)
			for _, v := range variants {
				t.Run(v.name, func(t *testing.T) {
					admin, mark := b.rec.admin.Load(), b.rec.mark()
					var exs []exchange
					deadline := time.Now().Add(3 * time.Second)
					for i := 0; i < v.attempts && time.Now().Before(deadline); i++ {
						ex := converse(t, b.addr, v.payload)
						exs = append(exs, ex)
						if len(ex.statuses) > 0 {
							assert.Equal(t, http.StatusUnauthorized, ex.statuses[0], "attempt %d: %v", i, ex)
						}
					}
					assertNothingSmuggled(t, b, admin, mark, exs, "/public")
				})
			}
		})
	}
}

// The attack of class 2: a request net/http rejects and closes on, then,
// in the same write, a smuggled request: either right behind it (net/http's
// first read takes both) or behind a run of X that makes the bytes left
// in the receive queue look like a request line.
func TestSecurityRejectedRequestSmuggling(t *testing.T) {
	checkLeaks(t)
	rejections := []struct {
		name    string
		request string
		status  int
	}{
		{"control byte in header value", "GET /public HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400},
		{"invalid header name", "GET /public HTTP/1.1\r\nHost: a\r\nX(: b\r\n\r\n", 400},
		{"missing Host", "GET /public HTTP/1.1\r\n\r\n", 400},
		{"two Host headers", "GET /public HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"malformed Host", "GET /public HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"invalid method", "G(T /public HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"malformed request line", "GET /public\r\nHost: a\r\n\r\n", 400},
		{"malformed version", "GET /public HTTP/1.x\r\nHost: a\r\n\r\n", 400},
		{"invalid request-target", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"conflicting Content-Length", "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", 400},
		{"negative Content-Length", "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
		{"space before colon", "GET /public HTTP/1.1\r\nHost : a\r\n\r\n", 400},
		{"leading whitespace", "GET /public HTTP/1.1\r\n Host: a\r\n\r\n", 400},
		{"bare CR", "GET /public HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400},
		{"Content-Length overflow", "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"gzip, chunked", "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"unknown coding", "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x\r\n\r\n", 501},
		{"two Transfer-Encodings", "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"version 2.0", "GET /public HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"version 0.9", "GET /public HTTP/0.9\r\nHost: a\r\n\r\n", 505},
		{"unknown Expect", "GET /public HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n", 417},
	}
	for _, kind := range allBackends {
		t.Run(string(kind), func(t *testing.T) {
			b := startBackend(t, kind, nil)
			for _, r := range rejections {
				t.Run(r.name, func(t *testing.T) {
					admin, mark := b.rec.admin.Load(), b.rec.mark()
					var exs []exchange
					deadline := time.Now().Add(3 * time.Second)
					for i := 0; i < 20 && time.Now().Before(deadline); i++ {
						payload := r.request + adminGET
						if i%2 == 1 {
							payload = smuggle(r.request, adminGET)
						}
						ex := converse(t, b.addr, payload)
						exs = append(exs, ex)
						if assert.NotEmpty(t, ex.statuses, "attempt %d: %v", i, ex) {
							assert.Equal(t, r.status, ex.statuses[0], "attempt %d: %v", i, ex)
						}
					}
					assertNothingSmuggled(t, b, admin, mark, exs, "/public")
				})
			}
		})
	}
}

// The attack of class 3: a hijacked, websocket-like connection. The
// handler reads exactly its 4-byte close frame, answers and closes; the
// client sent a request right behind the frame.
func TestSecurityHijackedConnectionSmuggling(t *testing.T) {
	checkLeaks(t)
	for _, kind := range allBackends {
		t.Run(string(kind), func(t *testing.T) {
			b := startBackend(t, kind, nil)
			for _, shape := range []string{"frame after 101", "all in one write"} {
				t.Run(shape, func(t *testing.T) {
					admin, mark := b.rec.admin.Load(), b.rec.mark()
					var exs []exchange
					deadline := time.Now().Add(3 * time.Second)
					for i := 0; i < 20 && time.Now().Before(deadline); i++ {
						exs = append(exs, websocketAttack(t, b.addr, "", shape == "all in one write"))
					}
					assertNothingSmuggled(t, b, admin, mark, exs, "/hijack")
				})
			}
		})
	}
}

// websocketAttack upgrades, then sends the close frame and a request for
// /admin in one write, reads the reply and then to the end. With oneWrite
// the upgrade request goes in the same write too.
func websocketAttack(t testing.TB, addr, preamble string, oneWrite bool) exchange {
	t.Helper()
	c := dialClient(t, addr)
	if oneWrite {
		c.send(preamble + wsUpgrade + wsClose + adminGET)
	} else {
		c.send(preamble + wsUpgrade)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		ex := c.finish()
		t.Errorf("no 101 (%v): %v", err, ex)
		return ex
	}
	if !oneWrite {
		c.send(wsClose + adminGET)
	}
	// The raw control may reset here: its close with the request unread
	// sends a RST (our loopback delivers the reply before it, though).
	var reply [len(wsReply)]byte
	io.ReadFull(c.br, reply[:])
	return c.finish()
}

// The attack of class 4: a response that ends the connection
// (Connection: close, or a handler aborted with ErrAbortHandler) with a
// second request pipelined behind it in the same write. Plain net/http
// answers only the first. The first request is padded so that its end,
// and so the start of what is left unread, falls around the 4 KiB of
// net/http's first read: the queue then starts with the whole second
// request line or its tail ("OST /admin HTTP/1.1").
func TestSecurityPipelinedAfterCloseResponse(t *testing.T) {
	requireLoopbackKeepsDataBeforeRST(t)
	checkLeaks(t)
	backends := map[backendKind]*backend{}
	for _, kind := range allBackends {
		backends[kind] = startBackend(t, kind, nil)
	}
	const second = "POST /admin HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
	for _, path := range []string{"/close", "/abort"} {
		for first := httpReadBuffer - 6; first <= httpReadBuffer+4; first++ {
			head := "GET " + path + " HTTP/1.1\r\nHost: a\r\nX-Pad: "
			req := head + strings.Repeat("p", first-len(head)-4) + "\r\n\r\n"
			require.Len(t, req, first)
			t.Run(fmt.Sprintf("%s/%d", path[1:], first), func(t *testing.T) {
				raw := normalizeDate(converse(t, backends[rawHTTP].addr, req+second).got)
				again := normalizeDate(converse(t, backends[rawHTTP].addr, req+second).got)
				require.Equal(t, string(raw), string(again), "the control is deterministic")
				require.NotContains(t, string(raw), adminMarker, "the control never answers the second request")
				for _, kind := range []backendKind{wrapHTTP, lingerHTTP} {
					b := backends[kind]
					admin, mark := b.rec.admin.Load(), b.rec.mark()
					var exs []exchange
					for range 3 {
						ex := converse(t, b.addr, req+second)
						exs = append(exs, ex)
						assert.Equal(t, string(raw), string(normalizeDate(ex.got)), "%s: what the client read differs from the raw control", kind)
					}
					assertNothingSmuggled(t, b, admin, mark, exs, path)
					for _, c := range b.rec.since(mark) {
						assert.Equal(t, "GET", c.Method, "%s: a request plain net/http never parsed, such as one cut from the middle of another (%v)", kind, c)
					}
				}
			})
		}
	}
}

// requireLoopbackKeepsDataBeforeRST skips comparisons of what a client
// read from the raw control, which may close with a RST: on Linux the
// response it wrote before the RST stays readable on loopback (checked by
// FuzzDifferential's second control on every input); elsewhere it is not
// known to.
func requireLoopbackKeepsDataBeforeRST(t testing.TB) {
	if runtime.GOOS != "linux" {
		t.Skip("compares bytes read before a RST: relies on Linux loopback keeping them readable")
	}
}

var dateLine = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r$`)

// normalizeDate replaces the value of every Date header line.
func normalizeDate(b []byte) []byte {
	return keepAliveLine.ReplaceAll(dateLine.ReplaceAll(b, []byte("Date: *\r")), nil)
}

// keepAliveLine is lingerhttp's Keep-Alive header, which tells the client
// the idle bound it keeps; plain net/http sends none. It is the one header
// the comparisons leave out.
var keepAliveLine = regexp.MustCompile(`Keep-Alive: timeout=[0-9]+\r\n`)

// Class 5: connections net/http closes while its background read (started
// while a handler runs, once the body is consumed) may be in flight, with
// the client pipelining more. Whatever linger does with such a close, no
// connection may outlive it: Shutdown returns and every descriptor is
// closed.
func TestSecurityNoOrphanedConnections(t *testing.T) {
	checkLeaks(t)
	const conns, concurrency = 200, 20
	for _, kind := range allBackends {
		t.Run(string(kind), func(t *testing.T) {
			fds, countable := openFDs()
			b := startBackend(t, kind, nil)
			jobs := make(chan int)
			var wg sync.WaitGroup
			for range concurrency {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						c, err := dial(b.addr)
						if !assert.NoError(t, err) {
							continue
						}
						first := "GET /close HTTP/1.1\r\nHost: a\r\n\r\n"
						if i%4 == 3 {
							first = "POST /close HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
						}
						more := strings.Repeat(adminGET, 1+i%3)
						switch i % 3 {
						case 0: // pipelined in the same write
							c.send(first + more)
						case 1: // right behind, in a second write
							c.send(first)
							c.send(more)
						case 2: // once the response has started
							c.send(first)
							c.br.Peek(1)
							c.send(more)
						}
						c.finish()
					}
				}()
			}
			deadline := time.Now().Add(5 * time.Second)
			for i := 0; i < conns && time.Now().Before(deadline); i++ {
				jobs <- i
			}
			close(jobs)
			wg.Wait()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			assert.NoError(t, b.stop(t, ctx), "Shutdown after %d connections (%s)", conns, b.stats())
			t.Logf("/admin ran %d times (%s)", b.rec.admin.Load(), b.stats())
			if countable {
				after, _ := openFDs()
				assert.Equal(t, fds, after, "open descriptors before and after %d connections", conns)
			}
		})
	}
}

// proxyListener is a listener wrapper of the kind that sits above linger:
// it counts the connections it accepts, and reads a PROXY protocol v1
// preamble ("PROXY TCP4 src dst sport dport\r\n") from each, taking the
// remote address from it. Like go-proxyproto's default policy it is
// lenient: a connection without a preamble is passed through with its
// real address.
type proxyListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &proxyConn{Conn: c}, nil
}

type proxyConn struct {
	net.Conn
	once    sync.Once
	claimed net.Addr
	pending []byte // bytes read looking for a preamble that was not there
}

// header reads the preamble a byte at a time, so it never takes more
// than the preamble from the connection.
func (c *proxyConn) header() {
	c.once.Do(func() {
		c.Conn.SetReadDeadline(time.Now().Add(clientTimeout))
		defer c.Conn.SetReadDeadline(time.Time{})
		var line []byte
		var b [1]byte
		for len(line) < 108 { // the longest v1 header
			if _, err := c.Conn.Read(b[:]); err != nil {
				break
			}
			line = append(line, b[0])
			if !bytes.HasPrefix([]byte("PROXY "), line) && !bytes.HasPrefix(line, []byte("PROXY ")) {
				break // no preamble
			}
			if bytes.HasSuffix(line, []byte("\r\n")) {
				f := strings.Fields(string(line))
				if len(f) == 6 {
					if port, err := strconv.Atoi(f[4]); err == nil {
						c.claimed = &net.TCPAddr{IP: net.ParseIP(f[2]), Port: port}
						return
					}
				}
				break
			}
		}
		c.pending = line
	})
}

func (c *proxyConn) RemoteAddr() net.Addr {
	c.header()
	if c.claimed != nil {
		return c.claimed
	}
	return c.Conn.RemoteAddr()
}

func (c *proxyConn) Read(b []byte) (int, error) {
	c.header()
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite passes the half-close through, as a careful wrapper does, so
// net/http's closeWriteAndWait still reaches the socket.
func (c *proxyConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Class 6: a listener wrapper above linger must see each TCP connection
// once: a connection handed back through Accept comes out of the wrapper
// again, mid-stream, and is read for a preamble that is not there.
func TestSecurityWrapperAboveLingerSeesEachConnectionOnce(t *testing.T) {
	checkLeaks(t)
	for _, kind := range allBackends {
		t.Run(string(kind), func(t *testing.T) {
			if kind == lingerHTTP {
				t.Skip("lingerhttp wraps the listener Serve is given: no wrapper can sit above its linger.Listener")
			}
			var pl *proxyListener
			b := startBackend(t, kind, func(ln net.Listener) net.Listener {
				pl = &proxyListener{Listener: ln}
				return pl
			})
			admin, mark := b.rec.admin.Load(), b.rec.mark()
			claims := map[string]bool{}
			var exs []exchange
			dialed := 0
			for i := range 20 {
				claim := fmt.Sprintf("192.0.2.7:%d", 10000+i)
				claims[claim] = true
				preamble := fmt.Sprintf("PROXY TCP4 192.0.2.7 127.0.0.1 %d 80\r\n", 10000+i)
				dialed++
				if i%2 == 0 {
					exs = append(exs, converse(t, b.addr, preamble+smuggle("POST /public HTTP/1.0\r\nHost: a\r\nContent-Length: 7000\r\n\r\n", adminGET)))
				} else {
					exs = append(exs, websocketAttack(t, b.addr, preamble, false))
				}
			}
			// Count once everything is shut down: a connection handed
			// back may still be on its way out of Accept.
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			assert.NoError(t, b.stop(t, ctx))
			calls := b.rec.since(mark)
			assert.EqualValues(t, dialed, pl.accepted.Load(), "the wrapper accepted each TCP connection once (%s)", b.stats())
			var wrongPeer []call
			for _, c := range calls {
				if !claims[c.Remote] {
					wrongPeer = append(wrongPeer, c)
				}
			}
			assert.Empty(t, wrongPeer, "requests served without the preamble their connection carried")
			assertNothingSmuggled(t, b, admin, mark, exs, "/public", "/hijack")
		})
	}
}

// Class 7: Shutdown (lingerhttp's, and linger's with the hijacked
// connection detached) must return while a hijacked connection is
// still open, as http.Server.Shutdown does ("Shutdown does not attempt to
// close nor wait for hijacked connections such as WebSockets"): a
// websocket client must not be able to hold a deploy forever.
func TestSecurityShutdownWithHijackedConnectionOpen(t *testing.T) {
	checkLeaks(t)
	for _, kind := range allBackends {
		t.Run(string(kind), func(t *testing.T) {
			b := startBackend(t, kind, nil)
			c := dialClient(t, b.addr)
			c.send(wsUpgrade)
			resp, err := http.ReadResponse(c.br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

			b.stopped.Store(true) // this test shuts it down
			shut := make(chan error, 1)
			go func() { shut <- b.shutdown(context.Background()) }()
			// Without a hijacked connection this Shutdown takes
			// milliseconds: there is no drain delay and nothing idle.
			const bound = 3 * time.Second
			timer := time.NewTimer(bound)
			defer timer.Stop()
			returned := false
			select {
			case err := <-shut:
				returned = true
				assert.NoError(t, err, "Shutdown")
			case <-timer.C:
				t.Errorf("%s: Shutdown(context.Background()) did not return within %v while a hijacked connection was open (%s)", kind, bound, b.stats())
			}

			// The websocket ends; then everything must wind down.
			require.NoError(t, c.SetDeadline(time.Now().Add(clientTimeout)))
			c.send(wsClose)
			var reply [len(wsReply)]byte
			_, err = io.ReadFull(c.br, reply[:])
			assert.NoError(t, err, "the hijacked connection still works after Shutdown")
			c.finish()
			if !returned {
				select {
				case err := <-shut:
					assert.NoError(t, err, "Shutdown, once the hijacked connection closed")
				case <-time.After(shutdownTimeout):
					t.Fatalf("Shutdown never returned, even after the hijacked connection closed")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			b.stop(t, ctx) // waits for Serve and the handler
		})
	}
}
