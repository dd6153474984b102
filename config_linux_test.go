package linger

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// On Linux the zero MaxLingering is half the descriptor limit, at least
// minMaxLingering.
func TestDefaultMaxLingeringFollowsTheDescriptorLimit(t *testing.T) {
	var rl unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &rl))
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer raw.Close()
	l := Wrap(raw, Config{})
	assert.Equal(t, int(max(minMaxLingering, min(rl.Cur/2, 1<<20))), l.cfg.MaxLingering)
	assert.GreaterOrEqual(t, l.cfg.MaxLingering, minMaxLingering)
	assert.Equal(t, 7, Wrap(raw, Config{MaxLingering: 7}).cfg.MaxLingering, "a set MaxLingering is kept")
}
