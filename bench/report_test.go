package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linger-go/linger/internal/netns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckFailures(t *testing.T) {
	r := &results{Rows: []*row{
		{Scenario: "unread-close", Variant: "raw", Counters: &netns.Counters{OutRsts: 9}},
		{Scenario: "unread-close", Variant: "linger", Counters: &netns.Counters{}},
		{Scenario: "shutdown", Variant: "linger", Counters: &netns.Counters{OutRsts: 2}}, // not checked
		{Scenario: "idle-race", Variant: "linger", Counters: &netns.Counters{AbortOnData: 1}},
		{Scenario: "early-response", Variant: "linger", Reset: 1}, // uncounted: clients' resets
		{Scenario: "grpc-age", Variant: "raw", Counters: &netns.Counters{OutRsts: 5, AbortOnData: 5}},
		{Scenario: "grpc-age", Variant: "linger", Counters: &netns.Counters{AbortOnClose: 1}},
		{Scenario: "grpc-idle", Variant: "linger", Counters: &netns.Counters{}},
		{Scenario: "grpc-agegrace", Variant: "linger", Reset: 1}, // uncounted: the RPCs' resets
		{Scenario: "shutdown", Variant: "raw", Requests: 10, OK: 8, Counters: &netns.Counters{OutRsts: 3}},
		{Scenario: "shutdown", Variant: "lingerhttp", Requests: 10, OK: 9, Counters: &netns.Counters{}},
		{Scenario: "nginx-idle", Variant: "lingerhttp", Requests: 10, OK: 10, Counters: &netns.Counters{OutRsts: 1}},
		{Scenario: "haproxy-idle", Variant: "lingerhttp", Requests: 10, OK: 10, Counters: &netns.Counters{}},
		{Scenario: "apache-idle", Variant: "linger", Requests: 10, OK: 9, Counters: &netns.Counters{AbortOnClose: 1}},
		{Scenario: "apache-idle", Variant: "lingerhttp", Requests: 10, OK: 9, Counters: &netns.Counters{}},
		{Scenario: "apache-deploy", Variant: "lingerhttp", Requests: 10, OK: 9, Counters: &netns.Counters{OutRsts: 1}},
		{Scenario: "apache-deploy", Variant: "linger", Requests: 10, OK: 5, Counters: &netns.Counters{OutRsts: 4}}, // not checked
	}}
	assertFailures(t, r.checkFailures(),
		"idle-race/linger",
		"early-response/linger",
		"grpc-age/linger",
		"grpc-agegrace/linger",
		"shutdown/lingerhttp: 1 of 10 requests failed",
		"nginx-idle/lingerhttp: backend sent RSTs",
		"apache-idle/linger: backend sent RSTs",
		"apache-idle/lingerhttp: 1 of 10 requests failed",
		"apache-deploy/lingerhttp: 1 of 10 requests failed", // its refused connects' RSTs are not failures
	)
}

// apache-deploy's lingerhttp row may have RSTs (refused connects to the
// closed port, which Apache fails over) but no close-abort.
func TestCheckApacheDeploy(t *testing.T) {
	r := &results{Rows: []*row{
		{Scenario: "apache-deploy", Variant: "lingerhttp", Requests: 10, OK: 10, Counters: &netns.Counters{OutRsts: 7}},
	}}
	assert.Empty(t, r.checkFailures())
	r.Rows[0].Counters.AbortOnClose = 1
	assertFailures(t, r.checkFailures(), "apache-deploy/lingerhttp: backend sent RSTs")
}

func TestGRPCNotes(t *testing.T) {
	r := &row{Extra: map[string]float64{"Unavailable": 3, "server conns": 40}}
	assert.Equal(t, "Unavailable: 3; server conns: 40", r.notes())
}

func TestNotesNumbers(t *testing.T) {
	r := &row{Extra: map[string]float64{"Shutdown ms": 1003.4, "p50 ms": 0.2734}}
	assert.Equal(t, "Shutdown ms: 1003; p50 ms: 0.273", r.notes())
}

func TestMarkdownAndSVG(t *testing.T) {
	rsts := int64(3)
	r := &results{RSTSource: "kernel counters", Rows: []*row{{Scenario: "sweep", Variant: "raw", Requests: 3, Counters: &netns.Counters{OutRsts: 3}}},
		Sweep: []*sweepPoint{{Variant: "raw", OffsetMs: 0, Tries: 3, EOF: 3, RSTs: &rsts}}}
	assert.Contains(t, r.markdown(), "| sweep | raw | 3 | 0 | 0 | 0 | 0 | 0 | 3 | 0 / 0 |")
	svg := r.sweepSVG()
	assert.True(t, strings.HasPrefix(svg, "<svg ") && strings.HasSuffix(svg, "</svg>\n"))
	assert.Contains(t, svg, "backend sent 3 RSTs in 3 tries")
}

// Smuggle rows fail on any /admin run, raw's too, and on an attack that
// proves nothing: nginx let /admin through, or an attack did not reach
// the backend.
func TestCheckFailuresSmuggle(t *testing.T) {
	ok := smuggleCounts{Attempts: 10, Reached: 10, Direct: 3, Direct403: 3}
	with := func(f func(*smuggleCounts)) *smuggleCounts {
		s := ok
		f(&s)
		return &s
	}
	r := &results{Rows: []*row{
		{Scenario: "smuggle-http1.0", Variant: "raw", Smuggle: with(func(s *smuggleCounts) { s.AdminRuns = 1 }), Counters: &netns.Counters{OutRsts: 7}},
		{Scenario: "smuggle-http1.0", Variant: "linger", Smuggle: with(func(*smuggleCounts) {})},
		{Scenario: "smuggle-http1.0", Variant: "rescue", Smuggle: with(func(s *smuggleCounts) { s.AdminRuns = 10 })},
		{Scenario: "smuggle-keepalive", Variant: "linger", Smuggle: with(func(s *smuggleCounts) { s.Direct403 = 2 })},
		{Scenario: "smuggle-keepalive", Variant: "rescue", Smuggle: with(func(s *smuggleCounts) { s.Reached = 9 })},
	}}
	assertFailures(t, r.checkFailures(),
		"smuggle-http1.0/raw: the backend's /admin ran 1 times in 10 attacks",
		"smuggle-http1.0/rescue: the backend's /admin ran 10 times",
		"smuggle-keepalive/linger: nginx answered 2 of 3 direct /admin requests with 403",
		"smuggle-keepalive/rescue: 9 of 10 attacks reached the backend",
	)
}

// Smuggle rows get a table of their own; with nothing else run, the main
// table is left out.
func TestMarkdownSmuggle(t *testing.T) {
	r := &results{RSTSource: "kernel counters", Rows: []*row{{
		Scenario: "smuggle-http1.0", Variant: "rescue", Counters: &netns.Counters{OutRsts: 2},
		Smuggle: &smuggleCounts{Attempts: 20, Reached: 20, AdminRuns: 20, Direct: 6, Direct403: 6},
		Extra:   map[string]float64{"backend /admin runs, long": 7},
	}}}
	md := r.markdown()
	assert.NotContains(t, md, "| requests |")
	assert.Contains(t, md, "| smuggle-http1.0 | rescue | 20 | 20 | 20 | 0 | 6 / 6 | 2 |  | backend /admin runs, long: 7 |")

	r.Rows = append(r.Rows, &row{Scenario: "sweep", Variant: "raw", Requests: 3})
	md = r.markdown()
	assert.Contains(t, md, "| requests |")
	assert.Contains(t, md, "| sweep | raw | 3 |")
	assert.Less(t, strings.Index(md, "| sweep | raw"), strings.Index(md, "| smuggle-http1.0 | rescue"))
}

// -publish copies a default run's files, and only those, from the run's
// untracked directory to the tracked one; a quick run or a part of the
// default run is refused before it starts.
func TestPublish(t *testing.T) {
	only := func(names ...string) map[string]bool {
		m := make(map[string]bool)
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	assert.NoError(t, checkPublish(options{}))
	assert.NoError(t, checkPublish(options{publish: true}))
	assert.NoError(t, checkPublish(options{publish: true, only: only("restart")}))
	assert.NoError(t, checkPublish(options{publish: true, only: only("soak")}))
	assert.Error(t, checkPublish(options{publish: true, only: only("soak", "restart")}))
	assert.Error(t, checkPublish(options{publish: true, quick: true}))
	assert.Error(t, checkPublish(options{publish: true, only: only("sweep")}))
	assert.Error(t, checkPublish(options{publish: true, only: only("restart", "sweep")}))

	t.Chdir(t.TempDir())
	o := options{out: "results/latest", publish: true}
	require.NoError(t, os.MkdirAll(o.out, 0o755))
	for _, f := range []string{"README-table.md", "latest.json", "sweep.svg", "restart-table.md", "soak.svg"} {
		require.NoError(t, os.WriteFile(filepath.Join(o.out, f), []byte(f), 0o644))
	}
	require.NoError(t, publish(o))
	for _, f := range []string{"README-table.md", "latest.json", "sweep.svg"} {
		b, err := os.ReadFile(filepath.Join(publishDir, f))
		require.NoError(t, err)
		assert.Equal(t, f, string(b))
	}
	assert.NoFileExists(t, filepath.Join(publishDir, "restart-table.md"), "not a restart run")
	assert.NoFileExists(t, filepath.Join(publishDir, "soak.svg"), "not a soak")

	o.only = only("restart")
	require.NoError(t, publish(o))
	assert.FileExists(t, filepath.Join(publishDir, "restart-table.md"))

	o.only = only("soak")
	require.NoError(t, publish(o))
	assert.FileExists(t, filepath.Join(publishDir, "soak.svg"))
}

// assertFailures checks that bad holds one failure a want, in order, each
// containing its want.
func assertFailures(t *testing.T, bad []string, wants ...string) {
	t.Helper()
	require.Len(t, bad, len(wants), "%q", bad)
	for i, want := range wants {
		assert.Contains(t, bad[i], want)
	}
}
