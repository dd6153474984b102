package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The deploy's nginx reload marks exactly the deployed upstream down.
func TestNginxConfDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nginx.conf")
	cfg := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1", "10.0.0.1:2"}}
	require.NoError(t, writeProxyConf("nginx", path, cfg))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(b), " down;")

	cfg.Down = map[string]bool{"10.0.0.1:1": true}
	require.NoError(t, writeProxyConf("nginx", path, cfg))
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	var servers []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "server 10.") {
			servers = append(servers, strings.TrimSpace(line))
		}
	}
	assert.Equal(t, []string{
		"server 10.0.0.1:1 max_fails=1 fail_timeout=30s down;",
		"server 10.0.0.1:2 max_fails=1 fail_timeout=30s;",
	}, servers)
}
