package main

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/linger-go/linger/bench/internal/postload"
	"github.com/linger-go/linger/internal/netns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary be a restart generation, as the bench
// binary is one: the control starts it with -role restart-gen, and
// tableflip re-executes it with the same arguments.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "-role" && os.Args[2] == "restart-gen" {
		main()
	}
	os.Exit(m.Run())
}

// TestRestartGenerations restarts the restart scenario's backend in place
// on loopback, under keep-alive POSTs sent to it directly: lingerhttp with
// tableflip loses nothing and leaves no gap; net/http stopped and started
// again, the control, has its connects refused while no process listens.
func TestRestartGenerations(t *testing.T) {
	for _, variant := range []string{"lingerhttp+tableflip", "raw"} {
		t.Run(variant, func(t *testing.T) {
			// The generations exit at once under the race detector too.
			t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			rr, err := startRestart("127.0.0.1", variant)
			require.NoError(t, err)
			stopped := false
			t.Cleanup(func() {
				if !stopped {
					rr.stop()
				}
			})
			tr := &http.Transport{MaxIdleConnsPerHost: 4}
			cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			t.Cleanup(tr.CloseIdleConnections)
			load := postload.Start(cl, "http://"+rr.addr+"/", 4, 20_000, postBody, nil)
			var gaps []float64
			for range 3 {
				time.Sleep(200 * time.Millisecond) // pacing: load between restarts
				gap, err := rr.restart()
				require.NoError(t, err)
				gaps = append(gaps, gap)
			}
			time.Sleep(200 * time.Millisecond) // pacing: load after the last restart
			refused, failures := load.Stop()
			tr.CloseIdleConnections()
			res, stats := rr.stop()
			stopped = true

			assert.Empty(t, res.Errors)
			assert.Equal(t, 3, res.Restarts)
			assert.Positive(t, load.OK())
			t.Logf("%s: %d ok, %d refused, failures %q; gaps %v ms; drains %v ms; stats %+v",
				variant, load.OK(), refused, failures, gaps, res.DrainMs, stats)
			if variant == "raw" {
				for _, g := range gaps {
					assert.Positive(t, g, "control: no process listens for a while")
				}
				assert.Positive(t, refused, "control: connects are refused meanwhile")
				return
			}
			assert.Empty(t, failures, "failed requests")
			assert.Zero(t, refused, "the socket never closes")
			for _, g := range gaps {
				assert.Negative(t, g, "the new generation serves before the old one stops")
			}
			require.NotNil(t, stats)
			assert.Equal(t, stats.Accepted, stats.Closed(), "every accepted connection was closed")
		})
	}
}

func TestRestartTableAndCheck(t *testing.T) {
	r := &results{Rows: []*row{
		{Scenario: "restart-nginx", Variant: "raw", Requests: 10, OK: 8, Status502: 2, Counters: &netns.Counters{OutRsts: 2},
			Restart: &restartCounts{Restarts: 2, Refused: 2, GapMaxMs: 12.5, Overlap: -1}, Extra: map[string]float64{}},
		{Scenario: "restart-nginx", Variant: "lingerhttp+tableflip", Requests: 10, OK: 10, Counters: &netns.Counters{},
			Restart: &restartCounts{Restarts: 2, GapMaxMs: 0, Overlap: 0.05}, Extra: map[string]float64{}},
		{Scenario: "restart-haproxy", Variant: "lingerhttp+tableflip", Requests: 10, OK: 10, Counters: &netns.Counters{},
			Restart: &restartCounts{Restarts: 2, Refused: 1, Overlap: 0.05}, Extra: map[string]float64{}},
	}}
	md := r.markdown()
	assert.Contains(t, md, "| restart-nginx | raw | 2 | 10 | 8 | 2 | 0 | 0 | 0 | 2 | 12.5 | 2 | 0 / 0 |")
	assert.Contains(t, md, "| restart-nginx | lingerhttp+tableflip | 2 | 10 | 10 | 0 | 0 | 0 | 0 | 0 | 0 (overlap ≥ 0.05) | 0 |")
	assert.NotContains(t, md, "| scenario | variant | requests | OK |", "no empty main table")
	assertFailures(t, r.checkFailures(),
		"restart-haproxy/lingerhttp+tableflip: the backend refused 1",
	)
}
