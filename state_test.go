package linger

import (
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The transitions of state.go on a Conn without a socket: what each may
// follow, and how Reads in flight are attributed to idle marks.
func TestStateTransitions(t *testing.T) {
	c := &Conn{rescueOn: true}
	phaseIs := func(p phase) { t.Helper(); assert.Equal(t, p, c.load().phase()) }

	old, ok := c.beginRead() // a Read left behind, begun before any mark
	require.True(t, ok)
	c.markIdle()
	phaseIs(phaseIdle)
	fresh, ok := c.beginRead()
	require.True(t, ok)
	assert.EqualValues(t, 1, c.load().fresh())
	assert.EqualValues(t, 1, c.load().stale())

	taken, rescuing := c.takeIdle()
	assert.True(t, taken)
	assert.False(t, rescuing, "a Read begun before the mark rules a rescue out")
	phaseIs(phaseClosing)
	c.endRead(old, false)
	c.endRead(fresh, false)
	assert.Zero(t, c.load().fresh()+c.load().stale())
	assert.Equal(t, closeAgain, c.takeForClose())

	c = &Conn{rescueOn: true}
	c.markIdle()
	r, _ := c.beginRead()
	c.markIdle() // a second mark: the Read in flight is now stale
	assert.EqualValues(t, 0, c.load().fresh())
	assert.EqualValues(t, 1, c.load().stale())
	c.endRead(r, false)
	assert.Zero(t, c.load().stale(), "the Read is uncounted where it was moved")

	r, _ = c.beginRead()
	taken, rescuing = c.takeIdle()
	require.True(t, taken && rescuing)
	phaseIs(phaseRescuing)
	assert.Equal(t, closeDeferred, c.takeForClose(), "a Close while deciding")
	assert.Equal(t, closeAgain, c.takeForClose())
	assert.False(t, c.decideRescue(true), "a Close came: no hand-back")
	phaseIs(phaseClosing)
	c.endRead(r, true)
	phaseIs(phaseClosing)

	c = &Conn{rescueOn: true}
	c.markIdle()
	r, _ = c.beginRead()
	taken, rescuing = c.takeIdle()
	require.True(t, taken && rescuing)
	c.endRead(r, true) // the waiting Read got the bytes while we decided
	assert.True(t, c.load().has(flagTook))
	assert.True(t, c.decideRescue(false), "the owner holds a request: handed back, whatever the peek saw")
	assert.False(t, c.load().has(flagTook))
	phaseIs(phaseOpen)
	taken, _ = c.takeIdle()
	assert.False(t, taken, "the mark is spent")

	c.markIdle()
	r, _ = c.beginRead()
	c.endRead(r, true)
	phaseIs(phaseOpen) // bytes read: the owner holds a message
	c.setFlag(flagEOF)
	c.markIdle()
	r, _ = c.beginRead()
	taken, rescuing = c.takeIdle()
	assert.True(t, taken)
	assert.False(t, rescuing, "the peer has closed")
	c.endRead(r, false)
	c.startLinger()
	phaseIs(phaseLingering)
	c.markIdle()
	phaseIs(phaseLingering)
	c.markClosed()
	phaseIs(phaseClosed)
	assert.Equal(t, "closed", c.load().phase().String())
}

// The generation wraps without disturbing the other fields.
func TestStateMarkWraps(t *testing.T) {
	c := &Conn{rescueOn: true}
	c.setFlag(flagShutWrite)
	for range 1<<16 + 3 {
		c.markIdle()
	}
	s := c.load()
	assert.Equal(t, phaseIdle, s.phase())
	assert.True(t, s.has(flagShutWrite))
	assert.EqualValues(t, 3<<genShift, s.gen())
	assert.Zero(t, s.fresh()+s.stale())
}

// The first bytes a Read returns decide whether a stream is TLS: a
// handshake record (0x16) of a TLS version (0x03 ...), and only the first.
func TestFirstBytesNoteTLS(t *testing.T) {
	for _, tc := range []struct {
		first []byte
		tls   bool
	}{
		{[]byte{0x16, 0x03, 0x01, 0x02, 0x00}, true},
		{[]byte{0x16, 0x03}, true},
		{[]byte{0x16}, false}, // too short to tell: not counted as TLS
		{[]byte("GET / HTTP/1.1\r\n"), false},
		{[]byte("PRI * HTTP/2.0\r\n"), false},
		{[]byte("PROXY TCP4 "), false},
		{[]byte{0x17, 0x03, 0x03}, false}, // application data: not a stream's start
	} {
		c := &Conn{}
		c.noteFirstBytes(tc.first)
		assert.True(t, c.load().has(flagHeard))
		assert.Equal(t, tc.tls, c.load().has(flagTLS), "%q", tc.first)
	}
}

// How a lingering close that ended on the peer's FIN is counted: on a TLS
// connection one alert record (a close_notify) is no request.
func TestLingerOutcomeOfTLS(t *testing.T) {
	const limit = 1 << 20
	tls := state(flagHeard | flagTLS)
	for _, tc := range []struct {
		s         state
		unread    int
		discarded int64
		err       error
		want      Outcome
	}{
		{tls, 0, 24, io.EOF, Clean},   // TLS 1.3 close_notify after our close
		{tls, 31, 31, io.EOF, Clean},  // TLS 1.2 AES-GCM, queued unread
		{tls, 0, 32, io.EOF, Crossed}, // more than one alert: a request
		{tls, 40, 40, io.EOF, Pending},
		{tls, 0, 24, os.ErrDeadlineExceeded, Timeout},
		{tls, 0, 24, syscall.ECONNRESET, Reset},
		{tls | flagCut, 0, 24, os.ErrDeadlineExceeded, Aborted},
		{flagHeard, 0, 20, io.EOF, Crossed}, // plaintext: 20 bytes are a request
		{flagHeard, 20, 20, io.EOF, Pending},
		{0, 0, 0, io.EOF, Clean},
	} {
		info := CloseInfo{Unread: tc.unread, Discarded: tc.discarded}
		assert.Equal(t, tc.want, lingerOutcome(info, limit, tc.err, tc.s), "%+v", tc)
	}
}

// The Listener's word: each transition moves only from the phase it
// names, and the facts and the Accept count ride along.
func TestListenerTransitions(t *testing.T) {
	l := &Listener{closeDone: make(chan struct{})}
	phaseIs := func(p lphase) { t.Helper(); assert.Equal(t, p, l.lload().phase()) }
	phaseIs(lAccepting)

	l.startAbort() // only from closed
	phaseIs(lAccepting)
	l.noteAccept(+1)
	assert.EqualValues(t, 1, l.lload().accepts())
	assert.False(t, l.lload().has(lflagLoopSeen), "an Accept before the close is no loop after it")

	require.True(t, l.beginClose())
	phaseIs(lClosing)
	assert.False(t, l.beginClose(), "a second Close or Handoff is not the first")
	assert.True(t, l.lload().closing())
	l.noteAccept(-1) // the Accept in progress returns after the close began
	assert.EqualValues(t, 0, l.lload().accepts())
	assert.True(t, l.lload().has(lflagLoopSeen))

	l.startAbort()
	phaseIs(lClosing)
	l.endClose()
	phaseIs(lClosed)
	select {
	case <-l.closeDone:
	default:
		t.Fatal("endClose closes closeDone")
	}
	assert.False(t, l.isAborting())
	l.startAbort()
	phaseIs(lAborting)
	assert.True(t, l.isAborting())
	assert.True(t, l.lload().closing())
	assert.False(t, l.beginClose())
	assert.Equal(t, "aborting", l.lload().phase().String())
}

// decideRescue moves only a connection CloseIdle is deciding on.
func TestDecideRescueOnlyFromRescuing(t *testing.T) {
	c := &Conn{rescueOn: true}
	c.markIdle()
	assert.False(t, c.decideRescue(true))
	assert.Equal(t, phaseIdle, c.load().phase(), "not rescuing: nothing moves")
}

// The bytes of the Read that waited can arrive after the peek found none
// queued (the Read consumed them) and before the decision: the decision
// must see them and hand the connection back, or the server would serve
// the request it has read onto a closed connection, its answer lost.
func TestRescueDecisionSeesBytesTakenAfterThePeek(t *testing.T) {
	c := &Conn{rescueOn: true}
	c.markIdle()
	r, _ := c.beginRead()
	taken, rescuing := c.takeIdle()
	require.True(t, taken && rescuing)
	ok := false        // the peek: the Read has consumed the bytes
	c.endRead(r, true) // its bytes are counted only now
	assert.True(t, c.decideRescue(ok), "handed back")
	assert.Equal(t, phaseOpen, c.load().phase())

	// And the other order: the decision first, then the Read's bytes,
	// which then belong to the lingering close.
	c = &Conn{rescueOn: true}
	c.markIdle()
	r, _ = c.beginRead()
	taken, rescuing = c.takeIdle()
	require.True(t, taken && rescuing)
	assert.False(t, c.decideRescue(false))
	assert.True(t, c.endRead(r, true).closed(), "the Read sees the close: its bytes are not the owner's")
}

// TestConnSetTracksEachConnOnce: the Listener's tracked connections, as
// Shutdown counts and closes them. Tracking twice (a detached connection
// retracked) or untracking twice (one detached, then closed) changes
// nothing, and removing from the front, middle or back leaves the rest.
func TestConnSetTracksEachConnOnce(t *testing.T) {
	var s connSet
	cs := make([]*Conn, 5)
	for i := range cs {
		cs[i] = new(Conn)
		s.add(cs[i])
	}
	s.add(cs[2])
	members := func() []*Conn {
		var got []*Conn
		var prev *Conn
		for c := s.head; c != nil; prev, c = c, c.next {
			require.Same(t, prev, c.prev, "a link back is broken")
			got = append(got, c)
		}
		return got
	}
	assert.ElementsMatch(t, cs, members())

	s.remove(cs[4]) // the front: added last
	s.remove(cs[2])
	s.remove(cs[0]) // the back
	s.remove(cs[2])
	assert.ElementsMatch(t, []*Conn{cs[1], cs[3]}, members())
	s.add(cs[2])
	assert.ElementsMatch(t, []*Conn{cs[1], cs[2], cs[3]}, members())
	for _, c := range cs {
		s.remove(c)
	}
	assert.Empty(t, members())
	assert.Nil(t, s.head)
}
