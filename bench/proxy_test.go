package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// proxyConf is the configuration writeProxyConf writes for a proxy of kind.
func proxyConf(t *testing.T, kind string, cfg proxyConfig) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), kind+".conf")
	require.NoError(t, writeProxyConf(kind, path, cfg))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// The deploy's nginx reload marks exactly the deployed upstream down.
func TestNginxConfDown(t *testing.T) {
	cfg := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1", "10.0.0.1:2"}}
	assert.NotContains(t, proxyConf(t, "nginx", cfg), " down;")

	cfg.Down = map[string]bool{"10.0.0.1:1": true}
	var servers []string
	for _, line := range strings.Split(proxyConf(t, "nginx", cfg), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "server 10.") {
			servers = append(servers, strings.TrimSpace(line))
		}
	}
	assert.Equal(t, []string{
		"server 10.0.0.1:1 max_fails=1 fail_timeout=30s down;",
		"server 10.0.0.1:2 max_fails=1 fail_timeout=30s;",
	}, servers)
}

// nginx's configurations: the smuggle scenario's two both deny /admin
// themselves; its default upstream mode has no keep-alive pool and no
// HTTP/1.1, its keep-alive mode has both, as the other scenarios do.
// nginx-tls-idle's proxies to a backend that terminates TLS, with the
// keep-alive pool the other scenarios use; the others speak plain HTTP.
func TestNginxConf(t *testing.T) {
	base := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1"}}
	denyAdmin := base
	denyAdmin.DenyAdmin = true
	http10 := denyAdmin
	http10.HTTP10 = true
	tlsUpstream := base
	tlsUpstream.TLS = true
	for _, tc := range []struct {
		name        string
		cfg         proxyConfig
		has, hasNot []string
	}{
		{"keep-alive", base, []string{"keepalive 32;", "proxy_http_version 1.1;", "proxy_pass http://backend;"}, []string{"location /admin"}},
		{"smuggle keep-alive", denyAdmin, []string{"location /admin { return 403; }", "keepalive 32;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`}, nil},
		{"smuggle HTTP/1.0", http10, []string{"location /admin { return 403; }", "proxy_pass http://backend;"}, []string{"keepalive 32;", "proxy_http_version", "proxy_set_header"}},
		{"TLS upstream", tlsUpstream, []string{"proxy_pass https://backend;", "keepalive 32;"}, nil},
	} {
		conf := proxyConf(t, "nginx", tc.cfg)
		for _, want := range tc.has {
			assert.Contains(t, conf, want, tc.name)
		}
		for _, not := range tc.hasNot {
			assert.NotContains(t, conf, not, tc.name)
		}
	}
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

// Apache runs on its own configuration: every path it writes is under the
// run's directory, it loads the event MPM and the balancer's modules from
// Debian's directory, and every upstream is a pooled balancer member kept
// 60 s; as root, its children run as the given user.
func TestApacheConf(t *testing.T) {
	cfg := proxyConfig{Dir: "/d", Port: 8080, Upstreams: []string{"10.0.0.1:1", "10.0.0.1:2"}}
	for _, m := range apacheModuleFiles {
		cfg.Modules = append(cfg.Modules, apacheModule{m.name, filepath.Join(apacheModules, m.file)})
	}
	c := proxyConf(t, "apache2", cfg)

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
	c = proxyConf(t, "apache2", cfg)
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
