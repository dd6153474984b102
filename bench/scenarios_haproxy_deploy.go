package main

// haproxy-deploy: the README's HAProxy recipe, tested. A rolling deploy of
// one of two backends behind HAProxy that nobody tells: no reload, no API
// call. HAProxy learns of it only from its health check on /ready
// (`option httpchk GET /ready`, `check inter I fall F rise R`), which
// lingerhttp's ReadyHandler answers 503 from the moment Shutdown begins.
// The recipe's rule is DrainDelay > inter × fall: HAProxy marks a server
// down after fall failed checks, inter apart, so the last of them comes at
// most inter × fall after the first 503 is there to see. The bench runs it
// at 1/10 of the recipe's timings (inter 200 ms, fall 3, DrainDelay 800 ms
// instead of 2 s, 3, 8 s), so a deploy takes about a second.
//
// The driver is apache-deploy's (scenarios_deploy.go): 16 keep-alive
// clients POST steadily (not replayable, so every loss shows) through the
// proxy to two backends; the first is told to stop after the warm-up.

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// haproxyCheck is the health check of the haproxy-deploy scenario: the
// README recipe's `check inter 2s fall 3 rise 2` at 1/10 of its interval.
var haproxyCheck = &proxyCheck{Path: "/ready", Inter: 200 * time.Millisecond, Fall: 3, Rise: 2}

// haproxyDrainDelay is the deployed lingerhttp server's DrainDelay behind
// that check: just above inter × fall (600 ms), as the recipe's 8 s is
// above 2 s × 3.
const haproxyDrainDelay = 800 * time.Millisecond

// proxyCheck is an active health check the proxy runs on every upstream
// (HAProxy's option httpchk and check): a GET of Path every Inter; Fall
// failures in a row mark a server down, Rise successes up again.
type proxyCheck struct {
	Path       string
	Inter      time.Duration
	Fall, Rise int
}

// InterMs is Inter in milliseconds, for the configuration.
func (c *proxyCheck) InterMs() int64 { return c.Inter.Milliseconds() }

var haproxyDeployBackend = &backend{
	name:       "haproxy-deploy",
	variants:   []string{"raw", "lingerhttp", "lingerhttp-no-delay"},
	server:     readyDeployServer,
	deploy:     true,
	drainDelay: haproxyDrainDelay,
}

// readyDeployServer is deployServer with /ready: lingerhttp's
// ReadyHandler when lingerhttp serves it (serveLingerHTTP fills it in),
// else a static 200, the health check a plain net/http server has, which
// fails only once the listener is closed and the check's connect is
// refused.
func readyDeployServer() *http.Server {
	srv := deployServer()
	srv.Handler = &readyMux{next: srv.Handler}
	return srv
}

// readyMux serves /ready with ready (a static 200 while it is nil) and
// everything else with next.
type readyMux struct {
	next  http.Handler
	ready atomic.Pointer[http.Handler]
}

func (m *readyMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/ready" {
		m.next.ServeHTTP(w, r)
		return
	}
	if h := m.ready.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Write([]byte("ready\n"))
}

// setReady makes h answer /ready.
func (m *readyMux) setReady(h http.Handler) { m.ready.Store(&h) }

// watchDown follows the proxy's log until HAProxy reports server (s0,
// s1, ...) down, and returns when it saw that, in ms from from; -1 if it
// did not within limit or before ctx ended. It polls every 10 ms, which
// bounds its precision.
func (p *proxy) watchDown(ctx context.Context, server string, from time.Time, limit time.Duration) float64 {
	line := []byte("Server be/" + server + " is DOWN")
	for end := time.Now().Add(limit); time.Now().Before(end) && ctx.Err() == nil; sleepCtx(ctx, 10*time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(p.dir, "stdout.log")); bytes.Contains(b, line) {
			return float64(time.Since(from).Microseconds()) / 1000
		}
	}
	return -1
}

// sizesOf is the counts scenario s runs with: the mode's, or, for a
// quickAlways scenario, -quick's in every mode (with -deploys).
func (d *driver) sizesOf(s *scenario) sizes {
	if !s.quickAlways {
		return d.sz
	}
	sz := quickSizes
	if d.o.deploys > 0 {
		sz.deploys = d.o.deploys
	}
	return sz
}
