package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linger-go/linger/internal/testnet"
	"github.com/linger-go/linger/lingerhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// haproxy-deploy's HAProxy checks every server on /ready as the README's
// recipe says, at 1/10 of its interval; the other HAProxy scenarios check
// nothing. Its DrainDelay keeps the recipe's rule: above inter × fall.
func TestHAProxyConfCheck(t *testing.T) {
	cfg := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1", "10.0.0.1:2"}}
	plain := proxyConf(t, "haproxy", cfg)
	assert.NotContains(t, plain, "httpchk")
	assert.NotContains(t, plain, " check")

	cfg.Check = haproxyCheck
	var lines []string
	for _, line := range strings.Split(proxyConf(t, "haproxy", cfg), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "server ") || strings.HasPrefix(line, "option httpchk") {
			lines = append(lines, line)
		}
	}
	assert.Equal(t, []string{
		"option httpchk GET /ready",
		"server s0 10.0.0.1:1 check inter 200ms fall 3 rise 2",
		"server s1 10.0.0.1:2 check inter 200ms fall 3 rise 2",
	}, lines)

	s := scenarioOfRow("haproxy-deploy")
	require.NotNil(t, s)
	assert.Same(t, haproxyCheck, s.check)
	assert.Equal(t, "haproxy", s.proxy)
	assert.Greater(t, haproxyDeployBackend.drainDelay, haproxyCheck.Inter*time.Duration(haproxyCheck.Fall))
}

// Without lingerhttp, /ready is a static 200 (a plain net/http server's
// health check); everything else is the deploy's echo.
func TestReadyDeployServerRaw(t *testing.T) {
	h := readyDeployServer().Handler
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/ready", nil))
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "ready\n", w.Body.String())

	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/", strings.NewReader("x")))
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, proxyReplySize, w.Body.Len())
}

// Served by lingerhttp, /ready is its ReadyHandler: 200, then 503 from
// the moment Shutdown begins, while the server serves on for DrainDelay.
func TestReadyDeployServerLingerHTTP(t *testing.T) {
	inner, err := testnet.ListenTCP("127.0.0.1:0")
	require.NoError(t, err)
	ln := serveLingerHTTPConfig(readyDeployServer(), inner, lingerhttp.Config{DrainDelay: time.Minute})
	lh := ln.(*lingerHTTP)
	base := "http://" + inner.Addr().String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(postBody))
		require.NoError(t, err)
		resp, err := cl.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get("GET", "/ready")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ready\n", body)

	ctx, cancel := context.WithCancel(context.Background())
	shut := make(chan error, 1)
	go func() { shut <- lh.Shutdown(ctx) }()
	// Shutdown begins in its goroutine; the check sees it within a few
	// requests. Bounded in count and time.
	code = 0
	for n, end := 0, time.Now().Add(5*time.Second); n < 100_000 && time.Now().Before(end) && code != http.StatusServiceUnavailable; n++ {
		code, _ = get("GET", "/ready")
	}
	assert.Equal(t, http.StatusServiceUnavailable, code)
	code, body = get("POST", "/")
	assert.Equal(t, http.StatusOK, code, "served on during DrainDelay")
	assert.Len(t, body, proxyReplySize)

	cancel()
	assert.ErrorIs(t, <-shut, context.Canceled)
}

// watchDown finds HAProxy's "Server be/s0 is DOWN" line, and gives up
// after its limit when there is none.
func TestWatchDown(t *testing.T) {
	p := &proxy{dir: t.TempDir()}
	log := filepath.Join(p.dir, "stdout.log")
	require.NoError(t, os.WriteFile(log, []byte("200 ---- POST\n"), 0o644))
	from := time.Now()
	assert.Equal(t, -1.0, p.watchDown(context.Background(), "s0", from, 50*time.Millisecond))

	require.NoError(t, os.WriteFile(log, []byte("200 ---- POST\nServer be/s1 is DOWN, reason: Layer4 connection problem\n"), 0o644))
	assert.Equal(t, -1.0, p.watchDown(context.Background(), "s0", from, 20*time.Millisecond), "another server's line")
	assert.GreaterOrEqual(t, p.watchDown(context.Background(), "s1", from, time.Second), 0.0)
}

// The deploy's note says when the health check marked the server down.
func TestSummarizeDeploysMarkedDown(t *testing.T) {
	ms := []float64{505.2, 498.7}
	r := &row{Extra: map[string]float64{}}
	summarizeDeploys(r, []deployRun{{downMs: &ms[0]}, {downMs: &ms[1]}})
	assert.Contains(t, r.Note, "; marked down by the health check at ms +505,+499")
	require.Len(t, r.Deploys, 2)
	assert.Equal(t, 498.7, *r.Deploys[1].DownMs)
}

// haproxy-deploy runs -quick's counts in every mode, so the default run
// has it; -deploys still sets its deploys. Other scenarios keep the mode's.
func TestSizesOf(t *testing.T) {
	s := scenarioOfRow("haproxy-deploy")
	require.NotNil(t, s)
	d := &driver{sz: defaultSizes}
	assert.Equal(t, quickSizes, d.sizesOf(s))
	assert.Equal(t, defaultSizes, d.sizesOf(scenarioOfRow("apache-deploy")))
	d.o.deploys = 5
	assert.Equal(t, 5, d.sizesOf(s).deploys)
}
