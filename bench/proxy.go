package main

// nginx and HAProxy in front of the backend, configured as a balancer
// usually is: keep-alive connections to the upstream, held 60 s.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	return line
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
}

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
		server {{.}} max_fails=1 fail_timeout=30s{{if index $.Down .}} down{{end}};
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
{{- range $i, $u := .Upstreams}}
	server s{{$i}} {{$u}}
{{- end}}
`))

// proxy is a running nginx or HAProxy.
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
	tmpl := nginxConf
	if kind == "haproxy" {
		tmpl = haproxyConf
	}
	err = tmpl.Execute(f, cfg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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
// SIGUSR1), then SIGKILL after 5 s.
func (p *proxy) stop() {
	sig := syscall.SIGQUIT
	if p.kind == "haproxy" {
		sig = syscall.SIGUSR1
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
)

// errorKinds counts the proxy's error-log lines by kind: nginx's message
// without the request's details, HAProxy's status and termination state
// of every request that did not end normally.
func (p *proxy) errorKinds() map[string]int {
	kinds := make(map[string]int)
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

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
