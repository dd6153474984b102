package main

import (
	"encoding/xml"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/linger-go/linger/internal/netns"
)

// The 2-minute form runs one deploy and one restart; the 30-minute form a
// deploy and a restart every 3 minutes; in every form the events fall
// between the compared windows, and each window gets enough samples.
func TestPlanSoak(t *testing.T) {
	for _, tc := range []struct {
		dur               time.Duration
		every             time.Duration
		deploys, restarts int
	}{
		{soakMin, time.Second, 1, 1},
		{soakDefault, time.Second, 1, 1},
		{10 * time.Minute, 5 * time.Second, 2, 2},
		{30 * time.Minute, 10 * time.Second, 7, 6},
		{soakMax, 10 * time.Second, 78, 78},
	} {
		p := planSoak(tc.dur)
		assert.Equal(t, tc.every, p.every, "%v", tc.dur)
		deploys, restarts := 0, 0
		for i, e := range p.events {
			assert.Greater(t, e.at, tc.dur/5, "%v: %s in the second tenth", tc.dur, e.kind)
			assert.Less(t, e.at, tc.dur*85/100, "%v: %s too near the last tenth", tc.dur, e.kind)
			if e.kind == "deploy" {
				assert.Equal(t, deploys%2, e.n, "%v: deploys alternate the pair", tc.dur)
				deploys++
			} else {
				restarts++
			}
			if i > 0 {
				assert.LessOrEqual(t, e.at-p.events[i-1].at, soakEventGap, "%v", tc.dur)
			}
		}
		assert.Equal(t, tc.deploys, deploys, "%v", tc.dur)
		assert.Equal(t, tc.restarts, restarts, "%v", tc.dur)
		assert.GreaterOrEqual(t, int(tc.dur/10/p.every), soakWindowMin, "%v: samples per compared window", tc.dur)
	}
}

// samples makes a soak's samples, one a second, with fig giving each
// second's figures.
func samples(dur int, fig func(t int) soakSample) []soakSample {
	var ss []soakSample
	for t := 1; t <= dur; t++ {
		s := fig(t)
		s.T = float64(t) + 0.001
		ss = append(ss, s)
	}
	return ss
}

// flat is a steady backend with noise: descriptors and goroutines
// swinging by 15 around 100, the heap and RSS by a quarter.
func flat(t int) soakSample {
	w := []int{0, 15, -15, 7, -7}[t%5]
	return soakSample{FDs: 100 + w, Goroutines: 120 + w, HeapLive: uint64(4<<20 + w*(1<<16)), RSS: uint64(20<<20 + w*(1<<18)), Lingering: int64(5 + w/3)}
}

func soakRow(dur int, fig func(t int) soakSample) *row {
	s := &soakResult{
		Seconds: float64(dur), PlannedDeploys: 1, PlannedRestarts: 1,
		Hostile: map[string]*soakHostile{},
		Samples: samples(dur, fig),
		Events:  []soakEvent{{Kind: "deploy", T: 40}, {Kind: "restart", T: 80}},
		Before:  soakSample{FDs: 7, Goroutines: 1}, After: soakSample{FDs: 7, Goroutines: 1},
	}
	for _, k := range soakHostileKinds {
		s.Hostile[k] = &soakHostile{Peers: 10, SetUp: 10, Ended: 10}
	}
	s.summarize()
	return &row{Scenario: "soak", Variant: "lingerhttp", Requests: 1000, OK: 1000, Counters: &netns.Counters{OutRsts: 3}, Soak: s}
}

// -check passes a steady backend, noise and the RSTs hostile peers earn
// included, and fails every kind of growth, a failed request, a close
// the kernel aborted, a deploy that did not run, a hostile kind that
// never got through, and a backend not back where it began.
func TestSoakCheck(t *testing.T) {
	assert.Empty(t, soakRow(120, flat).Soak.failures(soakRow(120, flat)))

	leaks := map[string]func(t int) soakSample{
		"descriptors": func(t int) soakSample { s := flat(t); s.FDs += t; return s }, // one a second: a leak per hostile peer
		"goroutines":  func(t int) soakSample { s := flat(t); s.Goroutines += t / 2; return s },
		"live heap":   func(t int) soakSample { s := flat(t); s.HeapLive += uint64(t) * 64 << 10; return s },
		"RSS":         func(t int) soakSample { s := flat(t); s.RSS += uint64(t) * 256 << 10; return s },
		"lingering":   func(t int) soakSample { s := flat(t); s.Lingering += int64(t / 3); return s },
	}
	for what, fig := range leaks {
		r := soakRow(120, fig)
		bad := r.Soak.failures(r)
		require.Len(t, bad, 1, what)
		assert.Contains(t, bad[0], what)
	}

	for what, spoil := range map[string]func(r *row){
		"requests failed":           func(r *row) { r.OK-- },
		"aborted closes":            func(r *row) { r.Counters.AbortOnData = 1 },
		"0 of 1 restarts":           func(r *row) { r.Soak.Events = r.Soak.Events[:1] },
		"1 of 1 deploys and 0 of 1": func(r *row) { r.Soak.Events[1].Err = "no ready event" },
		"no reset peer":             func(r *row) { r.Soak.Hostile["reset"].SetUp = 0 },
		"holds 10 descriptors":      func(r *row) { r.Soak.After.FDs = r.Soak.Before.FDs + soakAfterSlack + 1 },
		"samples in the compared":   func(r *row) { r.Soak.Samples = r.Soak.Samples[:100]; r.Soak.summarize() },
		"0 of 0 requests failed":    func(r *row) { r.Requests, r.OK = 0, 0 },
	} {
		r := soakRow(120, flat)
		spoil(r)
		bad := r.Soak.failures(r)
		require.Len(t, bad, 1, what)
		assert.Contains(t, bad[0], what)
	}
}

// soak.svg is well-formed XML with one line per figure.
func TestSoakSVG(t *testing.T) {
	r := soakRow(120, flat)
	svg := r.Soak.svg("2026-01-02T03:04:05Z", "6.1")
	dec := xml.NewDecoder(strings.NewReader(svg))
	lines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	assert.Equal(t, 5, lines)
}

// A run with the soak's row prints its table, writes soak.svg next to
// latest.json, and -check holds the row to the soak's bars alone.
func TestSoakResults(t *testing.T) {
	r := soakRow(120, flat)
	res := &results{Rows: []*row{r}, RSTSource: "kernel counters"}
	assert.Contains(t, res.markdown(), "| soak | lingerhttp | 120 | 1000 | 1000 | 0 | 3 | 0 / 0 | 1 / 1 |")
	assert.Empty(t, res.checkFailures(), "TcpOutRsts alone is not a soak failure")
	r.Counters.AbortOnClose = 2
	assertFailures(t, res.checkFailures(), "TCPAbortOnClose 2")

	dir := t.TempDir()
	require.NoError(t, res.write(dir))
	assert.FileExists(t, filepath.Join(dir, "soak.svg"))
	assert.NoFileExists(t, filepath.Join(dir, "sweep.svg"))
}
