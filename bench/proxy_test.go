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

// Apache runs on its own configuration: every path it writes is under the
// run's directory, it loads the event MPM and the balancer's modules from
// Debian's directory, and every upstream is a pooled balancer member kept
// 60 s; as root, its children run as the given user.
func TestApacheConf(t *testing.T) {
	conf := func(cfg proxyConfig) string {
		path := filepath.Join(t.TempDir(), "apache2.conf")
		require.NoError(t, writeProxyConf("apache2", path, cfg))
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	cfg := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1", "10.0.0.1:2"}}
	for _, m := range apacheModuleFiles {
		cfg.Modules = append(cfg.Modules, apacheModule{m.name, filepath.Join(apacheModules, m.file)})
	}
	c := conf(cfg)

	var members, loads, paths []string
	for _, line := range strings.Split(c, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "BalancerMember":
			members = append(members, strings.Join(f, " "))
		case "LoadModule":
			loads = append(loads, f[1])
			assert.True(t, strings.HasPrefix(f[2], "/usr/lib/apache2/modules/"), f[2])
		case "ServerRoot", "PidFile", "DefaultRuntimeDir", "ErrorLog", "CustomLog":
			paths = append(paths, strings.Trim(f[1], `"`))
		}
	}
	assert.Equal(t, []string{
		`BalancerMember "http://10.0.0.1:1" keepalive=On ttl=60`,
		`BalancerMember "http://10.0.0.1:2" keepalive=On ttl=60`,
	}, members)
	assert.ElementsMatch(t, []string{"mpm_event_module", "authz_core_module", "slotmem_shm_module", "proxy_module",
		"proxy_http_module", "proxy_balancer_module", "lbmethod_byrequests_module"}, loads)
	assert.Len(t, paths, 5)
	for _, p := range paths {
		assert.True(t, strings.HasPrefix(p, "/d"), "%s is outside the run's directory", p)
	}
	assert.Contains(t, c, `Mutex "file:/d/run" default`)
	assert.Contains(t, c, "Listen 127.0.0.1:8080\n")
	assert.Contains(t, c, `<Proxy "balancer://backends">`)
	assert.Contains(t, c, `ProxyPass "/" "balancer://backends/"`)
	assert.NotContains(t, c, "User ")
	assert.NotContains(t, c, "/etc/apache2")

	cfg.User, cfg.Group = "www-data", "www-data"
	cfg.Upstreams = cfg.Upstreams[:1]
	c = conf(cfg)
	assert.Contains(t, c, "User www-data\nGroup www-data\n")
	assert.Equal(t, 1, strings.Count(c, "BalancerMember"))
}

// Apache's errors count by kind: its error log's messages without
// addresses, and its access log's requests that were not answered 200;
// startup and shutdown notices are not errors.
func TestApacheErrorKinds(t *testing.T) {
	dir := t.TempDir()
	errLog := strings.Join([]string{
		`[mpm_event:notice] (-): AH00489: Apache/2.4.71 (Debian) configured -- resuming normal operations`,
		`[proxy_http:error] (104)Connection reset by peer: AH01102: error reading status line from remote server 10.213.7.1:4242`,
		`[proxy_http:error] (104)Connection reset by peer: AH01102: error reading status line from remote server 10.213.7.1:4343`,
		`[proxy:error] (111)Connection refused: AH00957: http: attempt to connect to 10.213.7.1:4242 (10.213.7.1:4242) failed`,
		`[mpm_event:notice] (-): AH00491: caught SIGTERM, shutting down`,
	}, "\n") + "\n"
	access := "200 + POST\n200 + GET\n502 - POST\n502 - POST\n503 + GET\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "error.log"), []byte(errLog), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "access.log"), []byte(access), 0o644))
	p := &proxy{kind: "apache2", dir: dir}
	assert.Equal(t, map[string]int{
		"apache error: (104)Connection reset by peer: AH01102: error reading status line from remote server ADDR": 2,
		"apache error: (111)Connection refused: AH00957: http: attempt to connect to ADDR (ADDR) failed":          1,
		"apache 502 - POST": 2,
		"apache 503 + GET":  1,
	}, p.errorKinds())
}
