package main

import (
	"testing"

	"github.com/linger-go/linger/internal/netns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The deploy row says how each deploy went, so a rate shows: failed
// requests per deploy with their send times, close-abort RSTs per deploy,
// Shutdown's times and deadline hits; latest.json keeps every deploy.
func TestSummarizeDeploys(t *testing.T) {
	r := &row{Extra: map[string]float64{}}
	summarizeDeploys(r, []deployRun{
		{shutdown: &shutdownReport{Ms: 1001}, counters: &netns.Counters{OutRsts: 2}},
		{failed: 2, failures: []deployFailure{{1000.4, "eof"}, {-0.2, "502"}}, shutdown: &shutdownReport{Ms: 3950}, counters: &netns.Counters{OutRsts: 3, AbortOnData: 1}},
		{shutdown: &shutdownReport{Ms: 10100, DeadlineHit: true}, counters: &netns.Counters{AbortOnClose: 1}, rescued: 1},
	})
	assert.Equal(t, "3 deploys, 1 lost requests: failed per deploy 0,2,0; sent at ms -0 502, +1000 eof from the moment the backend was told to stop; "+
		"close-abort RSTs per deploy 0,1,1; Shutdown s 1.0,4.0,10.1 (1 hit the 10 s deadline)", r.Note)
	require.Len(t, r.Deploys, 3)
	assert.Equal(t, 2, r.Deploys[1].Failed)
	assert.Equal(t, int64(1), *r.Deploys[1].CloseAborts)
	assert.Equal(t, int64(3), *r.Deploys[1].RSTs)
	assert.True(t, r.Deploys[2].DeadlineHit)
	assert.Equal(t, int64(1), r.Deploys[2].Rescued)
}
