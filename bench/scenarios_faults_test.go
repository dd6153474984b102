package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// For a lossy link nginx marks an upstream down after 5 failures in 10 s,
// not after the first; the deploy's reload still marks the deployed one
// down.
func TestNginxConfLossyLink(t *testing.T) {
	cfg := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1", "10.0.0.1:2"}, LossyLink: true, Down: map[string]bool{"10.0.0.1:1": true}}
	var servers []string
	for _, line := range strings.Split(proxyConf(t, "nginx", cfg), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "server 10.") {
			servers = append(servers, strings.TrimSpace(line))
		}
	}
	assert.Equal(t, []string{
		"server 10.0.0.1:1 max_fails=5 fail_timeout=10s down;",
		"server 10.0.0.1:2 max_fails=5 fail_timeout=10s;",
	}, servers)
}

// The faults rows hold lingerhttp to no failed request, and their deploy's
// nginx is set for the lossy link.
func TestFaultsScenario(t *testing.T) {
	s := scenarioOfRow(faultRowNames[1])
	require.NotNil(t, s)
	assert.Equal(t, "faults", s.name)
	assert.Equal(t, s, scenarioOfRow(faultRowNames[0]))
	assert.True(t, s.optIn)
	assert.True(t, s.lossyLink)
	assert.Equal(t, []string{"lingerhttp"}, s.lossless)
	for _, b := range []*backend{faultsIdleRaceBackend, faultsDeployBackend} {
		got, ok := backendNamed(b.name)
		require.True(t, ok, "the backend process finds %s", b.name)
		assert.Equal(t, b, got)
	}
}
