package netns

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two namespaces joined by a veth pair see each other's address and
// nothing of the host's; Remove deletes them.
func TestVethPair(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) is not installed")
	}
	a, b := fmt.Sprintf("netns-test-%d-a", os.Getpid()), fmt.Sprintf("netns-test-%d-b", os.Getpid())
	if err := Add(a); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() { Remove(a) })
	require.NoError(t, Add(b))
	t.Cleanup(func() { Remove(b) })
	require.NoError(t, Veth(End{NS: a, Dev: "nt0", Addr: "10.213.9.1/24"}, End{NS: b, Dev: "nt1", Addr: "10.213.9.2/24"}))

	out, err := Command(a, "ip", "-o", "-4", "addr", "show").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "10.213.9.1/24")
	assert.NotContains(t, string(out), "10.213.9.2/24")
	out, err = Command(b, "ping", "-c", "1", "-W", "5", "10.213.9.1").CombinedOutput()
	if _, lookErr := exec.LookPath("ping"); lookErr == nil {
		assert.NoError(t, err, "%s", out)
	}

	names, err := List()
	require.NoError(t, err)
	assert.Contains(t, names, a)
	assert.Empty(t, Pids(a))
	in, err := Entered(a)
	require.NoError(t, err)
	assert.False(t, in, "this process is not in the namespace")

	Remove(a)
	names, err = List()
	require.NoError(t, err)
	assert.NotContains(t, names, a)
}
