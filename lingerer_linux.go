//go:build linux

package linger

// The lingering close without a goroutine per connection, as nginx does it
// (ngx_http_set_lingering_close: the connection stays in the event loop,
// and a timer bounds it). A Listener's lingering TCP closes wait in one
// epoll set of its own, watched by one goroutine that discards what
// arrives with MSG_TRUNC and ends each close on the peer's FIN, its byte
// bound or its deadline. A lingering connection then costs a small entry
// and its kernel socket, instead of a parked goroutine and its stack.
// That matters when many linger at once; while few do, a close lingers in
// a goroutine of its own, which costs the kernel less (see
// maxLingerGoroutines).
//
// How a socket leaves Go's poller without a moment in which it is fully
// closed (a fully closed socket answers the peer's next segment with a
// RST, which is what lingering is for avoiding):
//
//  1. The owner's Close half-closes (the FIN is queued).
//  2. It dups the descriptor (F_DUPFD_CLOEXEC): a second descriptor of
//     the same open socket, non-blocking already (O_NONBLOCK belongs to
//     the open file, which Go set). Should that fail (the descriptor
//     limit), the Go conn is still open, and the set watches Go's own
//     descriptor instead (see below).
//  3. It closes the Go conn. The runtime removes its descriptor from Go's
//     epoll before it closes it (internal/poll's destroy: "Poller may want
//     to unregister fd in readiness notification mechanism, so this must
//     be executed before CloseFunc"), and the close wakes the owner's
//     Reads and Writes that wait and waits until those in flight have
//     returned, as a plain close does, so nothing in Go touches the
//     socket any more; bytes such a Read took are counted (Conn.late).
//     The socket stays open through the dup: close(2) of one descriptor
//     of several does not close it.
//  4. It queues the dup for the set's goroutine (take), which adds it to
//     the epoll set (level-triggered, one-shot: bytes and a FIN that came
//     meanwhile are reported at once, and a socket is re-armed for as long
//     as its linger goes on). The set is made before step 2, so that a
//     close past its Go close always has one (without it, the close
//     lingers in a goroutine of its own). While the
//     goroutine waits for events, the owner adds the socket itself and
//     does not wake it (queueLocked).
//
// Steps 2 and 3 are the owner's, not the goroutine's: one goroutine serves
// every lingering close of the Listener, so it does the least per close,
// and the owner's Close costs a dup more than a plain close. (Measured on
// 9 000 idle connections at Shutdown: with the goroutine doing them, it
// was the bottleneck, and Shutdown took 1.6 times raw's.)
//
// When closes queue up (the goroutine has not yet taken the ones before:
// a Shutdown, a balancer dropping its pool), steps 2 and 3 are skipped:
// the set watches Go's own descriptor, and the goroutine closes the Go
// conn when the linger ends (flagGoFD). The owner's Close is
// then cheaper than a plain close (10–11 µs against 11.5, 9 000 closes at
// once), which is what a burst of closes waits on, but the peer's FIN is
// followed by Go's close, its poller's EPOLL_CTL_DEL and finalizer, up to
// 3.5 µs more than the dup's close(2) (p50, one close at a time): so a close
// that does not queue, where that span is what counts, keeps the dup.
// Measured, 9 000 connections closed at once, runs interleaved in fresh
// network namespaces: the owner's Close 13.0 to 13.4 µs with both forms,
// 16.5 to 21.7 with the dup alone, a raw close 12.1 to 14.0. At Shutdown
// of 9 000 idle keep-alive connections the gain is within this 2-CPU
// machine's noise: median ×1.32 of raw http.Server.Shutdown against ×1.37
// with the dup alone, ten interleaved rounds. Go's descriptor keeps
// its poll descriptor (runtime memory outside the Go heap) until the
// linger ends, as the open connection did, and is used only through its
// RawConn (withGoFD); the dup holds one more descriptor for a moment, so
// at the descriptor limit the Go form is the one that works.
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
// has lingered for setIdleLife (100 ms), or at once when none lingers and
// the Listener is closed, closing the epoll set: an idle Listener holds no
// goroutine and no descriptor, and Shutdown, which waits for every
// lingering close, finds it gone. Under connection churn (a connection per
// request) each linger lasts a round trip and the set empties between
// many closes: setIdleLife spares each of them a new set (see there; the
// figures are in docs/design.md, "Cost of a close under churn").

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxLingerGoroutines is how many closes may linger in goroutines of
// their own before the next TCP close goes to the epoll set. A few at a
// time cost less there: the goroutine's Read waits on Go's poller, where
// the socket is registered already, so the close needs no dup, no
// EPOLL_CTL_ADD and no second close. Under connection churn, where every
// request pays a close and a handful linger at once, that is most of what
// linger's close costs the kernel besides the floor (bench/cost/run
// -kernel), and the peer's FIN ends the close sooner
// (BenchmarkFINToClose; the figures are in docs/design.md, "Cost of a
// close under churn"). Many at a time, as at a Shutdown or when a
// balancer drops its pool, are what the set is for: a parked goroutine
// and its stack (about 4 KB) per close against an entry of the set (about
// 500 bytes). The count is read, not reserved, so closes racing at the
// bound may pass it by as many as race.
const maxLingerGoroutines = 64

// lingerer holds a Listener's lingering TCP closes off Go's poller.
type lingerer struct {
	setOnly atomic.Bool // tests: every TCP close lingers in the set
	mu      sync.Mutex
	set     *lingerSet   // nil while nothing lingers here
	watched atomic.Int64 // closes handed to the set and not ended, uncounted before OnClose (for tests)
	queued  atomic.Int64 // closes handed to the set and not yet taken by its goroutine
}

// lingerSet is one epoll set and the goroutine that watches it, from the
// first lingering close until none is left.
type lingerSet struct {
	l    *Listener
	epfd int
	f    *os.File // epfd, registered in Go's poller
	rc   syscall.RawConn

	// Guarded by lingerer.mu.
	incoming []handover // closes for the goroutine to take over
	cut      bool       // Shutdown cut lingers: look for flagCut
	// deadline is the wait's deadline as the goroutine last armed it
	// (monotonic), so that it is not armed again unchanged; 0 once a
	// wake or the deadline itself has put it in the past.
	deadline time.Duration
	// arriving: takes between making sure of the set and queueing their
	// close (a dup and a Go close apart); the set does not exit meanwhile.
	arriving int
	// parked: the goroutine waits in wait and touches none of its own
	// fields below until it holds the lock again; a take adopts its
	// close itself meanwhile (queueLocked).
	parked bool

	// The goroutine's own.
	queue lingerQueue    // by deadline
	slots []*lingerEntry // by the slot each epoll event names; nil: free
	free  []int32        // free slots
	spare []*lingerEntry // entries of ended lingers, for the next ones
	gens  int32          // adopted so far, mod 2^32: each entry's gen
	// wait's: the events epoll_wait fills, how many, and the function
	// its RawConn.Read runs, made once per set, not per wait.
	events  []unix.EpollEvent
	nevents int
	poll    func(fd uintptr) bool
}

// handover is a close on its way into the set: the owner has half-closed
// it, and either closed its Go conn, the socket living on through fd, a
// dup, or left the Go conn open (flagGoFD; fd is -1).
type handover struct {
	c     *Conn
	info  CloseInfo
	start time.Duration
	fd    int
}

// lingerEntry is one lingering close: what its CloseInfo needs, and the
// dup of its socket (-1 when it watches Go's own, flagGoFD). The
// addresses come from the Conn at the end.
type lingerEntry struct {
	c         *Conn
	start     time.Duration // the owner's Close; the deadline is start + LingerTimeout
	idle      time.Duration
	discarded int64
	unread    int32
	fd        int32
	prev      *lingerEntry // in the queue
	next      *lingerEntry
	slot      int32 // in slots, and the epoll event's data
	gen       int32 // in the epoll event's data too: which entry of the slot
}

// lingerQueue is the set's entries in the order of their deadlines, a
// list linked through them. All share LingerTimeout, so that is the order
// of their starts, which is almost the order in which they arrive: push
// looks for its place from the back, past the few entries whose owners
// measured their start later but handed them over first.
type lingerQueue struct{ head, tail *lingerEntry }

func (q *lingerQueue) push(e *lingerEntry) {
	p := q.tail
	for p != nil && p.start > e.start {
		p = p.prev
	}
	e.prev = p
	if p == nil {
		e.next, q.head = q.head, e
	} else {
		e.next, p.next = p.next, e
	}
	if e.next == nil {
		q.tail = e
	} else {
		e.next.prev = e
	}
}

func (q *lingerQueue) remove(e *lingerEntry) {
	if e.prev == nil {
		q.head = e.next
	} else {
		e.prev.next = e.next
	}
	if e.next == nil {
		q.tail = e.prev
	} else {
		e.next.prev = e.prev
	}
	e.prev, e.next = nil, nil
}

// take hands the lingering close of a TCP connection, half-closed by the
// owner's Close, to the Listener's epoll set, and reports whether it did;
// if not (the connection is not TCP, or the kernel refuses the set), the
// caller lingers in a goroutine of its own. The owner's Close moves the
// socket out of Go's poller through a dup (see the top of this file);
// when closes are queued already, or the dup is refused (the descriptor
// limit), it hands over Go's own descriptor instead. The set's goroutine
// watches it from then on.
func (lg *lingerer) take(c *Conn, info CloseInfo, start time.Duration, rc syscall.RawConn) bool {
	if _, ok := c.conn.(*net.TCPConn); !ok || rc == nil {
		return false
	}
	if !lg.setOnly.Load() && c.l.lingerGoroutines.Load() < maxLingerGoroutines {
		return false
	}
	lg.mu.Lock()
	s, ok := lg.setLocked(c.l)
	if !ok {
		lg.mu.Unlock()
		return false
	}
	if lg.queued.Load() > 0 {
		c.setFlag(flagGoFD)
		c.wakeOwner()
		lg.queueLocked(handover{c, info, start, -1})
		lg.mu.Unlock()
		return true
	}
	// The set is made before the dup and the Go close, and does not exit
	// while a take is arriving: were it made after, a descriptor the Go
	// close freed could go to a concurrent Accept at the limit, and past
	// the Go close there is no goroutine to fall back to.
	s.arriving++
	lg.mu.Unlock()

	dup := c.fdOp(rc, dupOf)
	if dup >= 0 {
		// Go's descriptor leaves Go's poller and closes, once the owner's
		// Reads and Writes in flight have returned (the close wakes those
		// that wait), as a plain close waits for them; the socket lives on
		// through dup. This is the owner's cost (a plain close pays the
		// same wait), so that the set's goroutine, which serves every
		// close of the Listener, does the least per close.
		c.conn.Close()
	} else {
		c.setFlag(flagGoFD) // the dup was refused (the descriptor limit)
		c.wakeOwner()
	}
	lg.mu.Lock()
	s.arriving--
	lg.queueLocked(handover{c, info, start, dup})
	lg.mu.Unlock()
	return true
}

// setLocked returns the Listener's set, made now if it has none, or false
// if the kernel refuses to make one (the descriptor limit, memory).
func (lg *lingerer) setLocked(l *Listener) (*lingerSet, bool) {
	if lg.set == nil {
		set, err := newLingerSet(l)
		if err != nil {
			return nil, false
		}
		lg.set = set
		l.goroutineStarted()
		go lg.watch(set)
	}
	return lg.set, true
}

// queueLocked queues a close for the set's goroutine.
//
// While the goroutine waits (parked), the close is adopted here instead,
// and the goroutine is not woken: the socket's watch wakes it when its
// peer's FIN comes, and its deadline, LingerTimeout after its start, is
// no earlier than the one the goroutine waits for, of a close that
// started before (or its idle life's end, which then re-arms). Under
// connection churn this spares most closes a wake-up of the goroutine,
// and often of a thread to run it. Should the kernel refuse the watch,
// the close is queued instead, and the goroutine sheds it (adopt): shed
// reports the close, which must not be done under the lock.
func (lg *lingerer) queueLocked(h handover) {
	s := lg.set
	lg.watched.Add(1)
	if s.parked && s.enter(h) == nil {
		if h.c.load().has(flagCut) {
			s.cut = true
			s.wakeLocked()
		} else if s.deadline == 0 || h.start+s.l.cfg.LingerTimeout < s.deadline {
			s.wakeLocked() // a deadline earlier than the one armed
		}
		return
	}
	lg.queued.Add(1)
	s.incoming = append(s.incoming, h)
	if len(s.incoming) == 1 {
		s.wakeLocked()
	}
}

// closeSocket closes a lingering close's descriptor: the dup, or the Go
// conn whose descriptor it watched.
func closeSocket(c *Conn, fd int) {
	if c.load().has(flagGoFD) {
		c.conn.Close()
	} else {
		unix.Close(fd)
	}
}

// shed closes a lingering close's socket at once, outcome Shed: the kernel
// refused to watch it (err, reported once), or its owner closed Go's
// descriptor under us (net.ErrClosed, see withGoFD).
func (l *Listener) shed(c *Conn, info CloseInfo, start time.Duration, fd int, err error) {
	closeSocket(c, fd)
	l.watchRefused(err)
	info.Discarded = c.late.Load()
	c.finish(info, start, Shed)
	l.stats.lingering.Add(-1)
}

// watchRefused reports, once, that the kernel refused to watch a
// lingering close, which was shed; not when the owner closed Go's
// descriptor under us (net.ErrClosed): that is no fault of the kernel's.
func (l *Listener) watchRefused(err error) {
	if !errors.Is(err, net.ErrClosed) {
		l.watchErr.Do(func() {
			l.logf("linger: cannot watch a lingering close, closing it at once (outcome shed): %v", err)
		})
	}
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
	return &lingerSet{l: l, epfd: epfd, f: f, rc: rc}, nil
}

// armLocked sets the wait's deadline to d (monotonic), unless it is set
// there already.
func (s *lingerSet) armLocked(d time.Duration) {
	if d != s.deadline {
		s.f.SetReadDeadline(time.Now().Add(d - monotonic()))
		s.deadline = d
	}
}

// wakeLocked makes the goroutine's wait return at once.
func (s *lingerSet) wakeLocked() {
	s.f.SetReadDeadline(aLongTimeAgo)
	s.deadline = 0
}

// setIdleLife is how long a set with nothing left to watch waits for the
// next lingering close before its goroutine exits and its descriptor
// closes (at once when the Listener is closed). Under connection churn (a
// connection per request: health checks, HTTP/1.0 clients) each linger
// lasts a round trip and the set empties between many closes; made anew
// each time, a set costs an epoll_create1, its registration in Go's
// poller, a goroutine, the growth of that goroutine's stack, and their
// undoing. A Listener whose closes are further apart than this holds,
// once they end, no goroutine and no descriptor.
const setIdleLife = 100 * time.Millisecond

// listenerClosed lets an idle set's goroutine exit at once, not after
// setIdleLife: the Listener is closed, and Shutdown waits for it.
func (lg *lingerer) listenerClosed() {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if lg.set != nil {
		lg.set.wakeLocked()
	}
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
	// fired: it ended on its one-shot event, which disarmed its watch.
	fired bool
	// unwatched: the kernel refused to re-arm its watch (err says why).
	unwatched bool
}

// watch is the set's goroutine: it takes over the closes handed to it,
// waits for their sockets and the earliest deadline, discards, and ends
// lingers, until none is left.
func (lg *lingerer) watch(s *lingerSet) {
	l := s.l
	defer l.goroutineDone()
	var in []handover
	var over []ended
	var idleSince time.Duration // when the set last emptied, while it is empty
	expired := false            // the last wait ended at its deadline or a wake
	for {
		lg.mu.Lock()
		in, s.incoming = s.incoming, in[:0]
		lg.queued.Add(-int64(len(in)))
		cut := s.cut
		s.cut = false
		lg.mu.Unlock()
		if len(in) > 0 {
			idleSince = 0
		}
		for i := range in {
			// A close cut before it was handed over: its cut() found
			// nothing to wake.
			cut = s.adopt(in[i]) || cut
		}
		clear(in) // let the Conns go
		if cap(in) > 64 {
			in = nil // a burst's worth, 100 bytes a close: not kept
		}

		over = s.due(over[:0], monotonic(), cut)
		if len(over) > 0 {
			s.end(over)
			clear(over)
			continue
		}
		lg.mu.Lock()
		if len(s.incoming) > 0 || s.cut {
			lg.mu.Unlock()
			continue
		}
		// Armed under the lock, so a take or cut after it, which sets
		// the deadline in the past, is never overwritten.
		if expired {
			s.deadline = 0
		}
		if s.queue.head != nil {
			idleSince = 0
			s.armLocked(s.queue.head.start + l.cfg.LingerTimeout)
		} else {
			now := monotonic()
			if idleSince == 0 {
				idleSince = now
			}
			over := now-idleSince >= setIdleLife || l.lload().phase() != lAccepting
			if over && s.arriving > 0 {
				idleSince = now // a take is on its way: wait for it
			} else if over {
				lg.set = nil
				lg.mu.Unlock()
				s.f.Close() // and with it the epoll set
				return
			}
			s.armLocked(idleSince + setIdleLife)
		}
		s.parked = true
		lg.mu.Unlock()

		events, err := s.wait()
		lg.mu.Lock()
		s.parked = false // the entries are the goroutine's again
		lg.mu.Unlock()
		expired = err != nil
		if err != nil {
			continue // a deadline, or a wake: see above
		}
		over = s.ready(events, over)
		s.end(over)
		clear(over)
	}
}

// ready discards what each socket of events holds, and appends to over
// the lingers that are over, removed from the set; it re-arms the others
// (one-shot: again for the next bytes). A linger whose re-arm the kernel
// refuses is over too (unwatched): left as it is, it would wait, deaf to
// its peer's FIN, until its deadline.
//
// An event may name an entry that is gone: its linger ended by deadline
// or Shutdown's cut while its watch stayed armed, because the EPOLL_CTL_DEL
// in end could not reach the socket (the owner had closed Go's descriptor
// under us, see withGoFD) and the socket lives on through a descriptor of
// the owner's (File()), so the kernel keeps the watch. Its slot is free
// then, or another entry's: the generation in the event tells, and such an
// event is dropped. One-shot, it comes once.
func (s *lingerSet) ready(events []unix.EpollEvent, over []ended) []ended {
	limit := s.l.cfg.LingerBytes
	for i := range events {
		e := s.entryOf(&events[i])
		if e == nil {
			continue
		}
		if done, err := e.discard(limit); done {
			s.remove(e)
			over = append(over, ended{e: e, err: err, fired: true})
		} else if err := s.arm(e, unix.EPOLL_CTL_MOD); err != nil {
			s.remove(e)
			over = append(over, ended{e: e, err: err, fired: true, unwatched: true})
		}
	}
	return over
}

// entryOf returns the entry ev names, or nil if it is gone.
func (s *lingerSet) entryOf(ev *unix.EpollEvent) *lingerEntry {
	if ev.Fd < 0 || int(ev.Fd) >= len(s.slots) {
		return nil
	}
	if e := s.slots[ev.Fd]; e != nil && e.gen == ev.Pad {
		return e
	}
	return nil
}

// adopt adds a handed-over close's socket to the set (arm): bytes and a
// FIN that came meanwhile are reported at once. Should the
// kernel refuse the watch (fs.epoll.max_user_watches, memory), the socket
// closes at once, outcome Shed, as a close past MaxLingering does. It
// reports whether Shutdown has cut the close already.
func (s *lingerSet) adopt(h handover) (cut bool) {
	if err := s.enter(h); err != nil {
		s.l.lingerer.watched.Add(-1) // before OnClose, for tests that read it then
		s.l.shed(h.c, h.info, h.start, h.fd, err)
		return false
	}
	return h.c.load().has(flagCut)
}

// enter makes h an entry of the set, watched (arm) and queued by its
// deadline, or returns the kernel's refusal, the set unchanged but for
// its generation count. The goroutine calls it, or a take while the
// goroutine is parked.
func (s *lingerSet) enter(h handover) error {
	s.gens++
	e := s.newEntry()
	*e = lingerEntry{c: h.c, start: h.start, idle: h.info.Idle, unread: int32(h.info.Unread), fd: int32(h.fd), slot: s.takeSlot(), gen: s.gens}
	if err := s.arm(e, unix.EPOLL_CTL_ADD); err != nil {
		s.free = append(s.free, e.slot)
		s.spareEntry(e)
		return err
	}
	s.slots[e.slot] = e
	s.queue.push(e)
	return nil
}

// arm watches e's socket for one event (EPOLLONESHOT): a linger that
// ends on it, as most do at the peer's FIN, then needs no EPOLL_CTL_DEL.
// The event names the slot and the entry's generation, not the
// descriptor: a descriptor number is reused as soon as it is closed, and
// a slot as soon as its linger ends (see ready).
func (s *lingerSet) arm(e *lingerEntry, op int) error {
	if e.goFD() {
		err := net.ErrClosed
		e.withGoFD(func(fd int) { err = s.armFD(e, op, fd) })
		return err
	}
	return s.armFD(e, op, int(e.fd))
}

func (s *lingerSet) armFD(e *lingerEntry, op, fd int) error {
	// Fd and Pad are the two halves of epoll_data, returned as given.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: e.slot, Pad: e.gen}
	return unix.EpollCtl(s.epfd, op, fd, &ev)
}

// goFD reports whether e watches Go's own descriptor, not a dup.
func (e *lingerEntry) goFD() bool { return e.c.load().has(flagGoFD) }

// withGoFD runs f on Go's own descriptor of e while the Go conn holds it
// (RawConn.Control keeps it from closing meanwhile), and reports whether
// it could. A dup is ours alone; Go's descriptor is not: the owner may
// close the *net.TCPConn it unwrapped with NetConn behind our back, and
// the number then names whatever the process opens next, so it is never
// used outside Control.
func (e *lingerEntry) withGoFD(f func(fd int)) bool {
	rc := e.c.rawConn()
	return rc != nil && rc.Control(func(fd uintptr) { f(int(fd)) }) == nil
}

// due removes the lingers whose deadline has passed and, if Shutdown has
// cut lingers, those it cut, and appends them to over.
func (s *lingerSet) due(over []ended, now time.Duration, cut bool) []ended {
	timeout := s.l.cfg.LingerTimeout
	for e := s.queue.head; e != nil && e.start+timeout <= now; e = s.queue.head {
		s.remove(e)
		over = append(over, ended{e: e, err: os.ErrDeadlineExceeded})
	}
	if cut {
		for e := s.queue.head; e != nil; {
			next := e.next
			if e.c.load().has(flagCut) {
				s.remove(e)
				over = append(over, ended{e: e, err: os.ErrDeadlineExceeded})
			}
			e = next
		}
	}
	return over
}

func (s *lingerSet) remove(e *lingerEntry) {
	s.queue.remove(e)
	s.slots[e.slot] = nil
	s.free = append(s.free, e.slot)
}

// newEntry returns an entry to fill: a spare one, or a new one. Under
// connection churn, where every request ends in a linger, this spares
// each an allocation.
func (s *lingerSet) newEntry() *lingerEntry {
	if n := len(s.spare); n > 0 {
		e := s.spare[n-1]
		s.spare = s.spare[:n-1]
		return e
	}
	return new(lingerEntry)
}

// maxSpareEntries bounds the entries a set keeps for reuse: a burst's
// worth is not kept.
const maxSpareEntries = 64

// spareEntry keeps e, whose linger has ended and been reported, for reuse.
// Events still naming its slot are told apart by the generation enter
// gives it anew.
func (s *lingerSet) spareEntry(e *lingerEntry) {
	if len(s.spare) < maxSpareEntries {
		*e = lingerEntry{}
		s.spare = append(s.spare, e)
	}
}

// takeSlot returns a free slot.
func (s *lingerSet) takeSlot() int32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		return i
	}
	s.slots = append(s.slots, nil)
	return int32(len(s.slots) - 1)
}

// wait parks in Go's poller until a socket of the set is ready, then
// returns its events; or it returns the deadline's error. epoll_wait with
// a zero timeout never blocks: the parking is the runtime's. Go's poller
// watches the epoll set edge-triggered, so wait parks only after
// epoll_wait has found nothing, and a socket re-armed while it still
// holds bytes is reported again.
func (s *lingerSet) wait() ([]unix.EpollEvent, error) {
	if s.poll == nil {
		s.events = make([]unix.EpollEvent, 256)
		s.poll = func(fd uintptr) bool {
			for {
				n, err := unix.EpollWait(int(fd), s.events, 0)
				if err == unix.EINTR {
					continue
				}
				s.nevents = max(n, 0)
				return s.nevents > 0
			}
		}
	}
	s.nevents = 0
	err := s.rc.Read(s.poll)
	return s.events[:s.nevents], err
}

// discardQuantum bounds the recv calls one ready socket gets per round, so
// a flooding peer cannot hold up the others' FINs; re-armed, it is
// reported again at once.
const discardQuantum = 4

// discard drops what the socket holds, without copying it (MSG_TRUNC, as
// discardTCP), and reports whether the linger is over and why.
func (e *lingerEntry) discard(limit int64) (bool, error) {
	if e.goFD() {
		done, err := true, net.ErrClosed // unless Go's conn still holds it (see withGoFD)
		e.withGoFD(func(fd int) { done, err = e.discardFD(fd, limit) })
		return done, err
	}
	return e.discardFD(int(e.fd), limit)
}

func (e *lingerEntry) discardFD(fd int, limit int64) (bool, error) {
	for range discardQuantum {
		r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, uintptr(min(limit+1-e.discarded, 1<<20)),
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
		// A watch still armed is deleted before the close: were the
		// socket open elsewhere too (a File() the owner took), closing
		// our descriptor would not remove it from the set.
		if !x.fired {
			if !e.goFD() {
				unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, int(e.fd), nil)
			} else {
				e.withGoFD(func(fd int) { unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, fd, nil) })
			}
		}
		closeSocket(c, int(e.fd))
		info := CloseInfo{
			LocalAddr:  c.conn.LocalAddr(),
			RemoteAddr: c.conn.RemoteAddr(),
			Idle:       e.idle,
			Unread:     int(e.unread),
			// The owner's racing Read's bytes (see Conn.linger).
			Discarded: e.discarded + c.late.Load(),
		}
		o := lingerOutcome(info, l.cfg.LingerBytes, x.err, c.load())
		if x.unwatched {
			// Closed before its peer's FIN, as a close the kernel refused
			// to watch at all is (adopt).
			o = Shed
			l.watchRefused(x.err)
		}
		l.lingerer.watched.Add(-1) // before OnClose, for tests that read it then
		c.finish(info, e.start, o)
		l.stats.lingering.Add(-1)
		s.spareEntry(e)
	}
}

// defaultMaxLingering is half the descriptors the process may open
// (RLIMIT_NOFILE's soft limit, which Go raises to the hard limit at
// start-up), at least minMaxLingering and at most maxDefaultLingering:
// see minMaxLingering for why.
func defaultMaxLingering() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return minMaxLingering
	}
	return maxLingeringFor(rl.Cur)
}

// maxLingeringFor is the default MaxLingering for a descriptor limit.
func maxLingeringFor(limit uint64) int {
	return int(max(minMaxLingering, min(limit/2, maxDefaultLingering)))
}
