//go:build linux

package linger_test

// The cost of many lingering closes, on the Linux paths in one run:
// "epoll" (the default: one epoll set and one goroutine per Listener),
// where it matters also "epoll-gofd" (its form for closes that queue up,
// forced for all), and "goroutine" (one goroutine per lingering close, the
// path of other platforms, which a connection wrapped by a listener under
// linger takes: wrappingListener). Each benchmark sizes
// itself to the descriptors the process may open: it raises the soft
// RLIMIT_NOFILE to the hard limit, and since both ends of every
// connection live in this process, each connection takes two. With a hard
// limit of 20 000 that is 9 000 connections; more need a higher limit.
//
//	go test -run '^$' -bench 'LingeringMemory|SimultaneousCloses|ShutdownIdle|FINToClose' -benchtime=1x -count=3
//
// The clients are raw descriptors (golang.org/x/sys/unix), so the Go
// memory measured is the server's alone. BenchmarkLingeringAtTheLimit
// goes further: its clients live in a child process, so every descriptor
// of this one holds a server's end (19 488 with a hard limit of 20 000,
// which only root with CAP_SYS_RESOURCE raises).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// manyConns is the number of connections the many-connection benchmarks
// open, at most: the target.
const manyConns = 9000

// fitConns raises the soft descriptor limit to the hard one and returns
// how many connections, both ends in this process, fit under it, at most
// manyConns.
func fitConns(tb testing.TB) int {
	tb.Helper()
	limit := raiseNoFile(tb)
	n := min(manyConns, (limit-reserveFDs)/2)
	require.Greater(tb, n, 100, "RLIMIT_NOFILE %d is too low", limit)
	if n < manyConns {
		tb.Logf("RLIMIT_NOFILE %d: %d connections, not %d", limit, n, manyConns)
	}
	return n
}

// reserveFDs are the descriptors a benchmark leaves for the test binary's
// own, the runtime's poller and listeners.
const reserveFDs = 512

// raiseNoFile raises the soft descriptor limit to the hard one and returns
// it.
func raiseNoFile(tb testing.TB) int {
	tb.Helper()
	var rl syscall.Rlimit
	require.NoError(tb, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl))
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		require.NoError(tb, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl))
	}
	return int(min(rl.Cur, 1<<30))
}

// childClients dials n connections to addr from a child process (this
// test binary as a client process, see clientProcessEnv), so that every
// descriptor of this process can go to the server's ends. The clients
// stay silent until close, which makes them close (their FINs) and waits
// for the child; it also runs at cleanup.
func childClients(tb testing.TB, addr net.Addr, n int) (close func()) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", clientProcessEnv, addr, n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(tb, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	require.NoError(tb, cmd.Start())
	var once sync.Once
	close = func() {
		once.Do(func() {
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				tb.Errorf("client process: %v", err)
			}
			cancel()
		})
	}
	tb.Cleanup(close)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(tb, err, "client process")
	require.Equal(tb, "ready\n", line, "client process")
	return close
}

// rawClients opens n blocking client sockets to addr and returns their
// descriptors, which the caller closes with closeAll (at cleanup too, if
// it has not).
func rawClients(tb testing.TB, addr net.Addr, n int) *clientFDs {
	tb.Helper()
	ta := addr.(*net.TCPAddr)
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	c := &clientFDs{fds: make([]int, 0, n)}
	tb.Cleanup(c.closeAll)
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(tb, err)
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			require.NoError(tb, err, "connect %d", len(c.fds))
		}
		c.fds = append(c.fds, fd)
	}
	return c
}

// clientFDs are client descriptors, closed once.
type clientFDs struct {
	fds    []int
	closed bool
}

// closeAll closes the descriptors (the clients' FINs), once.
func (c *clientFDs) closeAll() {
	if c.closed {
		return
	}
	c.closed = true
	for _, fd := range c.fds {
		unix.Close(fd)
	}
}

// lingerListen wraps a new loopback listener on the given path. At
// cleanup it is shut down, which waits for every lingering close.
func lingerListen(tb testing.TB, path string, cfg linger.Config) *linger.Listener {
	tb.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	var p closePath
	switch path {
	case "goroutine":
		p.wrapped = true
	case "epoll":
		p.prepare = linger.LingerInSet
	case "epoll-gofd":
		p.prepare = linger.HandOverGoFD
	}
	ln := p.wrap(raw, cfg)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(tb, ln.Shutdown(ctx), "Shutdown")
	})
	return ln
}

// acceptAndClose accepts n connections and closes each at once; it
// returns when all n are closed, that is, lingering.
func acceptAndClose(tb testing.TB, ln net.Listener, n int) chan error {
	done := make(chan error, 1)
	go func() {
		for i := range n {
			c, err := ln.Accept()
			if err != nil {
				done <- fmt.Errorf("accept %d: %w", i, err)
				return
			}
			c.Close()
		}
		done <- nil
	}()
	return done
}

// lingerPathNames are the linger paths compared: "goroutine", a wrapped
// connection's goroutine (as on other platforms); "epoll", every close in
// the epoll set; "epoll-gofd", the set's form for closes that queue up
// (Go's own descriptor, not a dup), forced for every close; "default",
// the first MaxLingerGoroutines closes at a time in goroutines of their
// own, reading the socket itself, and the set past them.
var lingerPathNames = []string{"goroutine", "epoll", "epoll-gofd", "default"}

// BenchmarkLingeringMemory weighs lingering closes: the Go heap and
// stacks in use with n connections lingering (their peers send no FIN),
// less what was in use before they were dialled, per connection.
func BenchmarkLingeringMemory(b *testing.B) {
	n := fitConns(b)
	for _, path := range lingerPathNames {
		b.Run(path, func(b *testing.B) {
			var perConn, goroutines float64
			for range b.N {
				ln := lingerListen(b, path, linger.Config{LingerTimeout: time.Minute, MaxLingering: 1 << 20})
				g0 := runtime.NumGoroutine()
				base := testnet.HeapAndStacks()
				done := acceptAndClose(b, ln, n)
				clients := rawClients(b, ln.Addr(), n)
				require.NoError(b, <-done)
				require.EqualValues(b, n, ln.Stats().Lingering, "lingering")
				perConn += (float64(testnet.HeapAndStacks()) - float64(base)) / float64(n)
				goroutines += float64(runtime.NumGoroutine()-g0) / float64(n)
				clients.closeAll()
			}
			b.ReportMetric(perConn/float64(b.N), "B/lingering")
			b.ReportMetric(goroutines/float64(b.N), "goroutines/lingering")
			b.ReportMetric(float64(n), "conns")
		})
	}
}

// BenchmarkLingeringAtTheLimit opens as many connections as this
// process's descriptor limit holds, their clients in a child process, and
// closes them all at once on the epoll path, their peers silent: with the
// zero Config's MaxLingering (half the limit: the other half is kept for
// accepting, so the rest are shed) and unbounded. It reports the closes
// lingering and shed, and the Go heap and stacks per lingering close.
//
//	go test -run '^$' -bench LingeringAtTheLimit -benchtime=1x
func BenchmarkLingeringAtTheLimit(b *testing.B) {
	n := raiseNoFile(b) - reserveFDs
	for _, tc := range []struct {
		name string
		max  int
	}{{"default", 0}, {"unbounded", 1 << 20}} {
		b.Run(tc.name, func(b *testing.B) {
			var shed, lingering, perConn float64
			for range b.N {
				ln := lingerListen(b, "epoll", linger.Config{LingerTimeout: time.Minute, MaxLingering: tc.max})
				base := testnet.HeapAndStacks()
				conns := acceptN(ln, n)
				closeClients := childClients(b, ln.Addr(), n)
				cs := <-conns
				require.Len(b, cs, n)
				for _, c := range cs {
					c.Close()
				}
				clear(cs)
				st := ln.Stats()
				shed += float64(st.Outcomes[linger.Shed])
				lingering += float64(st.Lingering)
				perConn += (float64(testnet.HeapAndStacks()) - float64(base)) / float64(st.Lingering)
				closeClients()
			}
			b.ReportMetric(shed/float64(b.N), "shed")
			b.ReportMetric(lingering/float64(b.N), "lingering")
			b.ReportMetric(perConn/float64(b.N), "B/lingering")
			b.ReportMetric(float64(n), "conns")
		})
	}
}

// BenchmarkSimultaneousCloses closes n open connections at once, their
// peers silent, with the zero Config's MaxLingering, and counts the
// closes shed (closed at once, with the RST risk back). "old-default" is
// the bound of the goroutine-per-linger design, 4096, for comparison.
func BenchmarkSimultaneousCloses(b *testing.B) {
	n := fitConns(b)
	for _, tc := range []struct {
		name, path string
		max        int
	}{{"raw", "raw", 0}, {"goroutine/old-default", "goroutine", 4096}, {"goroutine", "goroutine", 0}, {"epoll", "epoll", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			var shed, lingering, closeNs float64
			for range b.N {
				var ln net.Listener
				var lln *linger.Listener
				if tc.path == "raw" {
					ln = testnet.Listen(b)
				} else {
					lln = lingerListen(b, tc.path, linger.Config{LingerTimeout: time.Minute, MaxLingering: tc.max})
					ln = lln
				}
				conns := acceptN(ln, n)
				clients := rawClients(b, ln.Addr(), n)
				cs := <-conns
				require.Len(b, cs, n)
				start := time.Now()
				for _, c := range cs {
					c.Close()
				}
				closeNs += float64(time.Since(start).Nanoseconds()) / float64(n)
				if lln != nil {
					st := lln.Stats()
					shed += float64(st.Outcomes[linger.Shed])
					lingering += float64(st.Lingering)
				}
				clients.closeAll()
			}
			b.ReportMetric(shed/float64(b.N), "shed")
			b.ReportMetric(lingering/float64(b.N), "lingering")
			b.ReportMetric(closeNs/float64(b.N), "ns/Close")
			b.ReportMetric(float64(n), "conns")
		})
	}
}

// idleHTTPClients makes one request on each of n raw client sockets and
// leaves them idle (keep-alive); a goroutine then closes each as soon as
// the server's FIN arrives, as clients do, until stop is called.
func idleHTTPClients(tb testing.TB, addr net.Addr, n int) (stop func()) {
	tb.Helper()
	clients := rawClients(tb, addr, n)
	fds := clients.fds
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	buf := make([]byte, 512)
	for _, fd := range fds {
		_, err := unix.Write(fd, req)
		require.NoError(tb, err)
		var got []byte
		for !bytes.HasSuffix(got, []byte("\r\n\r\nok")) {
			m, err := unix.Read(fd, buf)
			require.NoError(tb, err)
			require.Positive(tb, m, "response cut short: %q", got)
			got = append(got, buf[:m]...)
		}
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	require.NoError(tb, err)
	open := make(map[int32]bool, n)
	for _, fd := range fds {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
		require.NoError(tb, unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev))
		open[int32(fd)] = true
	}
	var quit atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		events := make([]unix.EpollEvent, 256)
		deadline := time.Now().Add(time.Minute)
		for len(open) > 0 && !quit.Load() && time.Now().Before(deadline) {
			k, err := unix.EpollWait(ep, events, 50)
			if err != nil {
				continue
			}
			for _, ev := range events[:k] {
				if open[ev.Fd] {
					unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
					unix.Shutdown(int(ev.Fd), unix.SHUT_WR) // our FIN; stop closes
					delete(open, ev.Fd)
				}
			}
		}
	}()
	return func() {
		quit.Store(true)
		wg.Wait()
		unix.Close(ep)
		clients.closeAll()
	}
}

// BenchmarkShutdownIdle times the shutdown of a net/http server holding n
// idle keep-alive connections: http.Server.Shutdown alone on a raw
// listener, and followed by linger's Listener.Shutdown (which waits for
// every lingering close, so for the clients' FINs) on the two paths.
func BenchmarkShutdownIdle(b *testing.B) {
	n := fitConns(b)
	for _, path := range []string{"raw", "goroutine", "epoll"} {
		b.Run(path, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				raw, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(b, err)
				var ln net.Listener = raw
				var lln *linger.Listener
				if path != "raw" {
					// goroutine: a connection wrapped under linger.
					lln = closePath{wrapped: path == "goroutine"}.wrap(raw, linger.Config{})
					ln = lln
				}
				var idle atomic.Int64
				allIdle := make(chan struct{})
				srv := &http.Server{
					Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }),
					ConnState: func(_ net.Conn, st http.ConnState) {
						if st == http.StateIdle && idle.Add(1) == int64(n) {
							close(allIdle)
						}
					},
				}
				served := make(chan error, 1)
				go func() { served <- srv.Serve(ln) }()
				stop := idleHTTPClients(b, ln.Addr(), n)
				<-allIdle

				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				require.NoError(b, srv.Shutdown(ctx))
				if lln != nil {
					require.NoError(b, lln.Shutdown(ctx))
				}
				total += time.Since(start)
				cancel()
				<-served
				stop()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/shutdown")
			b.ReportMetric(float64(n), "conns")
		})
	}
}

// peerRTT is the round trip BenchmarkFINToClose's peer waits, in one of
// its forms, before its FIN: a short one, as inside a data centre.
const peerRTT = 500 * time.Microsecond

// BenchmarkFINToClose times, one connection at a time, the span from the
// client's FIN to the end of the server's lingering close, as OnClose sees
// it, with held lingering closes that wait meanwhile (their peers silent):
// none, and many.
func BenchmarkFINToClose(b *testing.B) {
	n := fitConns(b)
	const samples = 1000
	for _, v := range []struct {
		held int
		rtt  time.Duration
	}{{0, 0}, {0, peerRTT}, {n - samples, 0}, {n - samples, peerRTT}} {
		held, rtt := v.held, v.rtt
		for _, path := range lingerPathNames {
			b.Run(fmt.Sprintf("held=%d/rtt=%v/%s", held, rtt, path), func(b *testing.B) {
				var p50, p99 time.Duration
				for range b.N {
					closed := make(chan time.Time, held+samples)
					ln := lingerListen(b, path, linger.Config{LingerTimeout: time.Minute, MaxLingering: 1 << 20,
						OnClose: func(linger.CloseInfo) { closed <- time.Now() }})
					done := acceptAndClose(b, ln, held)
					heldClients := rawClients(b, ln.Addr(), held)
					require.NoError(b, <-done)
					lat := make([]time.Duration, 0, samples)
					buf := make([]byte, 1)
					for range samples {
						done := acceptAndClose(b, ln, 1)
						client := rawClients(b, ln.Addr(), 1)
						require.NoError(b, <-done)
						fd := client.fds[0]
						m, err := unix.Read(fd, buf) // the server's FIN
						require.NoError(b, err)
						require.Zero(b, m)
						// A peer answers one round trip after our FIN: by
						// then both paths have settled, parked in the
						// poller. Without it, the FIN comes while the
						// close is still being set up.
						if rtt > 0 {
							time.Sleep(rtt)
						}
						t0 := time.Now()
						unix.Shutdown(fd, unix.SHUT_WR)
						lat = append(lat, (<-closed).Sub(t0))
						client.closeAll()
					}
					heldClients.closeAll()
					slices.Sort(lat)
					p50 += lat[len(lat)/2]
					p99 += lat[len(lat)*99/100]
				}
				b.ReportMetric(float64(p50.Nanoseconds())/1e3/float64(b.N), "µs-p50")
				b.ReportMetric(float64(p99.Nanoseconds())/1e3/float64(b.N), "µs-p99")
			})
		}
	}
}

// acceptN accepts n connections in a goroutine and sends them, or those it
// got before Accept failed, on the channel it returns.
func acceptN(ln net.Listener, n int) <-chan []net.Conn {
	conns := make(chan []net.Conn, 1)
	go func() {
		var cs []net.Conn
		for range n {
			c, err := ln.Accept()
			if err != nil {
				break
			}
			cs = append(cs, c)
		}
		conns <- cs
	}()
	return conns
}
