package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Opt-in scenarios run only when -only names them; the default run skips
// them, for its time budget.
func TestOptInScenarios(t *testing.T) {
	optIn := &scenario{name: "nginx-tls-idle", optIn: true}
	always := &scenario{name: "tls-idle-race"}
	all := &driver{o: options{}}
	assert.False(t, all.selected(optIn))
	assert.True(t, all.selected(always))
	named := &driver{o: options{only: map[string]bool{"nginx-tls-idle": true}}}
	assert.True(t, named.selected(optIn))
	assert.False(t, named.selected(always))
	assert.Equal(t, []string{"nginx-tls-idle", "apache-deploy", "restart", "soak", "faults"}, optInScenarios())
}

// -only takes known scenario names; an unknown one (a row's name, a
// backend's, a typo) is an error that lists the known ones, never a run
// that runs nothing.
func TestParseOnly(t *testing.T) {
	only, err := parseOnly("")
	require.NoError(t, err)
	assert.Empty(t, only, "empty: every scenario but the opt-in ones")

	only, err = parseOnly("sweep,restart")
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"sweep": true, "restart": true}, only)

	for _, bad := range []string{"swep", "grpc-idle", "proxy-idle", "sweep,", "sweep,,idle-race"} {
		_, err := parseOnly(bad)
		require.Error(t, err, "%q", bad)
		assert.Contains(t, err.Error(), "known: unread-close, idle-race,", "%q", bad)
	}
}

// The registry holds together: names are unique, every variant a backend
// names exists, every backend a scenario runs is one the backend process
// finds, and the rows -check holds to account are rows a scenario makes.
func TestRegistry(t *testing.T) {
	seen := make(map[string]bool)
	for _, b := range backends {
		assert.False(t, seen[b.name], "backend %s twice", b.name)
		seen[b.name] = true
		require.NotEmpty(t, b.variants, b.name)
		for _, v := range b.variants {
			_, ok := variantNamed(v)
			assert.True(t, ok, "backend %s names variant %q, which does not exist", b.name, v)
		}
		assert.Len(t, b.variantList(), len(b.variants), "backend %s names a variant twice", b.name)
		serves := 0
		for _, yes := range []bool{b.server != nil, b.handle != nil, b.grpc, b.restart, b.soak} {
			if yes {
				serves++
			}
		}
		assert.Equal(t, 1, serves, "backend %s: exactly one of server, handle, grpc, restart, soak", b.name)
	}

	rows := make(map[string]bool)
	for _, s := range scenarios {
		require.NotNil(t, s.backend, s.name)
		require.NotNil(t, s.run, s.name)
		got, ok := backendNamed(s.backend.name)
		assert.True(t, ok && got == s.backend, "scenario %s's backend %s is not in backends", s.name, s.backend.name)
		for _, v := range s.lossless {
			assert.True(t, s.backend.runs(v), "scenario %s: lossless variant %s does not serve it", s.name, v)
		}
		for _, r := range s.rowNames() {
			assert.False(t, rows[r], "row %s twice", r)
			rows[r] = true
			assert.Same(t, s, scenarioOfRow(r))
		}
	}

	noRSTs, lossless := checkedRows()
	assert.Equal(t, []string{"unread-close", "idle-race", "tls-idle-race", "early-response", "nginx-idle", "haproxy-idle", "apache-idle", "nginx-tls-idle",
		"grpc-idle", "grpc-age", "grpc-gracefulstop", "grpc-agegrace", "churn"}, noRSTs)
	assert.Equal(t, []string{"idle-race/lingerhttp", "tls-idle-race/lingerhttp", "nginx-idle/lingerhttp", "haproxy-idle/lingerhttp", "apache-idle/lingerhttp",
		"nginx-tls-idle/lingerhttp", "shutdown/lingerhttp", "apache-deploy/lingerhttp", "haproxy-deploy/lingerhttp", "node-keepalive-agent/lingerhttp", "node-keepalive-fetch/lingerhttp",
		"restart-nginx/lingerhttp+tableflip", "restart-haproxy/lingerhttp+tableflip", "loss3-idle-race/lingerhttp", "loss3-deploy/lingerhttp"}, lossless)
}
