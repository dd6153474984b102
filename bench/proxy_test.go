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

// The smuggle scenario's two nginx configurations: both deny /admin
// themselves; the default upstream mode has no keep-alive pool and no
// HTTP/1.1, the keep-alive mode has both, as the other scenarios do.
func TestNginxConfSmuggle(t *testing.T) {
	conf := func(cfg proxyConfig) string {
		path := filepath.Join(t.TempDir(), "nginx.conf")
		require.NoError(t, writeProxyConf("nginx", path, cfg))
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	base := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1"}}
	plain := conf(base)
	assert.NotContains(t, plain, "location /admin")
	assert.Contains(t, plain, "keepalive 32;")
	assert.Contains(t, plain, "proxy_http_version 1.1;")

	keepAlive := base
	keepAlive.DenyAdmin = true
	ka := conf(keepAlive)
	assert.Contains(t, ka, "location /admin { return 403; }")
	assert.Contains(t, ka, "keepalive 32;")
	assert.Contains(t, ka, "proxy_http_version 1.1;")
	assert.Contains(t, ka, `proxy_set_header Connection "";`)

	http10 := keepAlive
	http10.HTTP10 = true
	h := conf(http10)
	assert.Contains(t, h, "location /admin { return 403; }")
	assert.Contains(t, h, "proxy_pass http://backend;")
	assert.NotContains(t, h, "keepalive 32;")
	assert.NotContains(t, h, "proxy_http_version")
	assert.NotContains(t, h, "proxy_set_header")
}

// nginx's error-log lines count by kind: addresses and file paths, which
// differ from line to line, do not make kinds of their own.
func TestNginxErrorKinds(t *testing.T) {
	dir := t.TempDir()
	log := strings.Join([]string{
		`2026/11/25 16:42:29 [warn] 12845#12845: *2 a client request body is buffered to a temporary file /tmp/x/run-1/body/0000000001, client: 127.0.0.1, server: , request: "POST /login HTTP/1.1", host: "bench"`,
		`2026/11/25 16:42:30 [warn] 12845#12845: *9 a client request body is buffered to a temporary file /tmp/x/run-1/body/0000000002, client: 127.0.0.1, server: , request: "POST /login HTTP/1.1", host: "bench"`,
		`2026/11/25 16:42:31 [error] 12845#12845: *4 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://10.213.7.1:4242/", host: "bench"`,
		`2026/11/25 16:42:32 [notice] 12845#12845: signal process started`,
	}, "\n") + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "error.log"), []byte(log), 0o644))
	p := &proxy{kind: "nginx", dir: dir}
	assert.Equal(t, map[string]int{
		"nginx warn: a client request body is buffered to a temporary file PATH":                          2,
		"nginx error: upstream prematurely closed connection while reading response header from upstream": 1,
	}, p.errorKinds())
}

// nginx-tls-idle's nginx proxies to a backend that terminates TLS, with
// the keep-alive pool the other scenarios use; the others speak plain
// HTTP.
func TestNginxConfTLSUpstream(t *testing.T) {
	conf := func(cfg proxyConfig) string {
		path := filepath.Join(t.TempDir(), "nginx.conf")
		require.NoError(t, writeProxyConf("nginx", path, cfg))
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	base := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1"}}
	assert.Contains(t, conf(base), "proxy_pass http://backend;")
	base.TLS = true
	tls := conf(base)
	assert.Contains(t, tls, "proxy_pass https://backend;")
	assert.Contains(t, tls, "keepalive 32;")
}

// Opt-in scenarios run only when -only names them; the default run skips
// them, for its time budget.
func TestOptInScenarios(t *testing.T) {
	optIn := scenario{name: "nginx-tls-idle", optIn: true}
	always := scenario{name: "tls-idle-race"}
	all := &driver{o: options{}}
	assert.False(t, all.selected(optIn))
	assert.True(t, all.selected(always))
	named := &driver{o: options{only: map[string]bool{"nginx-tls-idle": true}}}
	assert.True(t, named.selected(optIn))
	assert.False(t, named.selected(always))
	assert.Equal(t, []string{"nginx-tls-idle"}, optInScenarios())
}
