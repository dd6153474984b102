package linger

import (
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// Outcome says how a connection's close ended. The first outcome that
// applies, in this order, is reported: [Aborted], [Plain], [Clean] (the
// peer had closed first and nothing was unread) and [Shed], decided when
// the owner closes, or [Rescued] instead of a close; then how a lingering
// close ended: [Overflow], [Aborted] (Shutdown's cut), [Timeout], [Reset],
// [Shed] (the kernel refused to go on watching it);
// then, the peer's FIN having come, [Clean] for a TLS connection that
// discarded at most its close_notify, [Pending], [Crossed], else [Clean].
//
// Pending and Crossed are the outcomes that mean a request met the close;
// the others say how the close itself went.
type Outcome uint8

const (
	// Clean: the connection ended normally, FIN for FIN, and no request
	// was lost. The peer's FIN came and nothing was discarded, or the peer
	// had closed first with nothing unread; on a TLS connection (one whose
	// first bytes were a TLS handshake record), what was discarded was at
	// most one alert record, the client's close_notify, which is how TLS
	// clients end a connection.
	Clean Outcome = iota
	// Pending: a request, or a body, had arrived and was unread when the
	// owner closed. The lingering close discarded it and ended on the
	// peer's FIN, without a RST; the peer got no answer to it.
	Pending
	// Crossed: the peer sent bytes after the owner's close, before our FIN
	// reached it: a request crossed the close on the wire. The lingering
	// close discarded them and ended on the peer's FIN, without a RST.
	Crossed
	// Timeout: the peer sent no FIN within [Config.LingerTimeout]; the
	// connection was closed anyway.
	Timeout
	// Overflow: the peer sent more than [Config.LingerBytes] while the
	// close lingered; the connection was closed with data unread.
	Overflow
	// Reset: the peer reset the connection while the close lingered.
	Reset
	// Shed: closed at once, without lingering, because
	// [Config.MaxLingering] connections were already lingering, or the
	// kernel refused to watch one more lingering close (reported to
	// [Config.ErrorLog] once).
	Shed
	// Aborted: closed without waiting for the peer, as asked: an abortive
	// close ([Config.AbortiveClose] or [Conn.SetLinger](0), the kernel
	// sends RST), or [Listener.Shutdown]'s context ended first (FIN, no
	// linger).
	Aborted
	// Rescued: not a close: [Conn.CloseIdle] found the next request
	// already waiting and handed it to the owner's waiting Read instead.
	// The connection's final close is reported later, on its own.
	Rescued
	// Plain: closed at once, without lingering, because the connection
	// cannot half-close: it is not TCP-like (a pipe), or a listener
	// wrapped below linger returns connections that hide CloseWrite
	// (x/net/netutil.LimitListener, go-proxyproto). The kernel may still
	// reset such a close; Accept logs the wrapper's type once. Put linger
	// innermost, directly on the TCP listener.
	Plain

	// NumOutcomes is the number of outcomes, the length of [Stats.Outcomes]:
	// range over it to visit every outcome.
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{
	Clean: "clean", Pending: "pending", Crossed: "crossed", Timeout: "timeout", Overflow: "overflow",
	Reset: "reset", Shed: "shed", Aborted: "aborted", Rescued: "rescued", Plain: "plain",
}

// String returns the outcome's lower-case name, such as "crossed".
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// CloseInfo describes one finished close, as passed to [Config.OnClose].
type CloseInfo struct {
	Outcome    Outcome
	LocalAddr  net.Addr
	RemoteAddr net.Addr
	// Idle is how long the connection had been idle (no byte read or
	// written) when its owner closed it.
	Idle time.Duration
	// Linger is how long the close took, from the owner's Close until the
	// socket was closed.
	Linger time.Duration
	// Unread is how many bytes were waiting unread in the receive queue when
	// the owner closed, or -1 where the platform cannot tell.
	Unread int
	// Discarded is how many bytes the lingering close read and dropped.
	Discarded int64
}

// Stats are a listener's counters since it was created.
type Stats struct {
	// Accepted counts connections taken from the kernel's accept queue,
	// whether or not Accept returned them: [Listener.Close] takes the
	// queue, and [Listener.Shutdown] closes what no Accept returned.
	Accepted  int64
	Open      int64 // accepted and not yet closed by their owner
	Lingering int64 // closed by their owner, lingering close under way
	Discarded int64 // bytes read and dropped by lingering closes

	// Outcomes counts finished closes by outcome, indexed by [Outcome]:
	// Outcomes[linger.Crossed]. Outcomes[linger.Rescued] counts requests
	// handed back instead of closed, which are not closes.
	Outcomes [NumOutcomes]int64
}

// Closed returns the number of finished closes, whatever their outcome;
// rescues are not closes.
func (s Stats) Closed() int64 {
	var n int64
	for o, c := range s.Outcomes {
		if Outcome(o) != Rescued {
			n += c
		}
	}
	return n
}

// Add returns the sum of s and t, counter by counter, for totals over
// several listeners.
func (s Stats) Add(t Stats) Stats {
	s.Accepted += t.Accepted
	s.Open += t.Open
	s.Lingering += t.Lingering
	s.Discarded += t.Discarded
	for o := range s.Outcomes {
		s.Outcomes[o] += t.Outcomes[o]
	}
	return s
}

// StatsVar publishes a listener's [Stats] in expvar's /debug/vars, read
// afresh at every request, the way [expvar.Func] publishes a function's
// result. One call does it:
//
//	expvar.Publish("linger", linger.StatsVar(ln.Stats))
//
// Its value is a JSON object of Stats' fields, with Outcomes as an object
// keyed by outcome name that holds every outcome, in [Outcome] order:
//
//	{"Accepted": 2, "Open": 1, "Lingering": 0, "Discarded": 14,
//	 "Outcomes": {"clean": 1, "pending": 0, "crossed": 0, ...}}
//
// For several listeners, Set one StatsVar per listener into an [expvar.Map],
// or publish their total:
//
//	linger.StatsVar(func() linger.Stats { return a.Stats().Add(b.Stats()) })
//
// For a lingerhttp server, whose listener exists once Serve has begun,
// return the zero Stats while its Listener is nil.
//
// This package does not import expvar, whose init registers /debug/vars on
// [net/http.DefaultServeMux] in every program that imports it: StatsVar
// satisfies [expvar.Var] by its String method alone.
type StatsVar func() Stats

// String returns the Stats f returns now, as JSON; it implements
// [expvar.Var].
func (f StatsVar) String() string {
	s := f()
	b := make([]byte, 0, 256)
	b = append(b, `{"Accepted": `...)
	b = strconv.AppendInt(b, s.Accepted, 10)
	b = append(b, `, "Open": `...)
	b = strconv.AppendInt(b, s.Open, 10)
	b = append(b, `, "Lingering": `...)
	b = strconv.AppendInt(b, s.Lingering, 10)
	b = append(b, `, "Discarded": `...)
	b = strconv.AppendInt(b, s.Discarded, 10)
	b = append(b, `, "Outcomes": {`...)
	for o := range NumOutcomes {
		if o > 0 {
			b = append(b, ", "...)
		}
		// The names are lower-case ASCII words: nothing to escape.
		b = append(b, '"')
		b = append(b, o.String()...)
		b = append(b, `": `...)
		b = strconv.AppendInt(b, s.Outcomes[o], 10)
	}
	b = append(b, "}}"...)
	return string(b)
}

type counters struct {
	accepted, open, lingering, discarded atomic.Int64
	outcomes                             [NumOutcomes]atomic.Int64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Accepted:  c.accepted.Load(),
		Open:      c.open.Load(),
		Lingering: c.lingering.Load(),
		Discarded: c.discarded.Load(),
	}
	for o := range s.Outcomes {
		s.Outcomes[o] = c.outcomes[o].Load()
	}
	return s
}
