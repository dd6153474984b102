package main

// The registry: every scenario, with what its backend serves, the variants
// that serve it, the clients that drive it and what -check holds it to,
// in one list. The driver runs them in this order and prints their rows in
// this order.

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// A backend is what the backend process serves for a scenario run: a
// net/http server, a raw TCP handler, the gRPC server or the restart
// scenario's processes, on the listener each of its variants makes. The
// driver names it in its start request.
type backend struct {
	name string
	// variants are the variants that serve it, by name (each one of
	// [variants]); the driver alternates them in the order of variants.
	variants []string
	// What serves: server (net/http; over TLS if its TLSConfig is set),
	// else handle (each accepted connection), else grpc or restart.
	server func() *http.Server
	handle func(net.Conn)
	// grpc: grpcload.Serve serves the close path the start request
	// names; the driver runs the clients.
	grpc bool
	// restart: its servers are processes of their own (restart.go).
	restart bool
	// soak: the soak's servers, its own (soak_backend.go).
	soak bool
	// deploy: a rolling deploy, two servers, of which the shutdown event
	// takes the first away. scrape: that server's listener is also
	// exported through lingerprom and scraped before and after.
	deploy, scrape bool
	// peerFDs: the shutdown event also reports the descriptors the
	// deployed server held for connections (slowloris-deploy).
	peerFDs bool
	// drainDelay: the deployed server's lingerhttp DrainDelay; zero
	// means deployDrainDelay.
	drainDelay time.Duration
	// lingerAll: every close lingers until the driver lets go, so
	// nothing may time out or be shed (memory per lingering connection);
	// it replaces the variant's listener.
	lingerAll bool
}

// quiet is the backends' servers' ErrorLog: the clients count what goes
// wrong.
var quiet = log.New(io.Discard, "", 0)

var (
	unreadCloseBackend = &backend{name: "unread-close", variants: []string{"raw", "linger"}, handle: unreadCloseHandler}
	idleRaceBackend    = &backend{name: "idle-race", variants: []string{"raw", "linger", "rescue", "lingerhttp"}, server: func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(echoHandler(2)), IdleTimeout: idleRaceTimeout, ErrorLog: quiet}
	}}
	// The TLS idle race compares http.Server.ServeTLS with lingerhttp's,
	// in the time the default run has left.
	tlsIdleRaceBackend = &backend{name: "tls-idle-race", variants: []string{"raw", "lingerhttp"}, server: func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(echoHandler(2)), IdleTimeout: idleRaceTimeout, ErrorLog: quiet, TLSConfig: backendTLS()}
	}}
	sweepBackend         = &backend{name: "sweep", variants: []string{"raw", "linger"}, handle: sweepHandler}
	earlyResponseBackend = &backend{name: "early-response", variants: []string{"raw", "linger"}, server: func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(earlyHandler), ErrorLog: quiet}
	}}
	proxyIdleBackend = &backend{name: "proxy-idle", variants: []string{"raw", "linger", "rescue", "lingerhttp"}, server: func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(echoHandler(proxyReplySize)), IdleTimeout: proxyIdleTimeout, ErrorLog: quiet}
	}}
	proxyIdleTLSBackend = &backend{name: "proxy-idle-tls", variants: []string{"raw", "linger", "lingerhttp"}, server: func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(echoHandler(proxyReplySize)), IdleTimeout: proxyIdleTimeout, ErrorLog: quiet, TLSConfig: backendTLS()}
	}}
	shutdownBackend     = &backend{name: "shutdown", variants: []string{"raw", "linger", "lingerhttp", "raw+prestop"}, server: deployServer, deploy: true, scrape: true}
	apacheDeployBackend = &backend{name: "apache-deploy", variants: []string{"raw", "linger", "lingerhttp", "raw+prestop"}, server: deployServer, deploy: true}
	smuggleBackend      = &backend{name: "smuggle", variants: []string{"raw", "linger", "rescue", "lingerhttp"}, server: func() *http.Server {
		// Bounded reads, so no connection nginx left half-sent keeps
		// Shutdown waiting.
		return &http.Server{Handler: &smuggleHandler{}, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, ErrorLog: quiet}
	}}
	grpcBackend         = &backend{name: "grpc", variants: []string{"raw", "linger"}, grpc: true}
	overheadBackend     = &backend{name: "overhead", variants: []string{"raw", "linger", "lingerhttp"}, server: helloServer}
	memoryBackend       = &backend{name: "memory", variants: []string{"raw"}, handle: func(c net.Conn) { c.Close() }, lingerAll: true}
	shutdownIdleBackend = &backend{name: "shutdown-idle", variants: []string{"raw", "linger"}, server: helloServer}
	// raw: net/http stopped and started again; the others restarted
	// with tableflip.
	restartBackend = &backend{name: "restart", variants: []string{"raw", "raw+tableflip", "linger+tableflip", "lingerhttp+tableflip"}, restart: true}
)

// backends are every backend, for the backend process to find by name.
var backends = []*backend{
	unreadCloseBackend, idleRaceBackend, tlsIdleRaceBackend, sweepBackend, earlyResponseBackend,
	proxyIdleBackend, proxyIdleTLSBackend, shutdownBackend, apacheDeployBackend, smuggleBackend,
	grpcBackend, overheadBackend, memoryBackend, shutdownIdleBackend, restartBackend,
	slowlorisBackend, slowlorisRHTBackend, nodeKeepAliveBackend, soakBackend, churnBackend,
	haproxyDeployBackend,
}

func backendNamed(name string) (*backend, bool) {
	i := slices.IndexFunc(backends, func(b *backend) bool { return b.name == name })
	if i < 0 {
		return nil, false
	}
	return backends[i], true
}

// runs reports whether variant v serves b.
func (b *backend) runs(v string) bool { return slices.Contains(b.variants, v) }

// variantList is b's variants in the order of [variants].
func (b *backend) variantList() []variant {
	var vs []variant
	for _, v := range variants {
		if b.runs(v.name) {
			vs = append(vs, v)
		}
	}
	return vs
}

// deployServer is the server a rolling deploy takes away.
func deployServer() *http.Server {
	h := echoHandler(proxyReplySize)
	slow := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // some work, so a deploy finds requests in flight
		h(w, r)
	}
	return &http.Server{Handler: http.HandlerFunc(slow), IdleTimeout: 30 * time.Second, ErrorLog: quiet}
}

// helloServer answers every request with a short hello.
func helloServer() *http.Server {
	hello := []byte("hello, world\n")
	return &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(hello) }), ErrorLog: quiet}
}

// A scenario is one user-visible story: its clients (run runs all of its
// rounds against its backend) and the rows they fill.
type scenario struct {
	name    string
	backend *backend
	proxy   string // the proxy it needs ("nginx", "haproxy", "apache2"), if any
	// needs, if set, says why another tool it needs cannot run here, or
	// "" if it can (node-keepalive: Node.js); the run skips it then.
	needs func() string
	run   func(d *driver, s *scenario) error
	rows  []string // the rows it makes, in order, if not one named after it
	// optIn: it runs only when -only names it (its many runs do not fit
	// the default run's budget).
	optIn bool
	// What -check holds its rows to. noRSTs: no variant but raw lets the
	// backend send a RST (or, uncounted, lets its clients see a reset).
	// lossless: these variants also fail no request (and, in the restart
	// rows, have no connect refused): lingerhttp's promise, behind the
	// proxies, through a deploy the balancer is told about, and through
	// restarts in place with the socket passed on.
	noRSTs   bool
	lossless []string
	// refusedAfterClose: the balancer is not told, so it connects to the
	// closed port and the backend's kernel refuses it with a RST, which
	// the balancer fails over; lossless rows are held to their failed
	// requests and the close-abort counters, not to TcpOutRsts.
	refusedAfterClose bool
	// boundedShutdown: in these variants' rows the deploy's Shutdown
	// returns within its bar, before its context's deadline, and the
	// deployed server holds no connection descriptor after it
	// (slowloris-deploy: lingerhttp's promise that no peer holds it).
	boundedShutdown []string
	// lossyLink: its proxy is configured for a lossy link (proxyConfig's
	// LossyLink), so a lost packet is not a failed upstream.
	lossyLink bool
	// check: its proxy health-checks the upstreams (proxyConfig's Check).
	check *proxyCheck
	// quickAlways: it runs with the -quick counts in every mode, so it
	// fits the default run (-deploys still sets its deploys).
	quickAlways bool
}

var scenarios = []*scenario{
	{name: "unread-close", backend: unreadCloseBackend, run: (*driver).unreadClose, noRSTs: true},
	{name: "idle-race", backend: idleRaceBackend, run: (*driver).idleRace, noRSTs: true, lossless: []string{"lingerhttp"}},
	{name: "tls-idle-race", backend: tlsIdleRaceBackend, run: (*driver).tlsIdleRace, noRSTs: true, lossless: []string{"lingerhttp"}},
	{name: "sweep", backend: sweepBackend, run: (*driver).sweep},
	{name: "early-response", backend: earlyResponseBackend, run: (*driver).earlyResponse, noRSTs: true},
	{name: "nginx-idle", backend: proxyIdleBackend, proxy: "nginx", run: proxyIdleRounds, noRSTs: true, lossless: []string{"lingerhttp"}},
	{name: "haproxy-idle", backend: proxyIdleBackend, proxy: "haproxy", run: proxyIdleRounds, noRSTs: true, lossless: []string{"lingerhttp"}},
	{name: "apache-idle", backend: proxyIdleBackend, proxy: "apache2", noRSTs: true, lossless: []string{"lingerhttp"}, run: func(d *driver, s *scenario) error {
		return d.proxyIdle(s, d.sz.apacheRounds, d.sz.apacheBursts)
	}},
	{name: "nginx-tls-idle", backend: proxyIdleTLSBackend, proxy: "nginx", run: proxyIdleRounds, optIn: true, noRSTs: true, lossless: []string{"lingerhttp"}},
	{name: "shutdown", backend: shutdownBackend, proxy: "nginx", run: (*driver).shutdown, lossless: []string{"lingerhttp"}},
	{name: "apache-deploy", backend: apacheDeployBackend, proxy: "apache2", run: (*driver).apacheDeploy, optIn: true,
		lossless: []string{"lingerhttp"}, refusedAfterClose: true},
	// The README's HAProxy recipe: deregistered by its health check on
	// /ready alone (scenarios_haproxy_deploy.go); after the listener
	// closes, the checks' connects are refused.
	{name: "haproxy-deploy", backend: haproxyDeployBackend, proxy: "haproxy", run: (*driver).apacheDeploy, quickAlways: true,
		lossless: []string{"lingerhttp"}, refusedAfterClose: true, check: haproxyCheck},
	// Its -check is on every variant's rows, raw's too: see checkFailures.
	{name: "smuggle", backend: smuggleBackend, proxy: "nginx", run: (*driver).smuggle, rows: smuggleRowNames()},
	{name: "grpc", backend: grpcBackend, run: (*driver).grpc, rows: grpcRowNames(), noRSTs: true},
	// Also runs memoryBackend and shutdownIdleBackend, into no row.
	{name: "overhead", backend: overheadBackend, run: (*driver).overhead},
	// A connection per request: what every close costs (scenarios_churn.go).
	{name: "churn", backend: churnBackend, run: (*driver).churn, noRSTs: true},
	// Shutdown's time and the descriptors peers that stopped sending
	// hold; -check holds lingerhttp to its bound (raw is the control).
	{name: "slowloris-deploy", backend: slowlorisBackend, run: (*driver).slowloris, rows: slowlorisRowNames(), boundedShutdown: []string{"lingerhttp"}},
	{name: "node-keepalive", backend: nodeKeepAliveBackend, run: (*driver).nodeKeepAlive, rows: nodeRowNames(), needs: nodeMissing, lossless: []string{"lingerhttp"}},
	{name: "restart", backend: restartBackend, proxy: "nginx", run: (*driver).restart, rows: restartRowNames(), optIn: true, lossless: []string{"lingerhttp+tableflip"}},
	// Its -check is its own: see soakResult.failures.
	{name: "soak", backend: soakBackend, proxy: "nginx", needs: func() string { return proxyMissing("haproxy") }, run: (*driver).soak, optIn: true},
}

// proxyIdleRounds runs a proxy-idle scenario with nginx's and HAProxy's
// counts.
func proxyIdleRounds(d *driver, s *scenario) error {
	return d.proxyIdle(s, d.sz.proxyRounds, d.sz.proxyBursts)
}

func (s *scenario) rowNames() []string {
	if s.rows != nil {
		return s.rows
	}
	return []string{s.name}
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

func optInScenarios() []string {
	var names []string
	for _, s := range scenarios {
		if s.optIn {
			names = append(names, s.name)
		}
	}
	return names
}

// parseOnly parses -only: comma-separated scenario names, each of which
// must be known.
func parseOnly(list string) (map[string]bool, error) {
	if list == "" {
		return nil, nil
	}
	only := make(map[string]bool)
	for _, name := range strings.Split(list, ",") {
		if !slices.Contains(scenarioNames(), name) {
			return nil, fmt.Errorf("unknown scenario %q; known: %s", name, strings.Join(scenarioNames(), ", "))
		}
		only[name] = true
	}
	return only, nil
}

// scenarioOfRow returns the scenario that makes the row named row.
func scenarioOfRow(row string) *scenario {
	for _, s := range scenarios {
		if slices.Contains(s.rowNames(), row) {
			return s
		}
	}
	return nil
}

// checkedRows are the rows where -check fails on a backend RST of any
// variant but raw; losslessRows, as "row/variant", those where it also
// fails on a failed request.
func checkedRows() (noRSTs, lossless []string) {
	for _, s := range scenarios {
		for _, row := range s.rowNames() {
			if s.noRSTs {
				noRSTs = append(noRSTs, row)
			}
			for _, v := range s.lossless {
				lossless = append(lossless, row+"/"+v)
			}
		}
	}
	return noRSTs, lossless
}
