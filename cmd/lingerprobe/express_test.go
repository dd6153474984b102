package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// installExpress installs Express 4 from npm into a temporary directory
// with testdata/express.sh, or skips the test when that cannot be done.
func installExpress(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no npm install")
	}
	dir := t.TempDir()
	script, err := filepath.Abs("testdata/express.sh")
	require.NoError(t, err)
	out, err := exec.Command(script, dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot install express from npm (no node/npm, or the registry is unreachable): %v: %s", err, strings.TrimSpace(string(out)))
	}
	app, err := os.ReadFile("testdata/express.js")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "express.js"), app, 0o644))
	return dir
}

// startExpress runs the app in dir with env and returns its URL; it stops
// when the test ends.
func startExpress(t *testing.T, dir string, env ...string) string {
	t.Helper()
	cmd := exec.Command("node", "express.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close() // the app exits when its stdin ends
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	port := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		port <- strings.TrimSpace(line)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-port:
		require.NotEmpty(t, p, "express printed no port")
		return fmt.Sprintf("http://127.0.0.1:%s/", p)
	case <-time.After(20 * time.Second):
		t.Fatal("express did not start in 20 s")
	}
	return ""
}

// Express from npm with Node's defaults, behind ALB's default 60 s: the
// probe finds "Keep-Alive: timeout=5" and the idle close it stands for (at
// 6 s on Node 20: 5 s and the second Node adds), says it
// races, and gives the Node setting first. With keepAliveTimeout raised to
// 3 s behind a 1 s balancer it is clean.
func TestExpress(t *testing.T) {
	t.Parallel()
	dir := installExpress(t)
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		url := startExpress(t, dir)
		code, rep := probeJSON(t, url, "-lb", "alb", "-max-idle", "8s", "-n", "20", "-conns", "40", "-early-tries", "2", "-max-requests", "20")
		assert.Equal(t, exitRaces, code)
		assert.True(t, rep.Idle.Closed)
		// keepAliveTimeout (5 s), plus the second Node adds to the
		// socket's timeout (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER).
		assert.GreaterOrEqual(t, rep.Idle.TimeoutSecs, 4.9, "Node's default keepAliveTimeout")
		assert.Less(t, rep.Idle.TimeoutSecs, 6.5, "Node's default keepAliveTimeout")
		assert.Equal(t, "timeout=5", rep.Idle.KeepAliveHeader)
		assert.Equal(t, 5.0, rep.Idle.AdvertisedSecs)
		assert.Equal(t, "Express", rep.Idle.PoweredBy)
		assert.Equal(t, "node", rep.Verdict.Backend)
		assert.Equal(t, 65.0, rep.Verdict.SuggestedSecs)
		require.NotEmpty(t, rep.Verdict.FixBackend)
		assert.Equal(t, "Node.js: server.keepAliveTimeout = 65000; server.headersTimeout = 66000;", rep.Verdict.FixBackend[0])
		assert.Contains(t, rep.Verdict.FixBalancer, "ALB: idle_timeout.timeout_seconds")
		require.NotNil(t, rep.Race)
		for _, m := range rep.Race.Methods {
			assert.Equal(t, 20, m.Sent+m.ClosedFirst, m.Method)
			t.Logf("%s around Express's idle close: %+v", m.Method, m)
		}
		if rep.Idle.TimeoutSecs > 5.5 {
			assert.Contains(t, strings.Join(rep.Verdict.Notes, "\n"), `advertises "Keep-Alive: timeout=5" but closed idle connections after 6.0`)
		}
		require.NotNil(t, rep.Early)
		t.Logf("early response: %+v", *rep.Early)
	})
	t.Run("keepAliveTimeout raised", func(t *testing.T) {
		t.Parallel()
		url := startExpress(t, dir, "KEEP_ALIVE_TIMEOUT=3000")
		code, rep := probeJSON(t, url, "-lb-idle", "1s", "-max-idle", "6s", "-n", "0", "-early-tries", "0", "-max-requests", "0")
		assert.Equal(t, exitClean, code)
		assert.GreaterOrEqual(t, rep.Idle.TimeoutSecs, 2.9)
		assert.Less(t, rep.Idle.TimeoutSecs, 4.5)
		assert.Equal(t, "timeout=3", rep.Idle.KeepAliveHeader)
		assert.Equal(t, resultClean, rep.Verdict.Result)
	})
}
