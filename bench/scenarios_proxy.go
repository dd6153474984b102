package main

// The scenarios behind a real proxy: nginx-idle, haproxy-idle,
// apache-idle, shutdown (apache-deploy has its own file).

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"sync"
	"time"
)

// proxyPauseOffsets are the pauses between bursts, relative to the
// backend's idle timeout (1 s): a fixed schedule, the same for every
// variant, straddling the instant the backend closes the proxy's idle
// connections (about when the proxy sends the next burst's first requests
// after a pause of the idle timeout, to within a millisecond or so).
var proxyPauseOffsets = []time.Duration{
	-3500 * time.Microsecond, 500 * time.Microsecond, -1500 * time.Microsecond, 2500 * time.Microsecond,
	-2500 * time.Microsecond, 1500 * time.Microsecond, -500 * time.Microsecond, 3500 * time.Microsecond,
}

var postBody = bytes.Repeat([]byte("b"), 2<<10)

// proxyIdle: bursts of POSTs and of GETs through the proxy, separated by
// pauses that straddle the backend's idle timeout (1 s; the proxy keeps its
// upstream connections 60 s); bursts per round. In nginx-tls-idle the
// backend terminates TLS (http.Server.ServeTLS over the variant's
// listener, lingerhttp's ServeTLS) and nginx proxies to it with
// proxy_pass https://.
func (d *driver) proxyIdle(s *scenario, rounds, bursts int) error {
	scn, tls := s.name, s.backend == proxyIdleTLSBackend
	return d.alternate(rounds, s.backend, func(v variant) error {
		return d.run(scn, s.backend, v, func(addrs []string) error {
			p, err := startProxyConfig(s.proxy, filepath.Join(d.tmp, scn+"-"+v.name), proxyConfig{Upstreams: addrs[:1], TLS: tls})
			if err != nil {
				return err
			}
			var dials countingDialer
			tr := &http.Transport{DialContext: dials.DialContext, MaxIdleConnsPerHost: 16, DisableCompression: true}
			cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}
			var t tally
			for b := 0; b < bursts && d.ctx.Err() == nil; b++ {
				// Bursts go in pairs, POST then GET, each pair after
				// its own pause; the schedule continues across rounds.
				k := d.burstSeq[scn+"/"+v.name]
				d.burstSeq[scn+"/"+v.name]++
				if b > 0 {
					sleepCtx(d.ctx, proxyIdleTimeout+proxyPauseOffsets[k/2%len(proxyPauseOffsets)])
				}
				method := "POST"
				if k%2 == 1 {
					method = "GET"
				}
				parallel(d.ctx, d.sz.proxyBurst, 16, func(int) {
					t.add("requests", 1)
					out := doRequest(cl, proxyRequest(d.ctx, method, p.addr))
					t.add(out, 1)
					if out == "502" {
						t.add("502 "+method, 1)
					}
				})
			}
			tr.CloseIdleConnections()
			p.stop()
			r := d.row(scn, v.name)
			addProxyTally(r, &t, p)
			r.Extra["client dials"] += float64(dials.n.Load())
			return nil
		})
	})
}

func proxyRequest(ctx context.Context, method, addr string) *http.Request {
	var req *http.Request
	if method == "POST" {
		req, _ = http.NewRequestWithContext(ctx, method, "http://"+addr+"/", bytes.NewReader(postBody))
		req.GetBody = nil // not replayable: no silent retry
	} else {
		req, _ = http.NewRequestWithContext(ctx, method, "http://"+addr+"/", nil)
	}
	return req
}

// deployRequest is the shutdown scenario's POST. The deploy reloads
// nginx, whose old worker then closes its idle client connections: a race
// on the clients' leg that is the same for every variant and not the
// backend's doing. So the request carries an Idempotency-Key, which lets
// Go's transport resend it when its connection to nginx closed before an
// answer; *retried reports that it did (another connection was taken), and
// the row counts those. A failure on the backend's leg is nginx's 502,
// which is an answer and never resent.
func deployRequest(ctx context.Context, addr string) (req *http.Request, retried *bool) {
	retried = new(bool)
	conns := 0
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			conns++
			*retried = conns > 1
		},
	})
	req, _ = http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/", bytes.NewReader(postBody))
	req.Header.Set("Idempotency-Key", "lingerbench")
	return req, retried
}

func addProxyTally(r *row, t *tally, p *proxy) {
	r.addOutcomes(t)
	for _, m := range []string{"POST", "GET"} {
		if n := t.get("502 " + m); n > 0 {
			r.Extra["502 "+m] += float64(n)
		}
	}
	for kind, n := range p.errorKinds() {
		r.Extra[kind] += float64(n)
	}
}

// shutdown: two backends behind nginx under steady keep-alive POST load;
// halfway, one of them is deployed away the way an orchestrator does it
// (Kubernetes, for one): at the same moment the balancer is told to stop
// sending to it (nginx reloaded with the server marked down) and the
// server is told to stop (http.Server.Shutdown, then the listener's
// Shutdown where it has one; lingerhttp's Shutdown, which keeps serving
// for its DrainDelay first).
func (d *driver) shutdown(s *scenario) error {
	scn := s.name
	return d.alternate(d.sz.shutdownRounds, s.backend, func(v variant) error {
		return d.run(scn, s.backend, v, func(addrs []string) error {
			p, err := startProxyConfig("nginx", filepath.Join(d.tmp, scn+"-"+v.name), proxyConfig{Upstreams: addrs, LossyLink: s.lossyLink})
			if err != nil {
				return err
			}
			tr := &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}
			cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}
			var t tally
			deadline := time.Now().Add(d.sz.shutdownFor)
			var wg sync.WaitGroup
			var shutMs float64
			var shutErr error
			var deregErr error
			wg.Add(2)
			go func() {
				defer wg.Done()
				sleepCtx(d.ctx, d.sz.shutdownFor/2)
				shutMs, shutErr = d.backend.event("shutdown", 0)
			}()
			go func() {
				defer wg.Done()
				sleepCtx(d.ctx, d.sz.shutdownFor/2)
				deregErr = p.deregister(addrs[0])
			}()
			parallel(d.ctx, 8, 8, func(int) {
				for n := 0; n < 100_000 && time.Now().Before(deadline) && d.ctx.Err() == nil; n++ {
					t.add("requests", 1)
					req, retried := deployRequest(d.ctx, p.addr)
					t.add(doRequest(cl, req), 1)
					if *retried {
						t.add("client-leg retries", 1)
					}
				}
			})
			wg.Wait()
			tr.CloseIdleConnections()
			p.stop()
			r := d.row(scn, v.name)
			addProxyTally(r, &t, p)
			if n := t.get("client-leg retries"); n > 0 {
				r.Extra["client-leg retries"] += float64(n)
			}
			r.Extra["Shutdown ms"] += shutMs / float64(d.sz.shutdownRounds)
			if shutErr != nil {
				return fmt.Errorf("shutdown event: %w", shutErr)
			}
			if deregErr != nil {
				return fmt.Errorf("shutdown: %w", deregErr)
			}
			return nil
		})
	})
}
