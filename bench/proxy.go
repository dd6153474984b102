package main

// nginx, HAProxy and Apache httpd in front of the backend, configured as a
// balancer usually is: keep-alive connections to the upstream, held 60 s.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// proxyPath finds a proxy's binary (they live in /usr/sbin, which a
// non-root PATH may lack).
func proxyPath(kind string) string {
	if p, err := exec.LookPath(kind); err == nil {
		return p
	}
	if p := "/usr/sbin/" + kind; fileExists(p) {
		return p
	}
	return ""
}

// apacheModules is where Debian's apache2 package keeps its modules.
const apacheModules = "/usr/lib/apache2/modules"

// apacheModuleFiles are the modules the bench's Apache loads: the event
// MPM, authorization's core and mod_proxy's balancer, nothing else.
var apacheModuleFiles = []struct{ name, file string }{
	{"mpm_event_module", "mod_mpm_event.so"},
	{"authz_core_module", "mod_authz_core.so"}, // without it every request is a 500 (AH00025)
	{"slotmem_shm_module", "mod_slotmem_shm.so"},
	{"proxy_module", "mod_proxy.so"},
	{"proxy_http_module", "mod_proxy_http.so"},
	{"proxy_balancer_module", "mod_proxy_balancer.so"},
	{"lbmethod_byrequests_module", "mod_lbmethod_byrequests.so"},
}

// proxyMissing says why a proxy cannot run here, or "" if it can.
func proxyMissing(kind string) string {
	if proxyPath(kind) == "" {
		return kind + " is not installed (bench/run installs it with apt-get as root)"
	}
	if kind == "apache2" {
		for _, m := range apacheModuleFiles {
			if !fileExists(filepath.Join(apacheModules, m.file)) {
				return "apache2 has no " + filepath.Join(apacheModules, m.file)
			}
		}
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// proxyVersion returns the first line of the proxy's version, or "".
func proxyVersion(kind string) string {
	p := proxyPath(kind)
	if p == "" {
		return ""
	}
	out, _ := exec.Command(p, "-v").CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimPrefix(line, "Server version: ") // Apache's
}

type proxyConfig struct {
	Dir       string
	Port      int
	Upstreams []string
	Down      map[string]bool // upstreams taken out of the rotation (nginx)
	// The smuggle scenario's nginx: it answers /admin with 403 itself,
	// and, with HTTP10, talks to the upstream as nginx does by default
	// (HTTP/1.0, Connection: close, no keep-alive pool).
	DenyAdmin bool
	HTTP10    bool
	// TLS: the upstream terminates TLS (proxy_pass https://; nginx reuses
	// TLS sessions and, by default, verifies nothing).
	TLS bool
	// LossyLink: the link to the upstreams loses packets (the faults
	// scenario). nginx then marks an upstream down only after 5 failed
	// attempts within 10 s (max_fails=5 fail_timeout=10s), not after the
	// first: one connection that a lost packet times out or a request
	// that crosses an idle close is not a dead server, and with both
	// upstreams marked down nginx answers 502 itself ("no live
	// upstreams"), without trying either.
	LossyLink bool
	// Check: HAProxy health-checks every upstream (option httpchk).
	Check *proxyCheck

	// Apache's: where its modules are, and the user its children run as
	// (it refuses to serve as root; empty when not root).
	Modules     []apacheModule
	User, Group string
}

type apacheModule struct{ Name, Path string }

var nginxConf = template.Must(template.New("nginx").Parse(`# lingerbench: nginx as a keep-alive balancer
user root;
daemon off;
master_process on;
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path {{.Dir}}/body;
	proxy_temp_path {{.Dir}}/proxy;
	fastcgi_temp_path {{.Dir}}/fastcgi;
	uwsgi_temp_path {{.Dir}}/uwsgi;
	scgi_temp_path {{.Dir}}/scgi;
	upstream backend {
{{- range .Upstreams}}
		server {{.}} {{if $.LossyLink}}max_fails=5 fail_timeout=10s{{else}}max_fails=1 fail_timeout=30s{{end}}{{if index $.Down .}} down{{end}};
{{- end}}
{{- if not .HTTP10}}
		keepalive 32;
		keepalive_timeout 60s;
		keepalive_requests 100000;
{{- end}}
	}
	server {
		listen 127.0.0.1:{{.Port}};
		keepalive_timeout 60s;
		keepalive_requests 100000;
		client_max_body_size 20m;
{{- if .DenyAdmin}}
		location /admin { return 403; }
{{- end}}
		location / {
			proxy_pass {{if .TLS}}https{{else}}http{{end}}://backend;
{{- if not .HTTP10}}
			proxy_http_version 1.1;
			proxy_set_header Connection "";
{{- end}}
		}
	}
}
`))

var haproxyConf = template.Must(template.New("haproxy").Parse(`# lingerbench: HAProxy as a keep-alive balancer
global
	log stdout format raw local0
	maxconn 4096
	nbthread 1
defaults
	mode http
	log global
	log-format "%ST %tsc %HM"
	timeout connect 5s
	timeout client 60s
	timeout server 60s
	timeout http-keep-alive 60s
	http-reuse always
frontend fe
	bind 127.0.0.1:{{.Port}}
	default_backend be
backend be
{{- with .Check}}
	option httpchk GET {{.Path}}
{{- end}}
{{- range $i, $u := .Upstreams}}
	server s{{$i}} {{$u}}{{with $.Check}} check inter {{.InterMs}}ms fall {{.Fall}} rise {{.Rise}}{{end}}
{{- end}}
`))

// Apache httpd 2.4 as an operator sets it up as a balancer: the event MPM
// with Debian's process and thread counts, mod_proxy_balancer with its
// members' connections pooled (per child process, up to ThreadsPerChild
// each) and kept 60 s (ttl=60; keepalive=On is TCP keep-alive on them, as
// guides write it). Clients' keep-alive is unlimited, so no client-leg
// close mixes into the counts. Everything it writes is under Dir.
var apacheConf = template.Must(template.New("apache2").Parse(`# lingerbench: Apache httpd as a keep-alive balancer
ServerRoot "{{.Dir}}"
ServerName lingerbench
{{- range .Modules}}
LoadModule {{.Name}} {{.Path}}
{{- end}}
{{- if .User}}
User {{.User}}
Group {{.Group}}
{{- end}}
PidFile "{{.Dir}}/apache2.pid"
DefaultRuntimeDir "{{.Dir}}/run"
Mutex "file:{{.Dir}}/run" default
ErrorLog "{{.Dir}}/error.log"
ErrorLogFormat "[%-m:%l] %E: %M"
LogLevel warn
LogFormat "%>s %X %m" status
CustomLog "{{.Dir}}/access.log" status
Listen 127.0.0.1:{{.Port}}
Timeout 60
KeepAlive On
KeepAliveTimeout 60
MaxKeepAliveRequests 0
StartServers 2
MinSpareThreads 25
MaxSpareThreads 75
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 150
MaxConnectionsPerChild 0
<Proxy "balancer://backends">
{{- range .Upstreams}}
	BalancerMember "http://{{.}}" keepalive=On ttl=60
{{- end}}
</Proxy>
ProxyPass "/" "balancer://backends/"
`))

// proxy is a running nginx, HAProxy or Apache.
type proxy struct {
	kind string
	dir  string
	addr string // where clients connect
	conf string // the configuration file
	cfg  proxyConfig
	cmd  *exec.Cmd
	done chan struct{}
}

func startProxy(kind, dir string, upstreams []string) (*proxy, error) {
	return startProxyConfig(kind, dir, proxyConfig{Upstreams: upstreams})
}

// startProxyConfig starts the proxy with cfg, whose Dir and Port it sets.
func startProxyConfig(kind, dir string, cfg proxyConfig) (*proxy, error) {
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg.Dir, cfg.Port = dir, port
	if kind == "apache2" {
		if err := apacheSetup(&cfg); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(dir, kind+".conf")
	if err := writeProxyConf(kind, conf, cfg); err != nil {
		return nil, err
	}

	var cmd *exec.Cmd
	switch kind {
	case "nginx":
		cmd = exec.Command(proxyPath(kind), "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	case "haproxy":
		cmd = exec.Command(proxyPath(kind), "-db", "-f", conf)
	case "apache2":
		// Its own configuration only: -f, and ServerRoot in it; in the
		// foreground, so the parent's PID is cmd's.
		cmd = exec.Command(proxyPath(kind), "-f", conf, "-DFOREGROUND")
	default:
		return nil, fmt.Errorf("unknown proxy %q", kind)
	}
	logf, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proxy{kind: kind, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port), conf: conf, cfg: cfg, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited: %s", kind, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not listen on %s within 5 s: %s", kind, p.addr, p.tail())
		}
	}
}

func writeProxyConf(kind, path string, cfg proxyConfig) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var tmpl *template.Template
	switch kind {
	case "nginx":
		tmpl = nginxConf
	case "haproxy":
		tmpl = haproxyConf
	case "apache2":
		tmpl = apacheConf
	default:
		f.Close()
		return fmt.Errorf("unknown proxy %q", kind)
	}
	err = tmpl.Execute(f, cfg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// apacheSetup fills in Apache's modules and user, and makes its runtime
// directory (mutexes, the balancer's shared memory), which its children
// must be able to use after they drop root.
func apacheSetup(cfg *proxyConfig) error {
	cfg.Modules = nil
	for _, m := range apacheModuleFiles {
		cfg.Modules = append(cfg.Modules, apacheModule{m.name, filepath.Join(apacheModules, m.file)})
	}
	run := filepath.Join(cfg.Dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("www-data")
	if err != nil {
		return fmt.Errorf("apache2 needs a user to run as: %w", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return fmt.Errorf("apache2 needs a group to run as: %w", err)
	}
	cfg.User, cfg.Group = u.Username, g.Name
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(run, uid, gid)
}

// deregister takes upstream out of nginx's rotation the way a deploy tool
// does with nginx OSS (no API, no active health checks): it marks the
// server down in the configuration and reloads (SIGHUP to the master, by
// its PID). It returns once the signal is sent; nginx's new workers take
// over within milliseconds while the old ones finish what they have.
func (p *proxy) deregister(upstream string) error {
	if p.kind != "nginx" {
		return fmt.Errorf("deregister: %s is not supported", p.kind)
	}
	cfg := p.cfg
	cfg.Down = map[string]bool{upstream: true}
	if err := writeProxyConf(p.kind, p.conf, cfg); err != nil {
		return err
	}
	return p.cmd.Process.Signal(syscall.SIGHUP)
}

// stop stops the proxy by its PID: a graceful stop (nginx SIGQUIT, HAProxy
// SIGUSR1; Apache SIGTERM, which stops its children at once, since the
// clients are done by then), then SIGKILL after 5 s.
func (p *proxy) stop() {
	sig := syscall.SIGQUIT
	switch p.kind {
	case "haproxy":
		sig = syscall.SIGUSR1
	case "apache2":
		sig = syscall.SIGTERM
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proxy) tail() string {
	var s []string
	for _, f := range []string{"stdout.log", "error.log"} {
		b, _ := os.ReadFile(filepath.Join(p.dir, f))
		if t := strings.TrimSpace(string(b)); t != "" {
			s = append(s, t)
		}
	}
	return strings.Join(s, "\n")
}

var (
	// "2024/01/02 03:04:05 [error] 12#12: *34 upstream prematurely closed
	// connection while reading response header from upstream, client: ..."
	nginxLogLine = regexp.MustCompile(`^\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$`)
	// "%ST %tsc %HM": "502 SH-- POST", or "-1 SD-- GET" for a client
	// connection closed without a response.
	haproxyLogLine = regexp.MustCompile(`^-?\d+ \S{4} \S+$`)
	// Addresses and ports vary between lines of the same kind, and so do
	// file paths ("a client request body is buffered to a temporary file
	// /.../body/0000000001").
	nginxLogVarying = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+(:\d+)?`)
	nginxLogPath    = regexp.MustCompile(`(^|\s)/\S+`)
	// Apache's, in the bench's ErrorLogFormat "[%-m:%l] %E: %M":
	// "[proxy_http:error] (104)Connection reset by peer: AH01102: error
	// reading status line from remote server 10.213.7.1:4242"; "%E: " is
	// "(-)" when there is no error status.
	apacheLogLine = regexp.MustCompile(`^\[([\w.]+):(\w+)\] (.*)$`)
	// Apache's access log, "%>s %X %m": "502 - POST" (X: aborted before
	// the response completed, +: kept alive, -: closed).
	apacheAccessLine = regexp.MustCompile(`^\d{3} [X+-] \S+$`)
)

// errorKinds counts the proxy's error-log lines by kind: nginx's message
// without the request's details, HAProxy's status and termination state
// of every request that did not end normally, Apache's error-log messages
// and the status and connection end of every request it did not answer
// 200.
func (p *proxy) errorKinds() map[string]int {
	kinds := make(map[string]int)
	if p.kind == "apache2" {
		p.apacheErrorKinds(kinds)
		return kinds
	}
	var file string
	switch p.kind {
	case "nginx":
		file = "error.log"
	case "haproxy":
		file = "stdout.log"
	}
	f, err := os.Open(filepath.Join(p.dir, file))
	if err != nil {
		return kinds
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch p.kind {
		case "nginx":
			m := nginxLogLine.FindStringSubmatch(line)
			if m == nil || m[1] == "notice" {
				continue
			}
			msg := nginxLogVarying.ReplaceAllString(m[2], "ADDR")
			kinds["nginx "+m[1]+": "+nginxLogPath.ReplaceAllString(msg, "${1}PATH")]++
		case "haproxy":
			if !haproxyLogLine.MatchString(line) {
				continue // startup messages
			}
			if line == "400 CR-- <BADREQ>" || strings.Contains(line, " ---- ") {
				continue // startProxy's probe (connected, sent nothing), or normal
			}
			kinds["haproxy "+line]++
		}
	}
	return kinds
}

func (p *proxy) apacheErrorKinds(kinds map[string]int) {
	scan := func(file string, line func(string)) {
		f, err := os.Open(filepath.Join(p.dir, file))
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line(strings.TrimSpace(sc.Text()))
		}
	}
	scan("error.log", func(line string) {
		m := apacheLogLine.FindStringSubmatch(line)
		if m == nil || m[2] == "notice" || m[2] == "info" || strings.HasPrefix(m[2], "debug") || strings.HasPrefix(m[2], "trace") {
			return // startup and shutdown notices
		}
		msg := strings.TrimPrefix(m[3], "(-): ")
		msg = nginxLogVarying.ReplaceAllString(msg, "ADDR")
		kinds["apache "+m[2]+": "+nginxLogPath.ReplaceAllString(msg, "${1}PATH")]++
	})
	scan("access.log", func(line string) {
		if apacheAccessLine.MatchString(line) && !strings.HasPrefix(line, "200 ") {
			kinds["apache "+line]++
		}
	})
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
