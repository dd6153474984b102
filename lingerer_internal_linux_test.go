//go:build linux

package linger

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// manualSet gives l an epoll set that no goroutine watches, so a test
// drives it: closes queue in its incoming list, as they would for the
// goroutine.
func manualSet(t *testing.T, l *Listener) *lingerSet {
	t.Helper()
	s, err := newLingerSet(l)
	require.NoError(t, err)
	l.lingerer.mu.Lock()
	l.lingerer.set = s
	l.lingerer.mu.Unlock()
	t.Cleanup(func() {
		// End what still lingers here, as at its deadline, so Shutdown
		// finds nothing to wait for.
		s.end(s.due(nil, time.Duration(1<<62), false))
		l.lingerer.mu.Lock()
		l.lingerer.set = nil
		l.lingerer.mu.Unlock()
		s.f.Close()
	})
	return s
}

// lingerIn closes the server end of a new connection to l into its manual
// set and adopts it there, as the set's goroutine would; it returns the
// client's end and the entry.
func lingerIn(t *testing.T, l *Listener, s *lingerSet) (net.Conn, *lingerEntry) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	nc, err := l.Accept()
	require.NoError(t, err)
	require.NoError(t, nc.Close())
	l.lingerer.mu.Lock()
	require.Len(t, s.incoming, 1, "the close was handed to the set")
	h := s.incoming[0]
	s.incoming = s.incoming[:0]
	l.lingerer.queued.Add(-1)
	l.lingerer.mu.Unlock()
	require.False(t, s.adopt(h))
	return client, s.slots[len(s.slots)-1]
}

// An event that names no live entry (a slot out of range, a free slot, a
// slot since taken by another entry) is dropped: it comes from a watch
// left armed on a socket that outlived its linger (see ready), and acting
// on it would panic the set's goroutine, the whole process, or drain
// another connection.
func TestLingerSetDropsStaleEvents(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0", Config{})
	require.NoError(t, err)
	l.lingerer.setOnly.Store(true)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, l.Shutdown(ctx))
	})
	s := manualSet(t, l)
	_, live := lingerIn(t, l, s)
	s.slots = append(s.slots, nil) // a free slot
	free := int32(len(s.slots) - 1)
	over := s.ready([]unix.EpollEvent{
		{Events: unix.EPOLLIN, Fd: -1},
		{Events: unix.EPOLLIN, Fd: int32(len(s.slots))},
		{Events: unix.EPOLLIN, Fd: free},
		{Events: unix.EPOLLIN, Fd: live.slot, Pad: live.gen - 1}, // the slot's previous entry
	}, nil)
	assert.Empty(t, over, "no linger ended")
	assert.Same(t, live, s.slots[live.slot], "the live entry is untouched")
	assert.Zero(t, live.discarded)
}

// A re-arm the kernel refuses ends that close at once with outcome Shed,
// reported once, instead of leaving it deaf to its peer's FIN until its
// deadline.
func TestLingerSetRefusedRearmSheds(t *testing.T) {
	var logged bytes.Buffer
	closes := make(chan CloseInfo, 1)
	l, err := Listen("tcp", "127.0.0.1:0", Config{
		ErrorLog: log.New(&logged, "", 0),
		OnClose:  func(ci CloseInfo) { closes <- ci },
	})
	require.NoError(t, err)
	l.lingerer.setOnly.Store(true)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, l.Shutdown(ctx))
	})
	s := manualSet(t, l)
	client, e := lingerIn(t, l, s)
	_, err = client.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the close half-closed")
	_, err = client.Write([]byte("crossing"))
	require.NoError(t, err)

	// The kernel forgets the watch behind the set's back: the re-arm
	// after the bytes are discarded fails (ENOENT).
	require.NoError(t, unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, int(e.fd), nil))
	waitReadable(t, int(e.fd))
	over := s.ready([]unix.EpollEvent{{Events: unix.EPOLLIN, Fd: e.slot, Pad: e.gen}}, nil)
	require.Len(t, over, 1, "the close is over")
	assert.True(t, over[0].unwatched)
	assert.Nil(t, s.slots[e.slot], "and out of the set")
	s.end(over)

	select {
	case ci := <-closes:
		assert.Equal(t, Shed, ci.Outcome)
		assert.EqualValues(t, len("crossing"), ci.Discarded)
	case <-time.After(10 * time.Second):
		t.Fatal("the close never ended")
	}
	assert.Contains(t, logged.String(), "cannot watch a lingering close")
	assert.Equal(t, 1, bytes.Count(logged.Bytes(), []byte("\n")), "one line: %q", logged.String())
}

// waitReadable waits until fd has bytes to read (poll(2) parks in the
// kernel; no timer).
func waitReadable(t *testing.T, fd int) {
	t.Helper()
	for {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 10_000)
		if err != unix.EINTR {
			require.NoError(t, err)
			return
		}
	}
}

// TestLingerQueueKeepsDeadlineOrder: entries handed over out of the order
// of their starts (an owner that measured its start first may hand its
// close over last) still end in the order of their deadlines, and removing
// any of them (its FIN came) keeps the list whole.
func TestLingerQueueKeepsDeadlineOrder(t *testing.T) {
	var q lingerQueue
	starts := []time.Duration{5, 3, 8, 1, 8, 6, 9, 2}
	entries := make([]*lingerEntry, len(starts))
	for i, s := range starts {
		entries[i] = &lingerEntry{start: s, slot: int32(i)}
		q.push(entries[i])
	}
	order := func() (starts []time.Duration, slots []int32) {
		var prev *lingerEntry
		for e := q.head; e != nil; prev, e = e, e.next {
			require.Same(t, prev, e.prev, "a link back is broken at slot %d", e.slot)
			starts = append(starts, e.start)
			slots = append(slots, e.slot)
		}
		require.Same(t, prev, q.tail)
		return starts, slots
	}
	got, slots := order()
	assert.Equal(t, []time.Duration{1, 2, 3, 5, 6, 8, 8, 9}, got)
	assert.Equal(t, []int32{3, 7, 1, 0, 5, 2, 4, 6}, slots, "equal starts keep the order they came in")

	q.remove(entries[3]) // the head
	q.remove(entries[4]) // the second 8
	q.remove(entries[6]) // the tail
	got, _ = order()
	assert.Equal(t, []time.Duration{2, 3, 5, 6, 8}, got)
	for _, i := range []int{7, 1, 0, 5, 2} {
		q.remove(entries[i])
	}
	assert.Nil(t, q.head)
	assert.Nil(t, q.tail)
	q.push(entries[0])
	got, _ = order()
	assert.Equal(t, []time.Duration{5}, got)
}
