//go:build linux

package lingerhttp

// systemd socket activation, as sd_listen_fds(3) describes it: systemd
// opens the listening socket of a .socket unit and passes it to the
// service as descriptor 3 (SD_LISTEN_FDS_START), with LISTEN_FDS=1 and
// LISTEN_PID set to the service's PID. systemd keeps its own descriptor,
// so when the service restarts the socket stays open: connections that
// arrive while no instance runs wait in the kernel's accept queue for the
// next one, instead of being refused. The test below is systemd: it holds
// a socket, starts this test binary as the service twice, and restarts it
// in between.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	// systemdChildEnv names, in the service process, the instance it is.
	systemdChildEnv = "LINGERHTTP_TEST_SYSTEMD_INSTANCE"
	// The service prints these lines: when it serves, and when its test
	// has passed (a child that ran no test exits 0 too).
	systemdReadyMark    = "lingerhttp-systemd-ready"
	systemdDrainingMark = "lingerhttp-systemd-draining"
	systemdPassedMark   = "lingerhttp-systemd-passed"
)

// systemdListeners returns the listeners systemd passed, as
// sd_listen_fds(3) finds them: only if LISTEN_PID is this process (the
// variables are inherited by children, which must not take the sockets
// too), from descriptor 3 on. It unsets the variables and marks the
// descriptors close-on-exec, as sd_listen_fds(1) does.
func systemdListeners() ([]net.Listener, error) {
	pid, n := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if pid != strconv.Itoa(os.Getpid()) {
		return nil, fmt.Errorf("LISTEN_PID is %q, not this process (%d)", pid, os.Getpid())
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		return nil, fmt.Errorf("LISTEN_FDS is %q", n)
	}
	var lns []net.Listener
	for fd := 3; fd < 3+count; fd++ {
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		ln, err := net.FileListener(f) // a dup; f's descriptor is closed below
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("descriptor %d: %w", fd, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// TestSystemdSocketActivation restarts a socket-activated lingerhttp
// service: the first instance hands off when told to stop (systemd holds
// the socket), connections that arrive while no instance runs queue, and
// the second instance serves them. Nothing is refused, reset or lost.
func TestSystemdSocketActivation(t *testing.T) {
	if name := os.Getenv(systemdChildEnv); name != "" {
		runSystemdService(t, name)
		return
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("setting LISTEN_PID to the service's own PID takes sh")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	sock, err := ln.(*net.TCPListener).File() // systemd's descriptor
	require.NoError(t, err)
	ln.Close()
	t.Cleanup(func() { sock.Close() })

	first := startService(t, sock, "first")
	held := dialAddr(t, addr)
	_, body := held.getBody(t, "/")
	require.Equal(t, "first", body)

	// systemctl restart: SIGTERM to the first instance, which drains;
	// then the second instance starts.
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGTERM))
	first.await(t, systemdDrainingMark)
	resp, body := held.getBody(t, "/")
	assert.Equal(t, "first", body, "a request on a connection the first instance holds is served")
	assert.True(t, resp.Close, "with Connection: close")
	held.Close()
	during := sendQueued(t, addr, 5) // the first instance has stopped accepting
	first.wait(t)
	after := sendQueued(t, addr, 5) // no instance runs
	second := startService(t, sock, "second")

	for _, c := range during {
		resp, body := readAnswer(t, c)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Contains(t, []string{"first", "second"}, body)
	}
	for _, c := range after {
		resp, body := readAnswer(t, c)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "second", body, "a connection queued while no instance ran is served by the next")
	}
	require.NoError(t, second.cmd.Process.Signal(syscall.SIGTERM))
	second.wait(t)
}

// sendQueued dials n connections and sends a request on each, without
// reading: while no process accepts, they wait in the accept queue.
func sendQueued(t *testing.T, addr string, n int) []*client {
	t.Helper()
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = dialAddr(t, addr) // connects: the socket is listening
		_, err := io.WriteString(cs[i], "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		require.NoError(t, err)
	}
	return cs
}

func readAnswer(t *testing.T, c *client) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err, "the queued request is answered, not reset or closed")
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	c.Close()
	return resp, string(b)
}

// service is one instance of the socket-activated service.
type service struct {
	name  string
	cmd   *exec.Cmd
	lines chan string // its marks, as it prints them
	done  chan struct{}
	mu    sync.Mutex
	log   strings.Builder
}

func (s *service) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(b)
}

func (s *service) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// startService starts this test binary as the service, the way systemd
// does: sock as descriptor 3, LISTEN_FDS=1 and LISTEN_PID its PID (sh
// sets it to its own, then execs the binary, which keeps the PID). It
// returns when the service serves.
func startService(t *testing.T, sock *os.File, name string) *service {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	s := &service{name: name, lines: make(chan string, 16), done: make(chan struct{})}
	s.cmd = exec.Command("sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`,
		self, "-test.run=^TestSystemdSocketActivation$", "-test.count=1", "-test.v=true", "-test.timeout=60s")
	s.cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=http", systemdChildEnv+"="+name,
		// The race detector sleeps 1 s at exit by default.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	s.cmd.ExtraFiles = []*os.File{sock}
	s.cmd.Stderr = s
	stdout, err := s.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(s, sc.Text())
			if mark, ok := strings.CutSuffix(sc.Text(), " "+name); ok {
				select {
				case s.lines <- mark:
				default:
				}
			}
		}
		s.cmd.Wait()
	}()
	s.await(t, systemdReadyMark)
	return s
}

// await waits until the service prints mark.
func (s *service) await(t *testing.T, mark string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case got := <-s.lines:
			if got == mark {
				return
			}
		case <-s.done:
			t.Fatalf("service %s exited before %s:\n%s", s.name, mark, s)
		case <-timeout:
			t.Fatalf("service %s did not print %s within 30 s:\n%s", s.name, mark, s)
		}
	}
}

// wait waits for the service to exit and fails t unless its test passed.
func (s *service) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("service %s did not exit within 30 s:\n%s", s.name, s)
	}
	require.True(t, s.cmd.ProcessState.Success() && strings.Contains(s.String(), systemdPassedMark+" "+s.name),
		"service %s failed (%v):\n%s", s.name, s.cmd.ProcessState, s)
}

// runSystemdService is the service: lingerhttp on the socket systemd
// passed, answering every request with its name, until SIGTERM; then it
// hands off, since systemd keeps the socket for the next instance.
func runSystemdService(t *testing.T, name string) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	defer signal.Stop(stop)
	lns, err := systemdListeners()
	require.NoError(t, err)
	require.Len(t, lns, 1)

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	})}
	s := New(srv, Config{DrainIdle: 200 * time.Millisecond})
	served := make(chan error, 1)
	go func() { served <- s.Serve(lns[0]) }()
	s.waitServing(t)
	fmt.Println(systemdReadyMark, name)

	select {
	case <-stop:
	case <-time.After(30 * time.Second):
		t.Fatal("no SIGTERM within 30 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	handedOff := make(chan error, 1)
	go func() { handedOff <- s.Handoff(ctx) }()
	require.Eventually(t, func() bool { return s.draining.Load() }, 10*time.Second, time.Millisecond)
	fmt.Println(systemdDrainingMark, name)
	require.NoError(t, <-handedOff)
	assert.True(t, errors.Is(<-served, http.ErrServerClosed))
	if !t.Failed() {
		fmt.Println(systemdPassedMark, name)
	}
}
