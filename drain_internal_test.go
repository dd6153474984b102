package linger

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reaperPair accepts n connections on a Listener whose lingers in
// goroutines only the test's reapAt ends (LingerTimeout is an hour), and
// returns them with the channel of their closes. The clients stay open,
// neither reading nor sending their FIN, until the test ends.
func reaperPair(t *testing.T, n int) (*Listener, []*Conn, chan CloseInfo) {
	t.Helper()
	closes := make(chan CloseInfo, n)
	l, err := Listen("tcp", "127.0.0.1:0", Config{LingerTimeout: time.Hour, OnClose: func(ci CloseInfo) { closes <- ci }})
	require.NoError(t, err)
	t.Cleanup(func() { l.Shutdown(context.Background()) }) // after the clients' closes end what lingers
	var conns []*Conn
	for range n {
		client, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { client.Close() })
		c, err := l.Accept()
		require.NoError(t, err)
		conns = append(conns, c.(*Conn))
	}
	return l, conns, closes
}

// nextClose is the next close reported, or a failure after a bound.
func nextClose(t *testing.T, closes chan CloseInfo) CloseInfo {
	t.Helper()
	select {
	case ci := <-closes:
		return ci
	case <-time.After(10 * time.Second): // a bound on failure, not a wait
		t.Fatal("no close reported in 10 s")
		return CloseInfo{}
	}
}

// The reaper ends each close lingering in a goroutine at its own end, not
// at the first one's, fires again for the next while any lingers, and is
// disarmed when none does.
func TestReaperEndsEachLingerAtItsEnd(t *testing.T) {
	l, conns, closes := reaperPair(t, 2)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.EqualValues(t, 2, l.Stats().Lingering)
	l.mu.Lock()
	first, second := conns[0].lingerEnd, conns[1].lingerEnd
	armed := l.reaperArmed
	l.mu.Unlock()
	require.True(t, armed, "a close lingering in a goroutine arms the reaper")
	require.Less(t, first, second, "in the order the closes began")

	assert.Equal(t, time.Duration(1), l.reapAt(second-1), "fires again at the second's end")
	ci := nextClose(t, closes)
	assert.Equal(t, Timeout, ci.Outcome)
	assert.Equal(t, conns[0].RemoteAddr(), ci.RemoteAddr, "the first ended")
	assert.False(t, conns[1].load().has(flagExpired), "the second still lingers")
	l.mu.Lock()
	head := l.lingering.head
	l.mu.Unlock()
	assert.Same(t, conns[1], head, "the second is left for the next firing")

	assert.Zero(t, l.reapAt(second), "disarmed once none lingers")
	ci = nextClose(t, closes)
	assert.Equal(t, Timeout, ci.Outcome)
	assert.Equal(t, conns[1].RemoteAddr(), ci.RemoteAddr, "the second ended")
	l.mu.Lock()
	armed, head = l.reaperArmed, l.lingering.head
	l.mu.Unlock()
	assert.Nil(t, head)
	assert.False(t, armed)
}

// A reap that comes before the linger's goroutine has cleared the read
// deadline (a LingerTimeout shorter than a goroutine's start) still ends
// it: the goroutine sees the flag and sets the past deadline again.
func TestReaperBeforeTheLingerStarts(t *testing.T) {
	l, conns, closes := reaperPair(t, 1)
	c := conns[0]
	// Close's steps up to the goroutine (Conn.close), with the reap
	// between them and the goroutine's run.
	require.Equal(t, closeNow, c.takeForClose())
	p := c.closeInfo()
	require.NoError(t, c.conn.(*net.TCPConn).CloseWrite())
	c.startLinger()
	l.stats.lingering.Add(1)
	l.lingerStarted(c, p.start)
	l.reapAt(p.start + l.cfg.LingerTimeout)
	go c.linger(p.info, p.start, p.rc, false)
	assert.Equal(t, Timeout, nextClose(t, closes).Outcome)
}
