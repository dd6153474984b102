//go:build linux

package linger

// The lingering close without a goroutine per connection, as nginx does it
// (ngx_http_set_lingering_close: the connection stays in the event loop,
// and a timer bounds it). A Listener's lingering TCP closes wait in one
// epoll set of its own, watched by one goroutine that discards what
// arrives with MSG_TRUNC and ends each close on the peer's FIN, its byte
// bound or its deadline. A lingering connection then costs a small entry
// and its kernel socket, instead of a parked goroutine and its stack.
//
// How a socket leaves Go's poller without a moment in which it is fully
// closed (a fully closed socket answers the peer's next segment with a
// RST, which is what lingering is for avoiding):
//
//  1. The owner's Close has half-closed (the FIN is queued) and set a past
//     deadline, which wakes its Reads and Writes.
//  2. We dup the descriptor (F_DUPFD_CLOEXEC): a second descriptor of the
//     same open socket. The dup is non-blocking already (O_NONBLOCK belongs
//     to the open file, which Go set).
//  3. We close the Go conn. The runtime removes its descriptor from Go's
//     epoll before it closes it (internal/poll's destroy: "Poller may want
//     to unregister fd in readiness notification mechanism, so this must
//     be executed before CloseFunc"), and the close waits until the
//     owner's Reads and Writes in flight have returned, so nothing in Go
//     touches the socket any more. The socket stays open through the dup:
//     close(2) of one descriptor of several does not close the socket.
//  4. We add the dup to our epoll set, level-triggered: bytes that came
//     meanwhile are reported at once.
//
// The watching goroutine holds no OS thread while it waits: the epoll
// set's own descriptor is readable when one of its sockets is, so it is
// registered in Go's poller like a socket (os.NewFile on a non-blocking
// descriptor), and the goroutine parks in a Read on it until a socket is
// ready or the earliest linger's deadline, which is that Read's deadline:
// one runtime timer for the whole set, not one per connection. A new
// registration that needs an earlier wake, and Shutdown's cut, wake it by
// setting that deadline in the past. Should the kernel ever lose the
// nested epoll's wake-up, the deadline still comes, and events are read
// before deadlines are expired, so an outcome is delayed, never changed.
//
// The goroutine starts with the first lingering close and exits when none
// is left, closing the epoll set: an idle Listener holds no goroutine and
// no descriptor, and Shutdown, which waits for every lingering close,
// finds it gone. The price is an epoll_create and a goroutine start per
// burst of closes, a few microseconds, against a handshake and a close.

import (
	"container/heap"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lingerer holds a Listener's lingering TCP closes off Go's poller.
type lingerer struct {
	mu      sync.Mutex
	set     *lingerSet // nil while nothing lingers here
	addFail sync.Once  // a failed EPOLL_CTL_ADD, reported once
}

// lingerSet is one epoll set and the goroutine that watches it, from the
// first lingering close until none is left.
type lingerSet struct {
	l    *Listener
	epfd int
	f    *os.File // epfd, registered in Go's poller
	rc   syscall.RawConn

	// Guarded by lingerer.mu; the entries' own fields belong to the
	// watching goroutine once added.
	byFD   map[int32]*lingerEntry
	queue  lingerQueue   // by deadline: all share LingerTimeout, so by start
	adding int           // closes between reserve and add: keep the set
	armed  time.Duration // the deadline f's Read is armed with; 0 for none
	cut    bool          // Shutdown cut lingers: look for flagCut
}

// lingerEntry is one lingering close: what its CloseInfo needs, and the
// dup of its socket. The addresses come from the Conn at the end.
type lingerEntry struct {
	c         *Conn
	start     time.Duration // the owner's Close; the deadline is start + LingerTimeout
	idle      time.Duration
	discarded int64
	unread    int32
	fd        int32
	index     int32 // in the queue
}

// lingerQueue is a min-heap of entries by start (container/heap).
type lingerQueue []*lingerEntry

func (q lingerQueue) Len() int           { return len(q) }
func (q lingerQueue) Less(i, j int) bool { return q[i].start < q[j].start }
func (q lingerQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = int32(i), int32(j)
}
func (q *lingerQueue) Push(x any) {
	e := x.(*lingerEntry)
	e.index = int32(len(*q))
	*q = append(*q, e)
}
func (q *lingerQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

// take moves the lingering close of a TCP connection, half-closed by the
// owner's Close, into the Listener's epoll set, and reports whether it
// did. If not (the connection is not TCP, or no descriptor is left for
// the dup or the epoll set), the caller lingers in a goroutine of its own,
// as on other platforms; c.conn is still open then.
func (lg *lingerer) take(c *Conn, info CloseInfo, start time.Duration, rc syscall.RawConn) bool {
	l := c.l
	if _, ok := c.conn.(*net.TCPConn); !ok || rc == nil || l.goroutineLinger {
		return false
	}
	dup := -1
	var err error
	if cerr := rc.Control(func(fd uintptr) { dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil || err != nil {
		return false
	}
	set, err := lg.reserve(l)
	if err != nil {
		unix.Close(dup)
		return false
	}
	// Go's descriptor leaves Go's poller and closes; the socket lives on
	// through dup (see the top of this file).
	c.conn.Close()

	e := &lingerEntry{c: c, start: start, idle: info.Idle, unread: int32(info.Unread), fd: int32(dup)}
	lg.mu.Lock()
	set.adding--
	err = set.addLocked(e)
	lg.mu.Unlock()
	if err != nil {
		// The kernel would not watch one more descriptor (ENOMEM, or
		// fs.epoll.max_user_watches): close at once, as past MaxLingering.
		lg.addFail.Do(func() {
			l.logf("linger: a lingering close could not be watched (epoll_ctl: %v): closed at once, outcome shed (reported once)", err)
		})
		unix.Close(dup)
		c.finish(info, start, Shed)
		l.stats.lingering.Add(-1)
	}
	return true
}

// reserve returns the epoll set, creating it and starting its goroutine
// if nothing lingers yet, and keeps it until the matching addLocked.
func (lg *lingerer) reserve(l *Listener) (*lingerSet, error) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if lg.set == nil {
		set, err := newLingerSet(l)
		if err != nil {
			return nil, err
		}
		lg.set = set
		l.goroutineStarted()
		go lg.watch(set)
	}
	lg.set.adding++
	return lg.set, nil
}

func newLingerSet(l *Listener) (*lingerSet, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Non-blocking, so os.NewFile registers it in Go's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "linger epoll")
	rc, err := f.SyscallConn()
	if err == nil {
		// A deadline is refused if the runtime could not poll it.
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("epoll set not pollable: %w", err)
	}
	return &lingerSet{l: l, epfd: epfd, f: f, rc: rc, byFD: make(map[int32]*lingerEntry)}, nil
}

// addLocked starts watching e and wakes the goroutine if e's deadline
// comes before the one it waits for.
func (s *lingerSet) addLocked(e *lingerEntry) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: e.fd}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, int(e.fd), &ev); err != nil {
		return err
	}
	s.byFD[e.fd] = e
	heap.Push(&s.queue, e)
	if s.cut || e.c.load().has(flagCut) {
		// Shutdown's cut came while this close was on its way here.
		s.cut = true
		s.wakeLocked()
	} else if deadline := e.start + s.l.cfg.LingerTimeout; s.armed == 0 || deadline < s.armed {
		s.wakeLocked()
	}
	return nil
}

// wakeLocked makes the goroutine's wait return at once.
func (s *lingerSet) wakeLocked() {
	s.armed = -1
	s.f.SetReadDeadline(aLongTimeAgo)
}

// cut wakes the goroutine to end the lingers Shutdown has cut (flagCut).
func (lg *lingerer) cut() {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if lg.set != nil {
		lg.set.cut = true
		lg.set.wakeLocked()
	}
}

// ended is a linger that is over, and why: io.EOF at the peer's FIN, nil
// past LingerBytes, os.ErrDeadlineExceeded at its deadline or Shutdown's
// cut, or the socket's error.
type ended struct {
	e   *lingerEntry
	err error
}

// watch is the set's goroutine: it waits for the sockets and the earliest
// deadline, discards, and ends lingers, until none is left.
func (lg *lingerer) watch(s *lingerSet) {
	l := s.l
	defer l.goroutineDone()
	events := make([]unix.EpollEvent, 256)
	var over []ended
	var ready []*lingerEntry
	for {
		lg.mu.Lock()
		over = s.dueLocked(over[:0], monotonic())
		if len(over) == 0 && len(s.queue) == 0 && s.adding == 0 {
			lg.set = nil
			lg.mu.Unlock()
			s.f.Close() // and with it the epoll set
			return
		}
		if len(over) == 0 {
			s.armLocked()
		}
		lg.mu.Unlock()
		if len(over) > 0 {
			s.end(over)
			clear(over) // let the Conns go
			continue
		}

		n, err := s.wait(events)
		if err != nil || n == 0 {
			continue // a deadline, or a wake: see above
		}
		ready = ready[:0]
		lg.mu.Lock()
		for _, ev := range events[:n] {
			if e := s.byFD[ev.Fd]; e != nil {
				ready = append(ready, e)
			}
		}
		lg.mu.Unlock()
		for _, e := range ready {
			if done, err := e.discard(l.cfg.LingerBytes); done {
				over = append(over, ended{e, err})
			}
		}
		if len(over) > 0 {
			lg.mu.Lock()
			for _, x := range over {
				s.removeLocked(x.e)
			}
			lg.mu.Unlock()
			s.end(over)
			clear(over)
		}
		clear(ready)
	}
}

// dueLocked removes the lingers whose deadline has passed, and those
// Shutdown cut, and appends them to over.
func (s *lingerSet) dueLocked(over []ended, now time.Duration) []ended {
	timeout := s.l.cfg.LingerTimeout
	for len(s.queue) > 0 && s.queue[0].start+timeout <= now {
		e := s.queue[0]
		s.removeLocked(e)
		over = append(over, ended{e, os.ErrDeadlineExceeded})
	}
	if s.cut {
		s.cut = false
		n := len(over)
		for _, e := range s.queue {
			if e.c.load().has(flagCut) {
				over = append(over, ended{e, os.ErrDeadlineExceeded})
			}
		}
		for _, x := range over[n:] { // removing reorders the queue: not while ranging over it
			s.removeLocked(x.e)
		}
	}
	return over
}

func (s *lingerSet) removeLocked(e *lingerEntry) {
	heap.Remove(&s.queue, int(e.index))
	delete(s.byFD, e.fd)
}

// armLocked sets the wait's deadline to the earliest linger's.
func (s *lingerSet) armLocked() {
	if len(s.queue) == 0 {
		// Only closes on their way in (adding): their addLocked wakes us.
		s.armed = 0
		s.f.SetReadDeadline(time.Time{})
		return
	}
	s.armed = s.queue[0].start + s.l.cfg.LingerTimeout
	s.f.SetReadDeadline(time.Now().Add(s.armed - monotonic()))
}

// wait parks in Go's poller until a socket of the set is ready, then
// returns its events; or it returns the deadline's error. epoll_wait with
// a zero timeout never blocks: the parking is the runtime's. Go's poller
// watches the epoll set edge-triggered, so wait parks only after
// epoll_wait has found nothing, and level-triggered sockets that still
// hold bytes are reported again.
func (s *lingerSet) wait(events []unix.EpollEvent) (int, error) {
	n := 0
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			var err error
			n, err = unix.EpollWait(int(fd), events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				n = 0
			}
			return n > 0
		}
	})
	return n, err
}

// discardQuantum bounds the recv calls one ready socket gets per round, so
// a flooding peer cannot hold up the others' FINs; level-triggered epoll
// reports it again.
const discardQuantum = 4

// discard drops what the socket holds, without copying it (MSG_TRUNC, as
// discardTCP), and reports whether the linger is over and why.
func (e *lingerEntry) discard(limit int64) (bool, error) {
	for range discardQuantum {
		r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(e.fd), 0, uintptr(min(limit+1-e.discarded, 1<<20)),
			unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			if r == 0 {
				return true, io.EOF
			}
			e.discarded += int64(r)
			if e.discarded > limit {
				return true, nil
			}
		case unix.EINTR:
		case unix.EAGAIN:
			return false, nil
		default:
			return true, errno
		}
	}
	return false, nil
}

// end closes the sockets of lingers that are over, removed from the set,
// and reports their outcomes.
func (s *lingerSet) end(over []ended) {
	l := s.l
	for _, x := range over {
		e, c := x.e, x.e.c
		// Deleted before the close: were the socket open elsewhere too
		// (a File() the owner took), closing our descriptor would not
		// remove it from the set.
		unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, int(e.fd), nil)
		unix.Close(int(e.fd))
		info := CloseInfo{
			LocalAddr:  c.conn.LocalAddr(),
			RemoteAddr: c.conn.RemoteAddr(),
			Idle:       e.idle,
			Unread:     int(e.unread),
			// The owner's racing Read's bytes (see Conn.linger).
			Discarded: e.discarded + c.late.Load(),
		}
		c.finish(info, e.start, lingerOutcome(info, l.cfg.LingerBytes, x.err, c.load().has(flagCut)))
		l.stats.lingering.Add(-1)
	}
}
