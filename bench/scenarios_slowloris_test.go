package main

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connFDs counts this process's descriptors for connections on a local
// port: the accepted ends, not the listening socket nor the dialing ends
// (whose local port is another), and not after they are closed.
func TestConnFDs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	n, err := connFDs(port)
	require.NoError(t, err)
	assert.Equal(t, 0, n, "the listening socket is not counted")

	var dialed, accepted []net.Conn
	defer func() {
		for _, c := range append(dialed, accepted...) {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		dialed = append(dialed, c)
		a, err := ln.Accept()
		require.NoError(t, err)
		accepted = append(accepted, a)
	}
	n, err = connFDs(port)
	require.NoError(t, err)
	assert.Equal(t, 3, n)

	require.NoError(t, accepted[0].Close())
	n, err = connFDs(port)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "a closed connection holds no descriptor")
}

// -check holds lingerhttp's slowloris rows to their bar (Shutdown within
// its bound, before its deadline, no descriptor left, every peer set up)
// and raw's to none.
func TestSlowlorisCheck(t *testing.T) {
	good := func() *slowlorisCounts {
		return &slowlorisCounts{Reused: 50, HalfLines: 25, SetUp: 75, ShutdownMs: 6000, BoundMs: 10000}
	}
	check := func(variant string, sl *slowlorisCounts) []string {
		r := &results{Rows: []*row{{Scenario: "slowloris-deploy", Variant: variant, Slowloris: sl}}}
		return r.checkFailures()
	}
	assert.Empty(t, check("lingerhttp", good()))

	slow := good()
	slow.ShutdownMs = 10001
	assert.Equal(t, []string{"slowloris-deploy/lingerhttp: Shutdown took 10.00 s, above its bound 10 s"}, check("lingerhttp", slow))

	hit := good()
	hit.DeadlineHit, hit.ShutdownMs = true, 20000
	assert.Equal(t, []string{"slowloris-deploy/lingerhttp: Shutdown ran into its deadline"}, check("lingerhttp", hit))

	held := good()
	held.FDsAtEnd = 2
	assert.Equal(t, []string{"slowloris-deploy/lingerhttp: 2 connection descriptors held after Shutdown returned"}, check("lingerhttp", held))

	few := good()
	few.SetUp = 70
	assert.Equal(t, []string{"slowloris-deploy/lingerhttp: 70 of 75 peers set up, so the scenario tested too little"}, check("lingerhttp", few))

	assert.Empty(t, check("raw", hit), "raw is the control")
}
