package linger

import (
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
	assert.False(t, c.handBack(), "a Close came: no hand-back")
	c.endRescue()
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
	assert.True(t, c.handBack())
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
