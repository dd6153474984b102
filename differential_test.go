package linger_test

// FuzzDifferential sends one byte stream to the same handlers served five
// ways and requires the same handler calls and the same response bytes
// from each: two raw controls (net.Listen and a plain http.Server), then
// linger.Wrap with Rescue, then lingerhttp with its zero Config, then
// linger.Wrap with Rescue whose lingering closes keep Go's conn open until
// they end (on Linux the form for closes that queue up). linger
// may change how a connection ends, a FIN instead of a RST, but never
// what net/http parses from it or what the client reads.
//
// What is compared, and why it is deterministic on loopback:
//
//   - Handler calls (method, request-target, body digest), in order, for
//     the client's connection: handlers record r.RemoteAddr, which is the
//     client's address on every backend, on a connection handed back
//     through Accept too. Every call is recorded before its connection
//     can end, so once the client has read to the end they are all there.
//   - Every byte the client read, with Date header values blanked. The
//     client writes the whole input in one write (at most
//     maxDifferentialInput, well inside the socket buffers, so the write
//     never waits for the server), half-closes, and reads until the
//     connection ends. A server that closes with bytes unread sends a RST
//     (the raw controls do, linger does not), but on loopback the
//     response is in the client's receive queue before the RST arrives
//     and the client still reads all of it, then ECONNRESET: the bytes
//     are the same, only the ending differs, and the ending is not
//     compared.
//   - Handlers write their responses in one Write with the length set
//     (/echo), so the framing does not depend on how the body arrived.
//
// The second raw control checks that claim on every input: raw against
// raw must always agree.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	// maxDifferentialInput bounds an input: larger ones are skipped.
	maxDifferentialInput = 32 << 10
	// differentialTimeout bounds one connection; a healthy one ends in
	// milliseconds, once the server has read the client's FIN.
	differentialTimeout = 2 * time.Second
)

// diffOutcome is what one backend did with one input.
type diffOutcome struct {
	calls []call // Remote cleared
	got   string // what the client read, Date values blanked
	end   string // how the connection ended: not compared
}

func FuzzDifferential(f *testing.F) {
	requireLoopbackKeepsDataBeforeRST(f)
	for _, s := range differentialSeeds() {
		f.Add([]byte(s))
	}
	backends := []*backend{
		startBackend(f, rawHTTP, nil),
		startBackend(f, rawHTTP, nil),
		startBackend(f, wrapHTTP, nil),
		startBackend(f, lingerHTTP, nil),
		startBackend(f, wrapGoFD, nil),
	}
	names := []string{"raw", "raw (second control)", string(wrapHTTP), string(lingerHTTP), string(wrapGoFD)}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > maxDifferentialInput {
			t.Skipf("input of %d bytes: larger than %d", len(in), maxDifferentialInput)
		}
		outs := make([]diffOutcome, len(backends))
		errs := make([]error, len(backends))
		var wg sync.WaitGroup
		for i, b := range backends {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = runDifferential(b, in)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", names[i], err)
			}
		}
		want := outs[0]
		for i, got := range outs[1:] {
			name := names[i+1]
			assert.Equal(t, callStrings(want.calls), callStrings(got.calls),
				"%s: handler calls differ from the raw control's (input %q)", name, clip(in))
			assert.Equal(t, want.got, got.got,
				"%s: the client read other bytes than from the raw control (raw ended by %s, %s by %s; input %q)", name, want.end, name, got.end, clip(in))
		}
	})
}

// runDifferential sends in to b on a new connection, half-closes, reads
// to the end and collects the calls made for that connection.
func runDifferential(b *backend, in []byte) (diffOutcome, error) {
	var out diffOutcome
	nc, err := net.DialTimeout("tcp", b.addr, differentialTimeout)
	if err != nil {
		return out, err
	}
	c := nc.(*net.TCPConn)
	// The client closes first, so each connection leaves a TIME_WAIT
	// here (an abortive close would not help: the server's FIN has
	// already moved the socket there). Fuzzing makes thousands a second;
	// Linux reuses loopback TIME_WAIT ports (tcp_tw_reuse, 2 by default).
	defer c.Close()
	local := c.LocalAddr().String()
	defer b.rec.take(local) // whatever happens, leave nothing for a later connection
	if err := c.SetDeadline(time.Now().Add(differentialTimeout)); err != nil {
		return out, err
	}
	// A server that closes early makes the write fail (EPIPE, or
	// ECONNRESET): what it answered before is still read below.
	c.Write(in)
	c.CloseWrite()
	got, err := io.ReadAll(c)
	switch {
	case err == nil:
		out.end = "EOF"
	case testnet.IsReset(err):
		out.end = "reset"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return out, fmt.Errorf("the connection did not end within %v; read %q", differentialTimeout, clip(got))
	default:
		out.end = err.Error()
	}
	out.got = string(normalizeDate(got))
	for _, cl := range b.rec.take(local) {
		cl.Remote = ""
		out.calls = append(out.calls, cl)
	}
	return out, nil
}

func callStrings(calls []call) []string {
	s := make([]string, len(calls))
	for i, c := range calls {
		s[i] = c.String()
	}
	return s
}

// clip shortens b for a failure message.
func clip(b []byte) string {
	const n = 300
	if len(b) <= n {
		return string(b)
	}
	return fmt.Sprintf("%s...(%d bytes)...%s", b[:n/2], len(b), b[len(b)-n/2:])
}

// differentialSeeds are valid, malformed and hostile byte streams.
func differentialSeeds() []string {
	const host = "Host: a\r\n"
	seeds := []string{
		"",
		// Valid, and pipelined.
		"GET /echo HTTP/1.1\r\n" + host + "\r\n",
		"GET /echo HTTP/1.1\r\n" + host + "\r\nPOST /echo HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" + adminGET,
		"GET /echo HTTP/1.0\r\n\r\nGET /admin HTTP/1.0\r\n\r\n",
		"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /admin HTTP/1.0\r\n\r\n",
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" + adminGET,
		"POST /public HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" + adminGET,
		"GET /close HTTP/1.1\r\n" + host + "\r\n" + adminGET,
		"GET /abort HTTP/1.1\r\n" + host + "\r\n" + adminGET,
		"GET /nowhere HTTP/1.1\r\n" + host + "\r\n" + adminGET,
		wsUpgrade + wsClose + adminGET,
		// Smuggling shapes.
		// CL.TE, then TE.CL.
		"POST /echo HTTP/1.1\r\n" + host + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\nGPOST /admin HTTP/1.1\r\n" + host + "Content-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Content-Length: 5, 5\r\n\r\nhello" + adminGET,
		"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1;ext=x\r\na\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nhello\r\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n" + adminGET,
		"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: trailer\r\n\r\n" + adminGET,
		// Bare LF, obs-fold, oversized headers, a control byte.
		"GET /echo HTTP/1.1\nHost: a\n\nGET /admin HTTP/1.1\nHost: a\n\n",
		"GET /echo HTTP/1.1\r\n" + host + "X: a\r\n b\r\n\r\n" + adminGET,
		"GET /echo HTTP/1.1\r\n" + host + "X: " + strings.Repeat("a", 6000) + "\r\n\r\n" + adminGET,
		"GET /echo HTTP/1.1\r\n" + host + strings.Repeat("X-Many: a\r\n", 700) + "\r\n" + adminGET,
		"GET /echo HTTP/1.1\r\n" + host + "X: a\x01b\r\n\r\n" + adminGET,
		// Not HTTP/1.
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 32) + "\x00\x00\x04\x13\x01\x13\x02\x01\x00\x00\x74",
	}
	// The attacks of security_test.go that fit an input.
	const smuggled = "DELETE /admin HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, head := range []string{
		"POST /public HTTP/1.0\r\nHost: a\r\nContent-Length: %d\r\n\r\n",
		"POST /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
		"POST /public HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n",
	} {
		seeds = append(seeds, smuggle(fmt.Sprintf(head, 307200), smuggled))
	}
	seeds = append(seeds,
		smuggle("POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", smuggled),
		smuggle("GET /public HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", adminGET),
		smuggle("POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", adminGET),
		smuggle("GET /public HTTP/2.0\r\nHost: a\r\n\r\n", adminGET),
		smuggle("GET /public HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n", adminGET),
	)
	// A hijacked connection whose frame ends at net/http's first read, so
	// the request behind it is left in the receive queue.
	upgrade := "GET /hijack HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Pad: "
	upgrade += strings.Repeat("p", httpReadBuffer-len(upgrade)-4-len(wsClose)) + "\r\n\r\n"
	seeds = append(seeds, upgrade+wsClose+adminGET)
	// A response that ends the connection, with a request pipelined
	// behind it around net/http's first read.
	for _, path := range []string{"/close", "/abort"} {
		for first := httpReadBuffer - 3; first <= httpReadBuffer; first++ {
			head := "GET " + path + " HTTP/1.1\r\nHost: a\r\nX-Pad: "
			seeds = append(seeds, head+strings.Repeat("p", first-len(head)-4)+"\r\n\r\n"+
				"POST /admin HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
		}
	}
	return seeds
}

// The rescue path against hostile input: for every differential seed,
// CloseIdle fires the instant the bytes are queued on a fresh connection
// whose first Read net/http is waiting in (with one P, that goroutine
// cannot run in between). Whatever CloseIdle decides, the server must do
// what plain net/http does with the same bytes (a rescue: the same calls
// and the same answer, as if the close had come later) or nothing at all
// (a close: no call, no answer).
func TestCloseIdleOnHostileInput(t *testing.T) {
	requireRescue(t)
	requireLoopbackKeepsDataBeforeRST(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	raw := startBackend(t, rawHTTP, nil)
	wrap := startBackend(t, wrapHTTP, nil)
	rescued, closed := 0, 0
	for _, seed := range differentialSeeds() {
		want, err := runDifferential(raw, []byte(seed))
		require.NoError(t, err)

		nc, err := net.DialTimeout("tcp", wrap.addr, differentialTimeout)
		require.NoError(t, err)
		c := nc.(*net.TCPConn)
		local := c.LocalAddr().String()
		var lc *linger.Conn
		for i := 0; lc == nil; i++ {
			require.Less(t, i, 1_000_000, "the connection never reached net/http")
			if v, ok := wrap.conns.Load(local); ok {
				lc = v.(*linger.Conn)
			}
			runtime.Gosched()
		}
		waitParked(t, "linger.(*Conn).Read")
		before := wrap.ll.Stats().Outcomes[linger.Rescued]
		c.Write([]byte(seed))
		took := lc.CloseIdle()
		wasRescued := wrap.ll.Stats().Outcomes[linger.Rescued] > before
		require.NoError(t, c.SetDeadline(time.Now().Add(differentialTimeout)))
		c.CloseWrite()
		got, _ := io.ReadAll(c)
		c.Close()
		var calls []call
		for _, cl := range wrap.rec.take(local) {
			cl.Remote = ""
			calls = append(calls, cl)
		}
		if took && !wasRescued && (len(calls) == 0 || len(got) == 0) {
			// A close: nothing served, nothing answered. (If net/http's
			// Read took the bytes while CloseIdle decided, and net/http
			// answered and closed before the hand-back, the close comes
			// after a served request: then the comparison below holds.)
			closed++
			assert.Empty(t, callStrings(calls), "closed, yet served: %q", clip([]byte(seed)))
			assert.Empty(t, string(got), "closed, yet answered: %q", clip([]byte(seed)))
			continue
		}
		if wasRescued {
			rescued++
		}
		assert.Equal(t, callStrings(want.calls), callStrings(calls), "handler calls differ from plain net/http's (input %q)", clip([]byte(seed)))
		assert.Equal(t, want.got, string(normalizeDate(got)), "the answer differs from plain net/http's (input %q)", clip([]byte(seed)))
	}
	t.Logf("%d seeds: %d rescued, %d closed, the rest read before the close", len(differentialSeeds()), rescued, closed)
	assert.Positive(t, rescued, "some seed must be rescued, or this test checks nothing")
	assert.Positive(t, closed, "some seed must fail the guard and be closed")
}
