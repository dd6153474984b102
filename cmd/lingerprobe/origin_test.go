package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nginx and Apache httpd as origin servers, started by the tests on
// 127.0.0.1 with their own configuration in a temporary directory. They are
// skipped where the server is not installed: bench/run installs both with
// apt-get as root.

// freePort is a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// startServer runs cmd until the test ends and waits, up to 10 s, until
// port accepts connections.
func startServer(t *testing.T, cmd *exec.Cmd, port int, logPath string) {
	t.Helper()
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited: %v: %s", cmd.Path, err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("%s does not listen on %s after 10 s: %s", cmd.Path, addr, log)
		}
	}
}

// binary is the path of name on PATH or in /usr/sbin, or the test skips.
func binary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); fileExists(p) {
		return p
	}
	t.Skipf("%s is not installed (bench/run installs it with apt-get as root)", name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// nginx as an origin with keepalive_timeout 2s: the probe finds 2 s and
// the FIN, takes it for nginx and gives nginx's setting first; nginx reads
// and discards the body of a POST it answers 404, so the answer arrives
// whole.
func TestNginxOrigin(t *testing.T) {
	t.Parallel()
	bin := binary(t, "nginx")
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`# lingerprobe test: nginx as an origin server
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 512; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		keepalive_timeout 2s;
		location = / { return 200 "hello\n"; }
		location / { return 404; }
	}
}
`, dir, port)), 0o644))
	log := filepath.Join(dir, "error.log")
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", log)
	startServer(t, cmd, port, log)

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	code, rep := probeJSON(t, url, "-lb", "nginx", "-lb-idle", "3s", "-max-idle", "5s", "-n", "20", "-conns", "40", "-early-tries", "2", "-max-requests", "20")
	assert.Equal(t, exitRaces, code)
	assert.True(t, rep.Idle.Closed)
	assert.InDelta(t, 2.0, rep.Idle.TimeoutSecs, 0.3)
	assert.Equal(t, endFIN, rep.Idle.End)
	assert.True(t, strings.HasPrefix(rep.Idle.Server, "nginx"), rep.Idle.Server)
	assert.Equal(t, "nginx", rep.Verdict.Backend)
	require.NotEmpty(t, rep.Verdict.FixBackend)
	assert.Equal(t, "nginx: keepalive_timeout 8s;", rep.Verdict.FixBackend[0])
	require.NotNil(t, rep.Early)
	assert.Equal(t, 2, rep.Early.Whole)
	assert.Equal(t, []int{404}, rep.Early.Statuses)
	require.NotNil(t, rep.Race)
	for _, m := range rep.Race.Methods {
		t.Logf("%s around nginx's idle close: %+v", m.Method, m)
	}
}

// Apache httpd (event MPM) as an origin with KeepAliveTimeout 2 and
// MaxKeepAliveRequests 10: the probe finds the 2 s, the header
// "Keep-Alive: timeout=2, max=10", the limit (11 requests: Apache counts
// those after the first), and gives Apache's setting first.
func TestApacheOrigin(t *testing.T) {
	t.Parallel()
	bin := binary(t, "apache2")
	const modules = "/usr/lib/apache2/modules"
	for _, m := range []string{"mod_mpm_event.so", "mod_authz_core.so"} {
		if !fileExists(filepath.Join(modules, m)) {
			t.Skipf("apache2 has no %s", filepath.Join(modules, m))
		}
	}
	dir := t.TempDir()
	// Apache's children read the document root after they drop root.
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	docs := filepath.Join(dir, "htdocs")
	require.NoError(t, os.MkdirAll(docs, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(docs, "index.html"), []byte("hello\n"), 0o644))
	run := filepath.Join(dir, "run")
	require.NoError(t, os.MkdirAll(run, 0o755))
	userLines := ""
	if os.Geteuid() == 0 {
		u, err := user.Lookup("www-data")
		if err != nil {
			t.Skipf("apache2 as root needs a user to run as: %v", err)
		}
		g, err := user.LookupGroupId(u.Gid)
		require.NoError(t, err)
		userLines = fmt.Sprintf("User %s\nGroup %s\n", u.Username, g.Name)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(run, uid, gid))
	}
	port := freePort(t)
	conf := filepath.Join(dir, "apache2.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`# lingerprobe test: Apache httpd as an origin server
ServerRoot "%[1]s"
ServerName lingerprobe
LoadModule mpm_event_module %[3]s/mod_mpm_event.so
LoadModule authz_core_module %[3]s/mod_authz_core.so
%[4]sPidFile "%[1]s/apache2.pid"
DefaultRuntimeDir "%[1]s/run"
Mutex "file:%[1]s/run" default
ErrorLog "%[1]s/error.log"
LogLevel warn
Listen 127.0.0.1:%[2]d
DocumentRoot "%[1]s/htdocs"
<Directory "%[1]s/htdocs">
	Require all granted
</Directory>
KeepAlive On
KeepAliveTimeout 2
MaxKeepAliveRequests 10
StartServers 1
ServerLimit 1
ThreadsPerChild 25
ThreadLimit 64
MaxRequestWorkers 25
`, dir, port, modules, userLines)), 0o644))
	cmd := exec.Command(bin, "-f", conf, "-DFOREGROUND")
	startServer(t, cmd, port, filepath.Join(dir, "error.log"))

	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", port)
	code, rep := probeJSON(t, url, "-lb", "alb", "-lb-idle", "3s", "-max-idle", "5s", "-n", "20", "-conns", "20", "-early-tries", "2", "-max-requests", "20")
	assert.Equal(t, exitRaces, code)
	assert.True(t, rep.Idle.Closed)
	assert.InDelta(t, 2.0, rep.Idle.TimeoutSecs, 0.5)
	assert.Equal(t, "timeout=2, max=10", rep.Idle.KeepAliveHeader)
	assert.True(t, strings.HasPrefix(rep.Idle.Server, "Apache"), rep.Idle.Server)
	assert.Equal(t, "apache", rep.Verdict.Backend)
	require.NotEmpty(t, rep.Verdict.FixBackend)
	assert.Equal(t, "Apache httpd: KeepAliveTimeout 8", rep.Verdict.FixBackend[0])
	require.NotNil(t, rep.MaxRequests)
	assert.Equal(t, 11, rep.MaxRequests.Limit)
	require.NotNil(t, rep.Early)
	t.Logf("idle close: %s after %.3f s; early response: %+v", rep.Idle.End, rep.Idle.TimeoutSecs, *rep.Early)
	require.NotNil(t, rep.Race)
	for _, m := range rep.Race.Methods {
		t.Logf("%s around Apache's idle close: %+v", m.Method, m)
	}
}
