package netns

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSNMP(t *testing.T) {
	m, err := ParseSNMP("Tcp: RtoAlgorithm MaxConn OutRsts\nTcp: 1 -1 42\nUdp: InDatagrams\nUdp: 7\n" +
		"TcpExt: SyncookiesSent TCPAbortOnData TCPAbortOnClose\nTcpExt: 0 3 5\n")
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{
		"Tcp:RtoAlgorithm": 1, "Tcp:MaxConn": -1, "Tcp:OutRsts": 42,
		"Udp:InDatagrams":       7,
		"TcpExt:SyncookiesSent": 0, "TcpExt:TCPAbortOnData": 3, "TcpExt:TCPAbortOnClose": 5,
	}, m)
	c, err := CountersOf(m)
	require.NoError(t, err)
	assert.Equal(t, Counters{OutRsts: 42, AbortOnClose: 5, AbortOnData: 3}, c)

	_, err = ParseSNMP("Tcp: A B\nTcp: 1\n")
	assert.Error(t, err, "fewer values than names")
	_, err = ParseSNMP("Tcp: A\nTcp: x\n")
	assert.Error(t, err, "a value that is not a number")
	_, err = CountersOf(map[string]int64{"Tcp:OutRsts": 1})
	assert.Error(t, err, "no TcpExt counters")
}

// The real files parse, and hold the reset counters.
func TestReadCounters(t *testing.T) {
	m, err := ReadSNMP()
	if err != nil {
		t.Skipf("no /proc/net/snmp here: %v", err)
	}
	assert.Contains(t, m, "Tcp:OutRsts")
	_, err = ReadCounters()
	assert.NoError(t, err)
}

func TestCountersArithmetic(t *testing.T) {
	a := Counters{OutRsts: 5, AbortOnClose: 3, AbortOnData: 1}
	b := Counters{OutRsts: 2, AbortOnClose: 1, AbortOnData: 1}
	assert.Equal(t, Counters{3, 2, 0}, a.Sub(b))
	assert.Equal(t, a, a.Sub(b).Add(b))
}
