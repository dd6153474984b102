package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A Node kind's counts land in its row: resets (ECONNRESET, "socket hang
// up", fetch's ECONNRESET cause) under ECONNRESET, other failures under
// other, each named in the notes with the offsets they were sent at.
func TestAddNodeResult(t *testing.T) {
	d := &driver{rows: make(map[string]*row)}
	s := &scenario{name: "node-keepalive", rows: nodeRowNames()}
	d.addNodeResult(s, "raw", nodeResult{
		Kind: "agent", Requests: 600, OK: 590, Reused: 100,
		Failures:  map[string]int{"ECONNRESET (socket hang up)": 8, "fetch failed: UND_ERR_SOCKET": 2},
		Offsets:   map[string]int{"3": 7, "-12": 3},
		KeepAlive: map[string]int{"(none)": 800},
		PerLane:   true,
	})
	r := d.rows["node-keepalive-agent/raw"]
	if assert.NotNil(t, r) {
		assert.Equal(t, 600, r.Requests)
		assert.Equal(t, 590, r.OK)
		assert.Equal(t, 8, r.Reset)
		assert.Equal(t, 2, r.Other)
		assert.Equal(t, "failed at gap offsets ms -12×3 +3×7; ECONNRESET (socket hang up): 8; Keep-Alive (none): 800; fetch failed: UND_ERR_SOCKET: 2; reused: 100", r.notes())
	}
	d.addNodeResult(s, "raw", nodeResult{Kind: "curl", Requests: 1})
	assert.Len(t, d.rows, 1, "a kind without a row makes none")
}
