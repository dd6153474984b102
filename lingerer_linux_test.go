//go:build linux

package linger_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// lingerPaths are the ways a TCP connection lingers on Linux: in a
// goroutine of its own (the default while few linger), in the Listener's
// epoll set (past those), by a dup of its descriptor or, when closes queue
// up, by Go's own; and in a goroutine of its own reading through a
// wrapper, which a connection a listener under linger wraps takes (the
// path of other platforms, and the control).
var lingerPaths = []lingerPath{
	{closePath{name: "goroutine"}, false, false},
	{closePath{name: "epoll", prepare: linger.LingerInSet}, true, false},
	{closePath{name: "epoll/Go's descriptor", prepare: linger.HandOverGoFD}, true, true},
	{closePath{name: "goroutine (a wrapped conn)", wrapped: true}, false, false},
}

// lingerPath is a closePath on Linux, and what it is.
type lingerPath struct {
	closePath
	shared bool // in the Listener's epoll set
	goFD   bool // there, by Go's own descriptor
}

// closeLingering closes srv, checks the client got the FIN, and that the
// close lingers on p.
func closeLingering(t *testing.T, s *testnet.Server, p lingerPath, client net.Conn, srv net.Conn) {
	t.Helper()
	require.NoError(t, srv.Close())
	if p.shared {
		assert.Equal(t, 1, linger.Watched(s.Listener), "the close lingers in the epoll set")
		assert.Equal(t, p.goFD, linger.GoFD(srv.(*linger.Conn)), "the close is in the set by Go's own descriptor")
	} else {
		assert.Equal(t, 0, linger.Watched(s.Listener), "the close lingers in a goroutine")
		assert.EqualValues(t, 1, s.Stats().Lingering, "the close lingers")
	}
	_, err := client.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the close half-closed")
}

// Every bound of a lingering close ends it the same way on both paths.
func TestLingerPathsEndAlike(t *testing.T) {
	for _, p := range lingerPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Run("no FIN: timeout at LingerTimeout", func(t *testing.T) {
				const timeout = 100 * time.Millisecond
				s := p.listen(t, linger.Config{LingerTimeout: timeout})
				client, srv := pair(t, s)
				closeLingering(t, s, p, client, srv)
				ci := s.Next(t)
				assert.Equal(t, linger.Timeout, ci.Outcome)
				assert.GreaterOrEqual(t, ci.Linger, timeout)
				assert.Less(t, ci.Linger, timeout+time.Second)
			})
			t.Run("several, one ended early: each times out on time", func(t *testing.T) {
				// The set's one deadline moves from linger to linger: past
				// a timeout, and past a linger that ended on its FIN.
				const timeout = 100 * time.Millisecond
				s := p.listen(t, linger.Config{LingerTimeout: timeout})
				const n = 4
				clients := make([]net.Conn, n)
				for i := range n {
					client, srv := pair(t, s)
					require.NoError(t, srv.Close())
					_, err := client.Read(make([]byte, 1))
					require.ErrorIs(t, err, io.EOF)
					clients[i] = client
				}
				require.NoError(t, clients[0].Close()) // the earliest deadline ends first, on its FIN
				assert.Equal(t, linger.Clean, s.Next(t).Outcome)
				for range n - 1 {
					ci := s.Next(t)
					assert.Equal(t, linger.Timeout, ci.Outcome)
					assert.GreaterOrEqual(t, ci.Linger, timeout)
					assert.Less(t, ci.Linger, timeout+time.Second)
				}
				// OnClose runs before the close is uncounted: wait for the
				// set (or the goroutines) to be done, on the listener's own
				// signal.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				require.True(t, linger.WaitNoLingerGoroutine(ctx, s.Listener), "a linger outlived its timeout")
				assert.Zero(t, linger.Watched(s.Listener))
			})
			t.Run("flood: overflow past LingerBytes", func(t *testing.T) {
				const limit = 1 << 20
				s := p.listen(t, linger.Config{LingerBytes: limit, LingerTimeout: time.Minute})
				client, srv := pair(t, s)
				closeLingering(t, s, p, client, srv)
				writerDone := make(chan struct{})
				go func() {
					defer close(writerDone)
					chunk := make([]byte, 64<<10)
					for range 10 * limit / len(chunk) {
						if _, err := client.Write(chunk); err != nil {
							return
						}
					}
				}()
				ci := s.Next(t)
				assert.Equal(t, linger.Overflow, ci.Outcome)
				assert.Greater(t, ci.Discarded, int64(limit))
				assert.Less(t, ci.Linger, 10*time.Second)
				client.Close()
				<-writerDone
			})
			t.Run("RST mid-drain: reset", func(t *testing.T) {
				s := p.listen(t, linger.Config{LingerTimeout: time.Minute})
				client, srv := pair(t, s)
				closeLingering(t, s, p, client, srv)
				_, err := client.Write(make([]byte, 1000))
				require.NoError(t, err)
				require.NoError(t, client.SetLinger(0))
				require.NoError(t, client.Close())
				ci := s.Next(t)
				assert.Equal(t, linger.Reset, ci.Outcome)
				assert.LessOrEqual(t, ci.Discarded, int64(1000))
			})
			t.Run("FIN after bytes: crossed", func(t *testing.T) {
				s := p.listen(t, linger.Config{LingerTimeout: time.Minute})
				client, srv := pair(t, s)
				closeLingering(t, s, p, client, srv)
				_, err := client.Write(make([]byte, 3000))
				require.NoError(t, err)
				require.NoError(t, client.Close())
				ci := s.Next(t)
				assert.Equal(t, linger.Crossed, ci.Outcome)
				assert.EqualValues(t, 3000, ci.Discarded)
				assert.Equal(t, client.LocalAddr().String(), ci.RemoteAddr.String())
				assert.Equal(t, client.RemoteAddr().String(), ci.LocalAddr.String())
			})
			t.Run("unread at close: pending", func(t *testing.T) {
				s := p.listen(t, linger.Config{LingerTimeout: time.Minute})
				client, srv := pair(t, s)
				sendQueued(t, client, srv, "queued")
				closeLingering(t, s, p, client, srv)
				require.NoError(t, client.Close())
				ci := s.Next(t)
				assert.Equal(t, linger.Pending, ci.Outcome)
				assert.Equal(t, 6, ci.Unread)
				assert.EqualValues(t, 6, ci.Discarded)
			})
			t.Run("Shutdown's context ends: aborted", func(t *testing.T) {
				s := p.listen(t, linger.Config{LingerTimeout: time.Hour})
				const n = 20
				for range n {
					client, srv := pair(t, s)
					require.NoError(t, srv.Close())
					_, err := client.Read(make([]byte, 1))
					require.ErrorIs(t, err, io.EOF)
				}
				if p.shared {
					assert.Equal(t, n, linger.Watched(s.Listener))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				start := time.Now()
				assert.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
				assert.Less(t, time.Since(start), 5*time.Second, "the cut ended the lingers at once")
				for range n {
					assert.Equal(t, linger.Aborted, s.Next(t).Outcome)
				}
				st := s.Stats()
				assert.EqualValues(t, 0, st.Lingering)
				assert.EqualValues(t, n, st.Outcomes[linger.Aborted])
			})
		})
	}
}

// Lingering closes on the epoll path share one goroutine; the goroutine
// path, the control, adds one per close; by default the first
// MaxLingerGoroutines at a time linger in goroutines of their own and the
// rest share the set's.
func TestLingeringClosesShareOneGoroutine(t *testing.T) {
	const n = 300
	for _, p := range lingerPaths {
		t.Run(p.name, func(t *testing.T) {
			s := p.listen(t, linger.Config{LingerTimeout: time.Minute})
			clients := make([]net.Conn, n)
			srvs := make([]net.Conn, n)
			for i := range n {
				clients[i], srvs[i] = pair(t, s)
			}
			before := runtime.NumGoroutine()
			for _, c := range srvs {
				require.NoError(t, c.Close())
			}
			added := runtime.NumGoroutine() - before
			require.EqualValues(t, n, s.Stats().Lingering, "every close lingers: the peers have sent no FIN")
			switch {
			case p.shared:
				assert.LessOrEqual(t, added, 2, "goroutines added by %d lingering closes", n)
				assert.Equal(t, n, linger.Watched(s.Listener))
			case !p.wrapped:
				m := linger.MaxLingerGoroutines
				assert.Equal(t, n-m, linger.Watched(s.Listener), "closes in the set")
				assert.LessOrEqual(t, added, m+2, "goroutines added by %d lingering closes", n)
				assert.GreaterOrEqual(t, added, m*9/10, "goroutines added by %d lingering closes", n)
			default:
				// Other tests' leftovers may exit meanwhile: a margin.
				assert.GreaterOrEqual(t, added, n*9/10, "goroutines added by %d lingering closes", n)
			}
			for _, c := range clients {
				c.Close()
			}
			for range n {
				assert.Equal(t, linger.Clean, s.Next(t).Outcome)
			}
			// Nothing lingers: the watcher exits without Shutdown.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			assert.True(t, linger.WaitNoLingerGoroutine(ctx, s.Listener), "a lingering goroutine outlived its closes")
			if !p.shared && !p.wrapped {
				// The goroutines' count went down with them: the next close
				// lingers in a goroutine again.
				c, srv := pair(t, s)
				require.NoError(t, srv.Close())
				assert.Equal(t, 0, linger.Watched(s.Listener), "the next close lingers in a goroutine")
				c.Close()
				assert.Equal(t, linger.Clean, s.Next(t).Outcome)
			}
		})
	}
}

// The epoll set and its goroutine come with the first lingering close,
// serve the closes that follow, and go, descriptor included, once none has
// lingered for SetIdleLife, and come back for the next.
func TestLingerSetComesAndGoes(t *testing.T) {
	s := listen(t, linger.Config{LingerTimeout: time.Minute})
	linger.LingerInSet(s.Listener)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lingerOnce := func(round int) *os.File {
		client, srv := pair(t, s)
		require.NoError(t, srv.Close())
		assert.Equal(t, 1, linger.Watched(s.Listener), "round %d", round)
		set := linger.LingerSetFile(s.Listener)
		require.NotNil(t, set, "round %d: no epoll set while a close lingers", round)
		require.NoError(t, client.Close())
		assert.Equal(t, linger.Clean, s.Next(t).Outcome)
		return set
	}
	for round := range 3 {
		set := lingerOnce(round)
		ended := time.Now()
		// The next close, well within the idle life, finds the same set
		// (churn: a connection per request does not make a set each).
		again := lingerOnce(round)
		if time.Since(ended) < linger.SetIdleLife/2 {
			assert.Same(t, set, again, "round %d: a set was made anew for a close %v after the last", round, time.Since(ended))
		}
		require.True(t, linger.WaitNoLingerGoroutine(ctx, s.Listener), "round %d: the watcher outlived its idle life", round)
		assert.Nil(t, linger.LingerSetFile(s.Listener), "round %d", round)
		assert.ErrorIs(t, again.Close(), os.ErrClosed, "round %d: the epoll set's descriptor is closed", round)
	}
}

// The Listener's Close ends an idle set at once, not after its idle life,
// so that Shutdown does not wait for it. The set exits a few microseconds
// after Close when Close wakes it, and SetIdleLife after its last linger
// when it does not: three tries tell the two apart on a machine that
// stalls now and then.
func TestLingerSetGoesWithTheListener(t *testing.T) {
	var took []time.Duration
	for range 3 {
		s := listen(t, linger.Config{LingerTimeout: time.Minute})
		linger.LingerInSet(s.Listener)
		client, srv := pair(t, s)
		require.NoError(t, srv.Close())
		require.NoError(t, client.Close())
		assert.Equal(t, linger.Clean, s.Next(t).Outcome)
		t0 := time.Now()
		require.NoError(t, s.Close())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.True(t, linger.WaitNoLingerGoroutine(ctx, s.Listener), "the watcher outlived the closed Listener")
		cancel()
		took = append(took, time.Since(t0))
		if took[len(took)-1] < linger.SetIdleLife/2 {
			return
		}
	}
	t.Errorf("the idle set exited %v after the Listener's Close, three times: its idle life (%v), not the Close, ended it", took, linger.SetIdleLife)
}

// A close that comes while the set's goroutine waits is added to the set
// by its owner, without waking the goroutine, unless its deadline is
// earlier than the one the goroutine waits for: here the idle set waits
// for the end of its idle life, and the new close's LingerTimeout (20 ms)
// ends sooner. Its linger must end by its own deadline, not the idle
// life's (100 ms). Three tries tell the two apart on a machine that
// stalls now and then.
func TestLingerAdoptedByItsOwnerKeepsItsDeadline(t *testing.T) {
	const timeout = 20 * time.Millisecond
	var took []time.Duration
	for range 3 {
		s := listen(t, linger.Config{LingerTimeout: timeout})
		linger.LingerInSet(s.Listener)
		client, srv := pair(t, s)
		require.NoError(t, srv.Close())
		require.NoError(t, client.Close())
		require.Equal(t, linger.Clean, s.Next(t).Outcome)
		require.NotNil(t, linger.LingerSetFile(s.Listener), "the set waits out its idle life")
		_, srv = pair(t, s) // its client stays silent
		require.NoError(t, srv.Close())
		ci := s.Next(t)
		require.Equal(t, linger.Timeout, ci.Outcome)
		took = append(took, ci.Linger)
		if ci.Linger < linger.SetIdleLife*3/4 {
			return
		}
	}
	t.Errorf("lingers of %v took %v, three times: they ended with the idle set's wait (%v), not their own deadline", timeout, took, linger.SetIdleLife)
}

// At the descriptor limit the owner's Close cannot dup the socket, and
// with no set yet, the set cannot be made either (epoll_create1 needs a
// descriptor too): a close with a set already lingering goes into it by Go's
// own descriptor, and one without lingers in a goroutine of its own. Each
// still ends on its peer's FIN with the right outcome, and nothing leaks.
//
// The limit is RLIMIT_NOFILE, the whole process's: the test lowers it in a
// child process (this test binary again), never in the go test process
// that runs other tests in parallel.
func TestLingerWithoutADescriptorToSpare(t *testing.T) {
	const env, doneMark = "LINGER_TEST_NOFILE_CHILD", "linger-nofile-child-passed"
	if !inChildProcess(t, env, doneMark) {
		return
	}
	// The runtime's poller and a first listener exist before the count.
	warm, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	warm.Close()
	fdsBefore := countFDs(t)

	t.Run("a set lingering already: Go's descriptor", func(t *testing.T) {
		s := listen(t, linger.Config{LingerTimeout: time.Minute})
		linger.LingerInSet(s.Listener)
		c1, s1 := pair(t, s)
		c0, s0 := pair(t, s)
		c2, s2 := pair(t, s)
		// s1 lingers (its client stays silent), so the set stays. s0's
		// linger, queued after s1's, ends on its FIN: once its outcome
		// is reported, the set's goroutine has taken both, so no close
		// is queued, and the next one would be handed over by a dup.
		require.NoError(t, s1.Close())
		require.NoError(t, s0.Close())
		require.NoError(t, c0.Close())
		require.Equal(t, linger.Clean, s.Next(t).Outcome)
		require.Equal(t, 1, linger.Watched(s.Listener))
		require.False(t, linger.GoFD(s1.(*linger.Conn)), "with a descriptor to spare, a close is handed over by a dup")

		atTheLimit(t, func() {
			require.NoError(t, s2.Close())
		})
		assert.Equal(t, 2, linger.Watched(s.Listener), "the close lingers in the epoll set")
		assert.True(t, linger.GoFD(s2.(*linger.Conn)), "the close is handed over by Go's own descriptor")

		_, err := c2.Write([]byte("crossing"))
		require.NoError(t, err)
		require.NoError(t, c2.Close())
		ci := s.Next(t)
		assert.Equal(t, linger.Crossed, ci.Outcome)
		assert.EqualValues(t, 8, ci.Discarded)
		require.NoError(t, c1.Close())
		assert.Equal(t, linger.Clean, s.Next(t).Outcome)
		waitNoLinger(t, s)
	})
	t.Run("no set, no descriptor: a goroutine", func(t *testing.T) {
		s := listen(t, linger.Config{LingerTimeout: time.Minute})
		linger.LingerInSet(s.Listener)
		c, srv := pair(t, s)
		atTheLimit(t, func() {
			require.NoError(t, srv.Close())
		})
		assert.EqualValues(t, 1, s.Stats().Lingering, "the close lingers")
		assert.Zero(t, linger.Watched(s.Listener), "not in an epoll set")
		assert.Nil(t, linger.LingerSetFile(s.Listener), "no epoll set was made")

		_, err := c.Write([]byte("crossing"))
		require.NoError(t, err)
		require.NoError(t, c.Close())
		ci := s.Next(t)
		assert.Equal(t, linger.Crossed, ci.Outcome)
		assert.EqualValues(t, 8, ci.Discarded)
		waitNoLinger(t, s)
	})
	if t.Failed() {
		return
	}
	// Every listener is shut down, every client closed (their cleanups
	// have run): the process holds what it held before.
	assert.Equal(t, fdsBefore, countFDs(t), "descriptors open at the end")
	goleak.VerifyNone(t)
	if !t.Failed() {
		fmt.Println(doneMark)
	}
}

// atTheLimit runs f with the soft RLIMIT_NOFILE lowered to the lowest free
// descriptor number, so that no new descriptor can be opened: the process
// is at its limit. It checks that a dup is refused, and restores the limit
// before it returns, or at cleanup should f fail.
func atTheLimit(t *testing.T, f func()) {
	t.Helper()
	var rl unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &rl))
	saved := rl
	restore := sync.OnceFunc(func() { require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)) })
	t.Cleanup(restore)
	// The lowest free number is what the next descriptor would get.
	free, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Close(free))
	rl.Cur = uint64(free)
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &rl))
	_, err = unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 0)
	if !assert.ErrorIs(t, err, unix.EMFILE, "a dup at the limit") {
		restore()
		t.FailNow()
	}
	f()
	restore()
}

// waitNoLinger waits until nothing lingers on s: the closes' goroutines,
// or the epoll set's, have exited.
func waitNoLinger(t *testing.T, s *testnet.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.True(t, linger.WaitNoLingerGoroutine(ctx, s.Listener), "a linger outlived its close")
	assert.Zero(t, linger.Watched(s.Listener))
	assert.Zero(t, s.Stats().Lingering)
}

// The owner may close the *net.TCPConn it unwrapped with NetConn after
// closing the Conn. When the set watches Go's own descriptor, that frees
// the descriptor's number for the next socket the process opens: the
// linger must end without touching it (no read, no close of the number).
func TestLingerOfASocketClosedUnderIt(t *testing.T) {
	s := listen(t, linger.Config{LingerTimeout: 100 * time.Millisecond})
	linger.HandOverGoFD(s.Listener)
	_, srv := pair(t, s)
	require.NoError(t, srv.Close())
	require.NoError(t, srv.(interface{ NetConn() net.Conn }).NetConn().Close())

	// Sockets opened now may get that number.
	other := testnet.Listen(t)
	c2, s2 := testnet.Pair(t, other)
	_, err := c2.Write([]byte("mine"))
	require.NoError(t, err)

	// Our client sends nothing, so nothing may end the linger but its
	// deadline, or the set's refusal to watch a descriptor that is gone;
	// a read of the number (another socket, or the listener: outcome
	// reset) must not.
	ci := s.Next(t)
	assert.Contains(t, []linger.Outcome{linger.Timeout, linger.Shed}, ci.Outcome)
	assert.Zero(t, ci.Discarded, "bytes taken from another socket")
	buf := make([]byte, 4)
	require.NoError(t, s2.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadFull(s2, buf)
	require.NoError(t, err, "the other socket was read or closed")
	assert.Equal(t, "mine", string(buf))
	_, err = s2.Write([]byte("ok"))
	require.NoError(t, err)
}

// An owner that took a File() of a connection and closed the
// *net.TCPConn under the linger leaves the socket open through its File,
// and the set's watch on it armed: the set cannot remove a watch on a
// descriptor that is gone, and the kernel keeps a watch until the socket's
// last descriptor closes. When the linger has ended (deadline) and bytes
// then arrive, the kernel reports the ended linger's slot, free or
// another's by then. The set must drop that event, not panic (which would
// end the process) nor drain another connection.
func TestStaleEventAfterOwnerClosedUnderTheLinger(t *testing.T) {
	const timeout = 400 * time.Millisecond
	s := listen(t, linger.Config{LingerTimeout: timeout})
	linger.HandOverGoFD(s.Listener)
	clientA, srvA := pair(t, s)
	f, err := srvA.(*linger.Conn).NetConn().(*net.TCPConn).File()
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	require.NoError(t, srvA.Close())
	// C's linger, handed to the set after A's, ends on its FIN: by then
	// the set has taken A over and watches it.
	clientC, srvC := pair(t, s)
	require.NoError(t, srvC.Close())
	_, err = clientC.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, clientC.Close())
	require.Equal(t, linger.Clean, s.Next(t).Outcome)
	require.NoError(t, srvA.(*linger.Conn).NetConn().Close(), "the owner closes Go's descriptor under the linger")

	// B lingers past A's deadline, so the set outlives A. The pause only
	// spaces the two deadlines; what the test waits on are the closes'
	// ends.
	time.Sleep(timeout / 2)
	clientB, srvB := pair(t, s)
	require.NoError(t, srvB.Close())
	ci := s.Next(t)
	assert.Equal(t, linger.Timeout, ci.Outcome, "A ends at its deadline")
	if linger.Watched(s.Listener) != 1 {
		t.Skip("B's linger ended with A's: the machine was too slow to space their deadlines")
	}

	_, err = clientA.Write([]byte("stale"))
	require.NoError(t, err)
	// The bytes reached A's socket, so the kernel has queued the stale
	// event before B's FIN below.
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) {
		_, err = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 10_000)
	}))
	require.NoError(t, err)

	require.NoError(t, clientB.Close())
	ci = s.Next(t)
	assert.Equal(t, linger.Clean, ci.Outcome, "B ends on its FIN, undisturbed")
	assert.Zero(t, ci.Discarded)
}

// OnClose runs on the epoll set's goroutine; closing another connection
// of the same Listener from it must not deadlock.
func TestOnCloseMayCloseAnotherConnection(t *testing.T) {
	var mu sync.Mutex
	var next net.Conn
	s := listen(t, linger.Config{LingerTimeout: time.Minute, OnClose: func(linger.CloseInfo) {
		mu.Lock()
		c := next
		next = nil
		mu.Unlock()
		if c != nil {
			c.Close()
		}
	}})
	linger.LingerInSet(s.Listener)
	c1, s1 := pair(t, s)
	c2, s2 := pair(t, s)
	mu.Lock()
	next = s2
	mu.Unlock()
	require.NoError(t, s1.Close())
	require.NoError(t, c1.Close())
	assert.Equal(t, linger.Clean, s.Next(t).Outcome)
	_, err := c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "OnClose closed the second connection")
	require.NoError(t, c2.Close())
	assert.Equal(t, linger.Clean, s.Next(t).Outcome)
}

// Closes racing Shutdown's cut: each ends, none is left lingering, and
// Shutdown returns on time, whichever side of the cut a close falls.
func TestClosesRacingShutdownCut(t *testing.T) {
	const n, closers = 400, 4
	s := listen(t, linger.Config{LingerTimeout: time.Hour})
	linger.LingerInSet(s.Listener)
	srvs := make([]net.Conn, n)
	for i := range n {
		_, srvs[i] = pair(t, s)
	}
	var wg sync.WaitGroup
	for k := range closers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < n; i += closers {
				srvs[i].Close()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	start := time.Now()
	s.Shutdown(ctx)
	took := time.Since(start)
	wg.Wait()
	assert.Less(t, took, 5*time.Second)
	for range n {
		o := s.Next(t).Outcome
		assert.Contains(t, []linger.Outcome{linger.Aborted, linger.Clean}, o)
	}
	st := s.Stats()
	assert.EqualValues(t, n, st.Closed())
	assert.EqualValues(t, 0, st.Lingering)
	assert.EqualValues(t, 0, st.Open)
}

// The target: 9,000 closes at once, their peers silent, none shed
// at the zero Config (the old bound, 4096, shed 4904 of them). Sized to
// the descriptor limit like the benchmarks.
func TestManySimultaneousClosesAreNotShed(t *testing.T) {
	n := fitConns(t)
	if testing.Short() {
		n = min(n, 5000)
	}
	ln := lingerListen(t, "epoll", linger.Config{LingerTimeout: time.Minute})
	accepted := acceptN(ln, n)
	clients := rawClients(t, ln.Addr(), n)
	cs := <-accepted
	require.Len(t, cs, n)
	before := runtime.NumGoroutine()
	for _, c := range cs {
		require.NoError(t, c.Close())
	}
	st := ln.Stats()
	assert.Zero(t, st.Outcomes[linger.Shed], "shed")
	assert.EqualValues(t, n, st.Lingering+st.Closed())
	assert.LessOrEqual(t, runtime.NumGoroutine()-before, 2, "goroutines added by %d lingering closes", n)
	clients.closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, ln.Shutdown(ctx))
	assert.EqualValues(t, n, ln.Stats().Outcomes[linger.Clean], "every close ended on the peer's FIN; stats %+v", ln.Stats())
}
