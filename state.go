package linger

// A connection's lifecycle is one word, moved only by the transitions in
// this file, each a compare-and-swap that names what it may follow:
//
//	open ⇄ idle                  SetIdle: the owner's own statement
//	idle → open                  a Read returns bytes: the owner holds a new message
//	idle → rescuing              CloseIdle, with a Read the owner began since the mark
//	idle → closing               CloseIdle, without one
//	rescuing → open              decideRescue: the waiting Read gets the queued request
//	rescuing → closing           decideRescue: the decision is a close
//	open, idle, rescuing → closing   Close (from rescuing: once the decision is made)
//	closing → lingering → closed     the lingering close (drain.go)
//
// Besides the phase the word holds facts the close depends on (the peer's
// FIN was read, SO_LINGER 0, the owner's CloseWrite, Shutdown's cut, the
// owner's Detach, a Close or a Read's bytes that arrived while CloseIdle
// was deciding, whether the stream began as TLS) and the Reads in flight:
// how many began since the current idle mark (fresh) and how many before
// it (stale). A rescue needs a fresh Read and no stale one, so bytes go
// only to a Read the owner started after it declared itself idle, never to
// one it had left behind (net/http's background read, say); and a close
// with no Read in flight need not wake one (drain.go).

import (
	"slices"
	"strconv"
)

type phase uint64

const (
	phaseOpen      phase = iota // the owner uses the connection
	phaseIdle                   // the owner said it waits for a new message (SetIdle)
	phaseRescuing               // CloseIdle is deciding whether to hand back
	phaseClosing                // closed by the owner: Read and Write fail; the close is under way
	phaseLingering              // the lingering close reads and discards
	phaseClosed                 // the socket is closed and the outcome reported
)

var phaseNames = [...]string{"open", "idle", "rescuing", "closing", "lingering", "closed"}

func (p phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase(" + strconv.Itoa(int(p)) + ")"
}

// The layout of a Conn's state word.
const (
	phaseMask = 0xf

	flagEOF        = 1 << 4  // a Read returned io.EOF: the peer has sent its FIN
	flagAbortive   = 1 << 5  // SO_LINGER 0 is set: Close sends RST, no linger
	flagShutWrite  = 1 << 6  // the owner called CloseWrite
	flagCut        = 1 << 7  // Shutdown's context ended: stop lingering
	flagDetached   = 1 << 8  // the owner no longer reports this connection (Detach)
	flagCloseAsked = 1 << 9  // Close was called while CloseIdle was deciding
	flagTook       = 1 << 10 // a Read returned bytes while CloseIdle was deciding
	flagGoFD       = 1 << 11 // its linger watches Go's own descriptor, not a dup (lingerer_linux.go)
	flagHeard      = 1 << 12 // a Read has returned bytes: flagTLS is decided
	flagTLS        = 1 << 13 // those first bytes began a TLS handshake record (noteFirstBytes)
	flagExpired    = 1 << 14 // the reaper ended its linger in a goroutine at LingerTimeout (drain.go)

	genShift   = 16 // idle marks so far, mod 2^16: which mark a fresh Read belongs to
	genMask    = 0xffff << genShift
	freshShift = 32 // Reads in flight begun since the current idle mark
	fresh1     = 1 << freshShift
	freshMask  = 0xffff << freshShift
	staleShift = 48 // Reads in flight begun before it
	stale1     = 1 << staleShift
)

type state uint64

func (s state) phase() phase      { return phase(s & phaseMask) }
func (s state) has(f uint64) bool { return uint64(s)&f != 0 }
func (s state) gen() uint64       { return uint64(s) & genMask }
func (s state) fresh() uint64     { return uint64(s) & freshMask >> freshShift }
func (s state) stale() uint64     { return uint64(s) >> staleShift }
func (s state) reading() bool     { return s.fresh()+s.stale() > 0 } // Reads in flight
func (s state) with(p phase) state {
	return s&^phaseMask | state(p)
}

// closed reports whether the owner's Close has taken effect: Read and Write
// fail from then on.
func (s state) closed() bool { return s.phase() >= phaseClosing }

// newMark starts a new idle mark: every Read in flight becomes stale.
func (s state) newMark() state {
	g := (s.gen() + 1<<genShift) & genMask
	stale := s.stale() + s.fresh()
	return s&^(genMask|freshMask|state(0xffff)<<staleShift) | state(g) | state(stale<<staleShift)
}

// cas moves c's state word from old to new.
func (c *Conn) cas(old, new state) bool {
	return c.st.CompareAndSwap(uint64(old), uint64(new))
}

func (c *Conn) load() state { return state(c.st.Load()) }

// setFlag sets f, whatever the phase.
func (c *Conn) setFlag(f uint64) { c.st.Or(f) }

// readToken says how a Read in flight was counted.
type readToken struct {
	fresh bool
	gen   uint64
}

// beginRead counts a Read in flight, unless the connection is closed.
func (c *Conn) beginRead() (readToken, bool) {
	for {
		s := c.load()
		if s.closed() {
			return readToken{}, false
		}
		t := readToken{fresh: s.phase() == phaseIdle, gen: s.gen()}
		n := s + stale1
		if t.fresh {
			n = s + fresh1
		}
		if c.cas(s, n) {
			return t, true
		}
	}
}

// endRead uncounts a Read that began with t and returns the state after
// it. A Read that returned bytes ends the owner's idleness (idle → open):
// the owner now holds the start of a message, so an idle close would lose
// a request it has begun to read, and serve it without an answer.
func (c *Conn) endRead(t readToken, gotBytes bool) state {
	for {
		s := c.load()
		n := s - stale1
		if t.fresh && s.gen() == t.gen {
			n = s - fresh1
		}
		if gotBytes && n.phase() == phaseIdle {
			n = n.with(phaseOpen)
		}
		if gotBytes && n.phase() == phaseRescuing {
			n |= flagTook
		}
		if c.cas(s, n) {
			return n
		}
	}
}

// noteFirstBytes notes, from the first bytes a Read returned, whether the
// stream is TLS: a TLS connection begins with the client's handshake
// record, content type 22 (0x16) and a legacy version whose first byte is
// 3 (RFC 8446 §5.1, RFC 5246 §6.2.1). No HTTP/1 method, HTTP/2 preface or
// PROXY protocol header begins so. The close's outcome uses it (see
// tlsAlertMax); it is set once, in any phase.
func (c *Conn) noteFirstBytes(b []byte) {
	f := uint64(flagHeard)
	if len(b) >= 2 && b[0] == 0x16 && b[1] == 0x03 {
		f |= flagTLS
	}
	c.setFlag(f)
}

// markIdle: open or idle → idle, as a new mark.
func (c *Conn) markIdle() {
	for {
		s := c.load()
		if p := s.phase(); p != phaseOpen && p != phaseIdle {
			return
		}
		if c.cas(s, s.newMark().with(phaseIdle)) {
			return
		}
	}
}

// markActive: idle → open.
func (c *Conn) markActive() { c.advance(phaseOpen, phaseIdle) }

// What a Close call does, decided by takeForClose.
type closeTurn uint8

const (
	closeNow      closeTurn = iota // this call closes
	closeDeferred                  // CloseIdle is deciding; it will close
	closeAgain                     // already closed: a second Close
)

// takeForClose: open or idle → closing; rescuing → rescuing with
// CloseAsked, which makes the decision a close.
func (c *Conn) takeForClose() closeTurn {
	for {
		s := c.load()
		switch s.phase() {
		case phaseOpen, phaseIdle:
			if c.cas(s, s.with(phaseClosing)) {
				return closeNow
			}
		case phaseRescuing:
			if s.has(flagCloseAsked) {
				return closeAgain
			}
			if c.cas(s, s|flagCloseAsked) {
				return closeDeferred
			}
		default:
			return closeAgain
		}
	}
}

// takeIdle: idle → rescuing, if a Read the owner began since its idle mark
// waits, no older one does, and nothing rules a rescue out; else idle →
// closing. Nothing when the owner has not marked the connection idle.
func (c *Conn) takeIdle() (taken, rescuing bool) {
	for {
		s := c.load()
		if s.phase() != phaseIdle {
			return false, false
		}
		rescuing := c.rescueOn && s.fresh() > 0 && s.stale() == 0 &&
			!s.has(flagEOF|flagAbortive|flagShutWrite|flagCut|flagDetached)
		next := phaseClosing
		if rescuing {
			next = phaseRescuing
		}
		if c.cas(s, s.with(next)) {
			return true, rescuing
		}
	}
}

// decideRescue ends CloseIdle's decision in one step: rescuing → open,
// handing the connection back, if the queued bytes passed (ok) or the
// waiting Read has taken bytes meanwhile (flagTook), unless a Close came;
// otherwise rescuing → closing. One compare-and-swap, so that a Read's
// bytes cannot arrive between the decision and the close: either the
// decision sees flagTook, or the Read sees the connection closing and
// leaves its bytes to the lingering close (Conn.Read). The idle mark is
// spent: a second rescue needs the owner to say it is idle again. Only
// CloseIdle moves a connection out of rescuing (takeForClose leaves it
// there, with CloseAsked).
func (c *Conn) decideRescue(ok bool) (handedBack bool) {
	for {
		s := c.load()
		if s.phase() != phaseRescuing {
			return false
		}
		if (ok || s.has(flagTook)) && !s.has(flagCloseAsked) {
			if c.cas(s, (s &^ flagTook).with(phaseOpen)) {
				return true
			}
			continue
		}
		if c.cas(s, (s &^ (flagCloseAsked | flagTook)).with(phaseClosing)) {
			return false
		}
	}
}

// startLinger: closing → lingering.
func (c *Conn) startLinger() { c.advance(phaseLingering, phaseClosing) }

// markClosed: closing or lingering → closed.
func (c *Conn) markClosed() { c.advance(phaseClosed, phaseClosing, phaseLingering) }

// advance moves the phase to next if it is one of from, keeping everything
// else.
func (c *Conn) advance(next phase, from ...phase) {
	for {
		s := c.load()
		if !slices.Contains(from, s.phase()) {
			return
		}
		if c.cas(s, s.with(next)) {
			return
		}
	}
}

// The Listener's lifecycle is one word too, moved only by these
// transitions:
//
//	accepting → closing    the first Close or Handoff (closing: it takes the
//	                       accept queue and closes the socket)
//	closing → closed       that close is done (closeDone is closed)
//	closed → aborting      Shutdown's context ended: every connection closes
//	                       at once, and none is tracked any more
//
// Besides the phase the word holds a fact, loop seen (an Accept began or
// returned once the close had begun: an accept loop is running and takes
// the backlog), and the Accept calls in progress.

type lphase uint64

const (
	lAccepting lphase = iota // Accept serves
	lClosing                 // the first Close or Handoff is under way
	lClosed                  // the socket is closed
	lAborting                // Shutdown's context ended
)

var lphaseNames = [...]string{"accepting", "closing", "closed", "aborting"}

func (p lphase) String() string {
	if int(p) < len(lphaseNames) {
		return lphaseNames[p]
	}
	return "lphase(" + strconv.Itoa(int(p)) + ")"
}

// The layout of a Listener's word.
const (
	lphaseMask = 0x3

	lflagLoopSeen = 1 << 2 // an Accept ran after the close began

	acceptsShift = 32 // Accept calls in progress
	accepts1     = 1 << acceptsShift
)

type lstate uint64

func (s lstate) phase() lphase        { return lphase(s & lphaseMask) }
func (s lstate) has(f uint64) bool    { return uint64(s)&f != 0 }
func (s lstate) accepts() uint64      { return uint64(s) >> acceptsShift }
func (s lstate) with(p lphase) lstate { return s&^lphaseMask | lstate(p) }

// closing reports whether Close or Handoff has been called.
func (s lstate) closing() bool { return s.phase() >= lClosing }

func (l *Listener) lload() lstate { return lstate(l.st.Load()) }

// ladvance moves the phase to next if it is from, keeping everything else,
// and reports whether it did.
func (l *Listener) ladvance(next, from lphase) bool {
	for {
		s := l.lload()
		if s.phase() != from {
			return false
		}
		if l.st.CompareAndSwap(uint64(s), uint64(s.with(next))) {
			return true
		}
	}
}

// beginClose: accepting → closing, for the first Close or Handoff; it
// reports false for any later one.
func (l *Listener) beginClose() bool { return l.ladvance(lClosing, lAccepting) }

// endClose: closing → closed.
func (l *Listener) endClose() {
	l.ladvance(lClosed, lClosing)
	close(l.closeDone)
	l.lingerer.listenerClosed()
}

// startAbort: closed → aborting. With l.mu held, so that no connection is
// tracked after abort has taken the list (see track).
func (l *Listener) startAbort() { l.ladvance(lAborting, lClosed) }

// noteAccept counts an Accept call in progress (n = +1 or -1) and, once
// the close has begun, notes that an accept loop runs.
func (l *Listener) noteAccept(n int) {
	for {
		s := l.lload()
		next := s
		if n > 0 {
			next += accepts1
		} else {
			next -= accepts1
		}
		if s.closing() {
			next |= lflagLoopSeen
		}
		if l.st.CompareAndSwap(uint64(s), uint64(next)) {
			return
		}
	}
}
