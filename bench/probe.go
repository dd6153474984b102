package main

// The deployed backend's probe: what a Shutdown that ran into its deadline
// was still waiting for. It follows the server's connections through
// ConnState (the events lingerhttp's own connection set follows) and takes
// a snapshot just before the deadline: the listener's Stats, the
// connections net/http has not closed and how long each has been in its
// state, and where the Shutdown goroutine waits.

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/linger-go/linger"
)

// probeLead is how long before Shutdown's deadline the snapshot is taken:
// at the deadline itself Shutdown closes everything at once.
const probeLead = 100 * time.Millisecond

// connProbe follows one server's connections.
type connProbe struct {
	mu    sync.Mutex
	conns map[net.Conn]*probeConn
	start time.Time // when Shutdown began, zero before
	// Requests begun and connections closed by net/http since Shutdown
	// began.
	drainRequests, drainCloses int
}

type probeConn struct {
	state    http.ConnState
	since    time.Time
	requests int
}

// hook makes srv report its connections' states to p, before whatever
// srv.ConnState did (the variant's wrappers chain it).
func (p *connProbe) hook(srv *http.Server) {
	p.conns = make(map[net.Conn]*probeConn)
	user := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		p.connState(c, st)
		if user != nil {
			user(c, st)
		}
	}
}

func (p *connProbe) connState(c net.Conn, st http.ConnState) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	draining := !p.start.IsZero()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(p.conns, c)
		if draining {
			p.drainCloses++
		}
		return
	case http.StateActive:
		if draining {
			p.drainRequests++
		}
	}
	pc := p.conns[c]
	if pc == nil {
		pc = &probeConn{}
		p.conns[c] = pc
	}
	pc.state, pc.since = st, now
	if st == http.StateActive {
		pc.requests++
	}
}

func (p *connProbe) shutdownBegins() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start = time.Now()
}

// shutdownSnapshot is what was still open a moment before Shutdown's
// deadline.
type shutdownSnapshot struct {
	AtMs      float64 `json:"atMs"` // since Shutdown began
	Open      int64   `json:"open"` // the linger listener's Stats; -1: no Stats
	Lingering int64   `json:"lingering"`
	// Connections net/http had not closed, by ConnState, and the oldest
	// few: state, time in it, requests served on the connection.
	Conns        map[string]int `json:"conns"`
	Oldest       []string       `json:"oldest,omitempty"`
	DrainReqs    int            `json:"drainRequests"` // requests begun since Shutdown began
	DrainCloses  int            `json:"drainCloses"`   // connections net/http closed since
	Waiting      []string       `json:"waiting"`       // the Shutdown goroutine's frames in linger's packages and net/http
	StatsOutcome string         `json:"outcomes,omitempty"`
}

func (p *connProbe) snapshot(ln net.Listener) *shutdownSnapshot {
	now := time.Now()
	s := &shutdownSnapshot{Open: -1, Lingering: -1, Conns: make(map[string]int)}
	if st, ok := ln.(statser); ok {
		stats := st.Stats()
		s.Open, s.Lingering = stats.Open, stats.Lingering
		s.StatsOutcome = fmt.Sprintf("clean %d, pending %d, crossed %d, timeout %d, aborted %d, rescued %d",
			stats.Outcomes[linger.Clean], stats.Outcomes[linger.Pending], stats.Outcomes[linger.Crossed], stats.Outcomes[linger.Timeout], stats.Outcomes[linger.Aborted], stats.Outcomes[linger.Rescued])
	}
	p.mu.Lock()
	if !p.start.IsZero() {
		s.AtMs = float64(now.Sub(p.start)) / float64(time.Millisecond)
	}
	s.DrainReqs, s.DrainCloses = p.drainRequests, p.drainCloses
	type open struct {
		c  net.Conn
		pc probeConn
	}
	var conns []open
	for c, pc := range p.conns {
		s.Conns[pc.state.String()]++
		conns = append(conns, open{c, *pc})
	}
	p.mu.Unlock()
	slices.SortFunc(conns, func(a, b open) int { return a.pc.since.Compare(b.pc.since) })
	for _, o := range conns[:min(len(conns), 8)] {
		s.Oldest = append(s.Oldest, fmt.Sprintf("%s %.0f ms, %d requests, from %s",
			o.pc.state, float64(now.Sub(o.pc.since))/float64(time.Millisecond), o.pc.requests, o.c.RemoteAddr()))
	}
	s.Waiting = shutdownFrames()
	return s
}

// shutdownFrames returns the frames, in linger's packages and net/http,
// of the goroutines running a Shutdown: where it waits.
func shutdownFrames() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var frames []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, ").Shutdown(") || !strings.Contains(g, "linger-go/linger") {
			continue
		}
		if len(frames) > 0 {
			frames = append(frames, "--")
		}
		lines := strings.Split(g, "\n")
		for i := 1; i+1 < len(lines); i += 2 {
			fn := strings.TrimSpace(lines[i])
			lib := strings.HasPrefix(fn, "github.com/linger-go/linger.") || strings.HasPrefix(fn, "github.com/linger-go/linger/lingerhttp.")
			if !lib && !strings.HasPrefix(fn, "net/http.") {
				continue
			}
			if j := strings.LastIndex(fn, "("); j > 0 {
				fn = fn[:j] // the arguments
			}
			loc := strings.TrimSpace(lines[i+1])
			if j := strings.Index(loc, " +0x"); j > 0 {
				loc = loc[:j]
			}
			frames = append(frames, fn[strings.LastIndex(fn, "/")+1:]+" at "+loc[strings.LastIndex(loc, "/")+1:])
		}
	}
	return frames
}

// String is the snapshot in one paragraph, for the report.
func (s *shutdownSnapshot) String() string {
	var states []string
	for _, k := range slices.Sorted(maps.Keys(s.Conns)) {
		states = append(states, fmt.Sprintf("%s %d", k, s.Conns[k]))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "at %.0f ms: listener open %d, lingering %d; net/http's open conns: %s", s.AtMs, s.Open, s.Lingering, orNone(strings.Join(states, ", "), "none"))
	if len(s.Oldest) > 0 {
		fmt.Fprintf(&b, " (oldest: %s)", strings.Join(s.Oldest, "; "))
	}
	fmt.Fprintf(&b, "; since Shutdown began %d requests, %d closes by net/http", s.DrainReqs, s.DrainCloses)
	if s.StatsOutcome != "" {
		fmt.Fprintf(&b, "; outcomes so far: %s", s.StatsOutcome)
	}
	if len(s.Waiting) > 0 {
		fmt.Fprintf(&b, "; Shutdown waits in: %s", strings.Join(s.Waiting, " < "))
	}
	return b.String()
}
