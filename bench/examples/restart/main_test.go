package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linger-go/linger/bench/internal/postload"
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

	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	load := postload.Start(cl, "http://"+addr+"/", 4, 50_000, []byte("ping"), []byte("hello\n"))

	serving := first
	for range 2 {
		before := load.OK()
		require.Eventually(t, func() bool { return load.OK() > before+50 }, 10*time.Second, time.Millisecond, "requests are served")
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
	before := load.OK()
	require.Eventually(t, func() bool { return load.OK() > before+50 }, 10*time.Second, time.Millisecond, "requests are served")
	refused, failed := load.Stop()
	tr.CloseIdleConnections()

	require.NoError(t, syscall.Kill(serving, syscall.SIGTERM))
	var ws unix.WaitStatus
	_, err = unix.Wait4(serving, &ws, 0, nil)
	require.NoError(t, err)
	assert.True(t, ws.Exited() && ws.ExitStatus() == 0, "stopped cleanly: %v", ws)

	t.Logf("%d requests answered over 2 restarts", load.OK())
	assert.Empty(t, failed, "failed requests")
	assert.Zero(t, refused, "refused connects")
}
