package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"

	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linger-go/linger/internal/testnet"
	"github.com/linger-go/linger/lingerhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// probeRun runs the command with args and the URL last, and returns its
// exit status, stdout and stderr.
func probeRun(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, append(args, url), &out, &errb)
	return code, out.String(), errb.String()
}

// probeJSON runs the command with -json and decodes its report.
func probeJSON(t *testing.T, url string, args ...string) (int, report) {
	t.Helper()
	code, out, errs := probeRun(t, url, append([]string{"-json"}, args...)...)
	var rep report
	require.NoError(t, json.Unmarshal([]byte(out), &rep), "stdout %q, stderr %q", out, errs)
	return code, rep
}

// goServer serves h (or a "hello" handler) on 127.0.0.1 with srv's settings
// until the test ends, and returns its URL.
func goServer(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if srv.Handler == nil {
		srv.Handler = hello
	}
	conns := trackConns(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		conns.Wait()
	})
	return "http://" + ln.Addr().String() + "/"
}

// trackConns makes srv count its connections (keeping srv's own
// ConnState), so that a test can wait for their goroutines: net/http's
// Close does not, and a connection closed with a body unread sleeps in
// closeWriteAndWait for 500 ms before it ends.
func trackConns(srv *http.Server) *sync.WaitGroup {
	var wg sync.WaitGroup
	inner := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			wg.Add(1)
		case http.StateClosed, http.StateHijacked:
			defer wg.Done()
		}
		if inner != nil {
			inner(c, st)
		}
	}
	return &wg
}

// hello answers "hello" on / and 404 elsewhere, without reading a body.
var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	fmt.Fprintln(w, "hello")
})

// Raw net/http with a 1 s IdleTimeout behind a balancer that keeps idle
// connections 2 s: the probe finds the 1 s and the FIN, says it races, and
// exits 1; the advice is to raise the timeout above the balancer's.
func TestGoShortIdleTimeoutRaces(t *testing.T) {
	t.Parallel()
	url := goServer(t, &http.Server{IdleTimeout: time.Second})
	code, rep := probeJSON(t, url, "-lb-idle", "2s", "-max-idle", "5s", "-n", "30", "-conns", "60", "-early-tries", "2")
	assert.Equal(t, exitRaces, code)
	assert.True(t, rep.Idle.Closed)
	assert.InDelta(t, 1.0, rep.Idle.TimeoutSecs, 0.25, "idle timeout")
	assert.Equal(t, endFIN, rep.Idle.End)
	assert.Empty(t, rep.Idle.KeepAliveHeader)
	assert.Equal(t, resultRaces, rep.Verdict.Result)
	assert.Equal(t, 7.0, rep.Verdict.SuggestedSecs)
	assert.Contains(t, strings.Join(rep.Verdict.FixBackend, "\n"), "IdleTimeout: 7 * time.Second")
	assert.Equal(t, "ALB: idle_timeout.timeout_seconds 1 or less", rep.Verdict.FixBalancer)
	require.NotNil(t, rep.Race)
	for _, m := range rep.Race.Methods {
		assert.Equal(t, 30, m.Sent+m.ClosedFirst, m.Method)
		assert.Zero(t, m.Other, m.Method)
	}
	require.NotNil(t, rep.Early)
	assert.Equal(t, 2, rep.Early.Whole, "net/http answers the 404 whole")
	assert.Equal(t, []int{404}, rep.Early.Statuses)
	require.NotNil(t, rep.MaxRequests)
	assert.Equal(t, 100, rep.MaxRequests.Served)
}

// A Go server that keeps idle connections longer than the balancer: clean,
// exit 0, whether the probe saw the close or stopped waiting first.
func TestGoLongIdleTimeoutClean(t *testing.T) {
	t.Parallel()
	t.Run("closes after the balancer", func(t *testing.T) {
		t.Parallel()
		url := goServer(t, &http.Server{IdleTimeout: 2500 * time.Millisecond})
		code, rep := probeJSON(t, url, "-lb-idle", "1s", "-max-idle", "5s", "-n", "0", "-early-tries", "0", "-max-requests", "0")
		assert.Equal(t, exitClean, code)
		assert.True(t, rep.Idle.Closed)
		assert.InDelta(t, 2.5, rep.Idle.TimeoutSecs, 0.25)
		assert.Equal(t, resultClean, rep.Verdict.Result)
		assert.Empty(t, rep.Verdict.FixBackend)
		assert.Empty(t, rep.Verdict.FixBalancer)
	})
	t.Run("outlives the probe's wait", func(t *testing.T) {
		t.Parallel()
		url := goServer(t, &http.Server{IdleTimeout: time.Minute})
		code, rep := probeJSON(t, url, "-lb-idle", "1s", "-max-idle", "2500ms", "-n", "10", "-early-tries", "0", "-max-requests", "0")
		assert.Equal(t, exitClean, code)
		assert.False(t, rep.Idle.Closed)
		assert.Nil(t, rep.Race, "no timeout, nothing to sweep")
		assert.Equal(t, resultClean, rep.Verdict.Result)
	})
	t.Run("probe waited too little", func(t *testing.T) {
		t.Parallel()
		url := goServer(t, &http.Server{IdleTimeout: time.Minute})
		code, rep := probeJSON(t, url, "-lb-idle", "2s", "-max-idle", "1s", "-n", "0", "-early-tries", "0", "-max-requests", "0")
		assert.Equal(t, exitError, code)
		assert.Equal(t, resultUnknown, rep.Verdict.Result)
	})
}

// A server whose idle close is abortive (SO_LINGER 0): the probe reports
// RST, and says so in a note.
func TestIdleCloseByRST(t *testing.T) {
	t.Parallel()
	url := goServer(t, &http.Server{
		IdleTimeout: 500 * time.Millisecond,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				c.(*net.TCPConn).SetLinger(0)
			}
		},
	})
	code, rep := probeJSON(t, url, "-lb-idle", "2s", "-max-idle", "3s", "-n", "0", "-early-tries", "0", "-max-requests", "0")
	assert.Equal(t, exitRaces, code)
	assert.Equal(t, endRST, rep.Idle.End)
	assert.InDelta(t, 0.5, rep.Idle.TimeoutSecs, 0.25)
	assert.Contains(t, strings.Join(rep.Verdict.Notes, "\n"), "with a RST")
}

// A server that advertises "Keep-Alive: timeout=1" as Node does: the
// header and its timeout are reported, and the backend is taken for Node.
func TestKeepAliveHeader(t *testing.T) {
	t.Parallel()
	url := goServer(t, &http.Server{
		IdleTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Keep-Alive", "timeout=1")
			fmt.Fprintln(w, "hello")
		}),
	})
	code, out, _ := probeRun(t, url, "-lb-idle", "3s", "-max-idle", "3s", "-n", "0", "-early-tries", "0", "-max-requests", "0")
	assert.Equal(t, exitRaces, code)
	assert.Contains(t, out, "Keep-Alive header            timeout=1")
	assert.Contains(t, out, "verdict: RACES")
	assert.Contains(t, out, "fix: keep idle connections open longer on the backend than on the balancer (8 s):\n  Node.js: server.keepAliveTimeout = 8000; server.headersTimeout = 9000;\n")
	_, rep := probeJSON(t, url, "-lb-idle", "3s", "-max-idle", "3s", "-n", "0", "-early-tries", "0", "-max-requests", "0")
	assert.Equal(t, "timeout=1", rep.Idle.KeepAliveHeader)
	assert.Equal(t, 1.0, rep.Idle.AdvertisedSecs)
	assert.Equal(t, "node", rep.Verdict.Backend)
}

// A server that ends each connection after 5 requests with
// "Connection: close" (as Apache's MaxKeepAliveRequests does).
func TestMaxRequestsPerConnection(t *testing.T) {
	t.Parallel()
	type key struct{}
	var mu sync.Mutex
	served := map[net.Conn]int{}
	url := goServer(t, &http.Server{
		IdleTimeout: time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, key{}, c) },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := r.Context().Value(key{}).(net.Conn)
			mu.Lock()
			served[c]++
			n := served[c]
			mu.Unlock()
			if n >= 5 {
				w.Header().Set("Connection", "close")
			}
			fmt.Fprintln(w, "hello")
		}),
	})
	code, rep := probeJSON(t, url, "-lb-idle", "3s", "-max-idle", "3s", "-n", "0", "-early-tries", "0")
	assert.Equal(t, exitRaces, code)
	require.NotNil(t, rep.MaxRequests)
	assert.Equal(t, 5, rep.MaxRequests.Limit)
	assert.Equal(t, "Connection: close", rep.MaxRequests.End)
}

// The -json report has the fields CI scripts read.
func TestJSONShape(t *testing.T) {
	t.Parallel()
	url := goServer(t, &http.Server{IdleTimeout: 500 * time.Millisecond})
	code, out, _ := probeRun(t, url, "-json", "-lb", "nginx", "-lb-idle", "1s", "-max-idle", "2s", "-n", "4", "-early-tries", "1", "-max-requests", "3")
	assert.Equal(t, exitRaces, code)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &m), out)
	for _, k := range []string{"url", "balancer", "balancer_idle_s", "idle", "max_requests", "race", "early_response", "verdict", "duration_s"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, "nginx", m["balancer"])
	assert.Equal(t, 1.0, m["balancer_idle_s"])
	idle := m["idle"].(map[string]any)
	for _, k := range []string{"status", "connection_close", "closed", "timeout_s", "timeout_min_s", "timeout_max_s", "end", "max_idle_s", "connect_ms"} {
		assert.Contains(t, idle, k)
	}
	race := m["race"].(map[string]any)
	methods := race["methods"].([]any)
	require.Len(t, methods, 2)
	for i, name := range []string{"GET", "POST"} {
		mm := methods[i].(map[string]any)
		assert.Equal(t, name, mm["method"])
		for _, k := range []string{"sent", "answered", "retired", "eof", "reset", "other", "closed_first"} {
			assert.Contains(t, mm, k)
		}
	}
	early := m["early_response"].(map[string]any)
	for _, k := range []string{"path", "body_bytes", "tries", "body_sent_whole", "whole_answer", "reset", "eof", "timeout", "other"} {
		assert.Contains(t, early, k)
	}
	v := m["verdict"].(map[string]any)
	assert.Equal(t, "races", v["result"])
	assert.NotEmpty(t, v["reason"])
	assert.Contains(t, toStrings(v["fix_backend"]), "Go: http.Server{IdleTimeout: 6 * time.Second}, or lingerhttp, which retires idle connections with \"Connection: close\" instead of closing them")
	assert.Equal(t, "nginx: keepalive_timeout 1s or less in the upstream block", v["fix_balancer"])
}

func toStrings(v any) []string {
	var s []string
	for _, x := range v.([]any) {
		s = append(s, x.(string))
	}
	return s
}

// An origin that answers a large POST with a 256 KiB error page before
// reading it and closes at once with the body unread: the kernel resets the
// connection (tcp_close sends a RST when unread data remains) and discards
// what of the page it had not sent, and the probe counts the clients that
// lost the answer to it. A control run against net/http, which drains or
// half-closes, sees every answer whole (TestGoShortIdleTimeoutRaces).
func TestEarlyResponseReset(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.ContentLength > 0 {
					// An error page large enough to be still in the
					// send queue at the close, which discards it.
					c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					fmt.Fprintf(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(bigPage))
					c.Write(bigPage)
					return // closed with the body unread
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
			}()
		}
	}()
	url := "http://" + ln.Addr().String() + "/"
	code, rep := probeJSON(t, url, "-lb-idle", "1s", "-early-tries", "4", "-early-body", "8388608", "-max-requests", "0")
	assert.Equal(t, exitClean, code, "no keep-alive: nothing races")
	assert.True(t, rep.Idle.ConnectionClose)
	require.NotNil(t, rep.Early)
	assert.Equal(t, 4, rep.Early.Reset+rep.Early.Whole+rep.Early.EOF)
	assert.Positive(t, rep.Early.Reset, "the unread body makes the kernel reset")
	assert.Contains(t, strings.Join(rep.Verdict.Notes, "\n"), "got a reset instead of the answer")
}

var bigPage = bytes.Repeat([]byte("x"), 256<<10)

// Bad flags and an unreachable backend exit 2 with a one-line error.
func TestErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ftp://127.0.0.1/"}, `lingerprobe: URL scheme is not http or https ("ftp")`},
		{[]string{"-n", "5000", "http://127.0.0.1/"}, "lingerprobe: -n is out of range (5000)"},
		{[]string{"-max-idle", "1h", "http://127.0.0.1/"}, "lingerprobe: -max-idle is out of range (1h0m0s)"},
		{[]string{"-lb", "f5", "http://127.0.0.1/"}, `lingerprobe: -lb is not alb, nginx or haproxy ("f5")`},
		{[]string{closed}, "connection refused"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		assert.Equal(t, exitError, code, c.args)
		assert.Contains(t, errb.String(), c.want, c.args)
		assert.Empty(t, out.String(), c.args)
	}
}

func TestKeepAliveTimeoutParse(t *testing.T) {
	for h, want := range map[string]time.Duration{
		"timeout=5":           5 * time.Second,
		"timeout=5, max=1000": 5 * time.Second,
		"max=100, Timeout=15": 15 * time.Second,
		"":                    0,
		"timeout=x":           0,
	} {
		assert.Equal(t, want, keepAliveTimeout(h), h)
	}
}

// lingerhttp retires a connection idle past IdleTimeout with
// "Connection: close" and closes idle ones only after CloseIdleAfter: with
// that above the balancer's idle timeout the probe finds it clean, sees the
// retirements in the sweep, and no swept request is lost.
func TestLingerhttpClean(t *testing.T) {
	t.Parallel()
	ln, err := testnet.ListenTCP("127.0.0.1:0")
	require.NoError(t, err)
	ls := lingerhttp.New(&http.Server{Handler: hello, IdleTimeout: 300 * time.Millisecond}, lingerhttp.Config{
		CloseIdleAfter: 2500 * time.Millisecond,
		// The early response's unread 1 MiB body closes as "pending",
		// which lingerhttp takes for a lost request: log it here, not on
		// stderr.
		OnAdvice: func(a lingerhttp.Advice) { t.Logf("lingerhttp advice: %+v", a) },
	})
	done := make(chan error, 1)
	go func() { done <- ls.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, ls.Shutdown(ctx))
		assert.ErrorIs(t, <-done, http.ErrServerClosed)
	})
	url := "http://" + ln.Addr().String() + "/"
	code, rep := probeJSON(t, url, "-lb-idle", "1s", "-max-idle", "6s", "-n", "20", "-conns", "40", "-early-tries", "2", "-max-requests", "0")
	assert.Equal(t, exitClean, code)
	assert.True(t, rep.Idle.Closed)
	assert.GreaterOrEqual(t, rep.Idle.TimeoutSecs, 2.5)
	assert.Equal(t, endFIN, rep.Idle.End)
	require.NotNil(t, rep.Race)
	for _, m := range rep.Race.Methods {
		assert.Zero(t, m.EOF+m.Reset, "%s lost", m.Method)
		assert.Positive(t, m.Retired, "%s retired", m.Method)
	}
	require.NotNil(t, rep.Early)
	assert.Equal(t, 2, rep.Early.Whole, "the 404 arrives whole")
}

// Over https: net/http's idle close sends close_notify, then its FIN; the
// probe finds the timeout and the end as over http, and counts no request
// as lost that met a close_notify already there.
func TestHTTPS(t *testing.T) {
	t.Parallel()
	cert, _, err := testnet.Certificate("lingerprobe")
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		Handler:     hello,
		IdleTimeout: time.Second,
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:    log.New(io.Discard, "", 0), // the untrusted run's handshake errors
	}
	conns := trackConns(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		conns.Wait()
	})
	url := "https://" + ln.Addr().String() + "/"
	code, rep := probeJSON(t, url, "-insecure", "-lb-idle", "2s", "-max-idle", "3s", "-n", "20", "-conns", "40", "-early-tries", "1", "-max-requests", "5")
	assert.Equal(t, exitRaces, code)
	assert.InDelta(t, 1.0, rep.Idle.TimeoutSecs, 0.25)
	assert.Equal(t, endFIN, rep.Idle.End)
	require.NotNil(t, rep.Race)
	for _, m := range rep.Race.Methods {
		assert.Positive(t, m.ClosedFirst, "%s: requests after the close_notify are not sent", m.Method)
		assert.Zero(t, m.Other, m.Method)
		t.Logf("%s over TLS: %+v", m.Method, m)
	}
	code, _, errs := probeRun(t, url, "-lb-idle", "2s", "-max-idle", "3s")
	assert.Equal(t, exitError, code, "the certificate is not trusted without -insecure")
	assert.Contains(t, errs, "certificate")
}
