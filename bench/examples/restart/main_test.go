package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runMainEnv makes this test binary the command: the test starts it so,
// and tableflip re-executes it with the same environment and arguments.
const runMainEnv = "RESTART_EXAMPLE_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRestartInPlace runs the command, restarts it twice with SIGHUP while
// keep-alive clients POST to it, then stops it with SIGTERM: every request
// is answered and no connect is refused.
func TestRestartInPlace(t *testing.T) {
	// Each restarted process becomes this one's child when its parent
	// exits, so that the test can reap it.
	require.NoError(t, unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := probe.Addr().String()
	probe.Close()
	pidFile := filepath.Join(t.TempDir(), "pid")

	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(self, "-addr", addr, "-pid-file", pidFile)
	cmd.Env = append(os.Environ(), runMainEnv+"=1",
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")) // exit at once under -race too
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	first := cmd.Process.Pid
	pids := []int{first}
	t.Cleanup(func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		cmd.Wait()
		for _, pid := range pids[1:] {
			unix.Wait4(pid, nil, unix.WNOHANG, nil)
		}
	})
	waitPID := func(not int) int {
		var pid int
		require.Eventually(t, func() bool {
			b, err := os.ReadFile(pidFile)
			pid, _ = strconv.Atoi(string(b))
			return err == nil && pid != 0 && pid != not
		}, 30*time.Second, 5*time.Millisecond, "the PID file names a new ready process")
		return pid
	}
	require.Equal(t, first, waitPID(0))

	var ok, refused atomic.Int64
	var failures sync.Map
	done := make(chan struct{})
	var wg sync.WaitGroup
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 50_000; n++ {
				select {
				case <-done:
					return
				default:
				}
				resp, err := cl.Post("http://"+addr+"/", "text/plain", bytes.NewReader([]byte("ping")))
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && string(b) == "hello\n" {
						ok.Add(1)
						continue
					}
					if err == nil {
						err = fmt.Errorf("status %d, body %q", resp.StatusCode, b)
					}
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					refused.Add(1)
				}
				failures.Store(err.Error(), struct{}{})
			}
		}()
	}

	serving := first
	for range 2 {
		before := ok.Load()
		require.Eventually(t, func() bool { return ok.Load() > before+50 }, 10*time.Second, time.Millisecond, "requests are served")
		require.NoError(t, syscall.Kill(serving, syscall.SIGHUP))
		next := waitPID(serving)
		pids = append(pids, next)
		// The old process drains and exits; tableflip's next upgrade
		// waits for that.
		var ws unix.WaitStatus
		if serving == first {
			require.NoError(t, cmd.Wait())
		} else {
			_, err := unix.Wait4(serving, &ws, 0, nil)
			require.NoError(t, err)
			assert.True(t, ws.Exited() && ws.ExitStatus() == 0, "the old process exits cleanly: %v", ws)
		}
		serving = next
	}
	before := ok.Load()
	require.Eventually(t, func() bool { return ok.Load() > before+50 }, 10*time.Second, time.Millisecond, "requests are served")
	close(done)
	wg.Wait()
	tr.CloseIdleConnections()

	require.NoError(t, syscall.Kill(serving, syscall.SIGTERM))
	var ws unix.WaitStatus
	_, err = unix.Wait4(serving, &ws, 0, nil)
	require.NoError(t, err)
	assert.True(t, ws.Exited() && ws.ExitStatus() == 0, "stopped cleanly: %v", ws)

	var failed []string
	failures.Range(func(k, _ any) bool {
		failed = append(failed, k.(string))
		return true
	})
	t.Logf("%d requests answered over 2 restarts", ok.Load())
	assert.Empty(t, failed, "failed requests")
	assert.Zero(t, refused.Load(), "refused connects")
}
