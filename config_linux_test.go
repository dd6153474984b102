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
	assert.Equal(t, maxLingeringFor(rl.Cur), l.cfg.MaxLingering, "from the limit when the Listener is made")
	assert.Equal(t, 7, Wrap(raw, Config{MaxLingering: 7}).cfg.MaxLingering, "a set MaxLingering is kept")
	for _, tc := range []struct {
		limit uint64
		want  int
	}{
		{1024, 4096},       // the floor: minMaxLingering
		{8192, 4096},       // half is the floor
		{20_000, 10_000},   // half; this machine's limit
		{1 << 20, 1 << 19}, // the common 1,048,576
		{1 << 22, 1 << 20}, // the cap: fs.nr_open's default
		{1<<63 - 1, 1 << 20},
	} {
		assert.Equal(t, tc.want, maxLingeringFor(tc.limit), "limit %d", tc.limit)
	}
}
