package main

// soak: lingerhttp behind nginx and HAProxy for minutes (-soak; 2 minutes
// by default, which make bench-quick runs) of mixed traffic, with
// deploys and restarts in place, while the backend process is sampled:
// nothing may fail but what the hostile peers earn, the backend's kernel
// may abort no close, and nothing may grow (issue 24).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linger-go/linger"
)

const (
	soakDefault = 2 * time.Minute
	soakMin     = 30 * time.Second
	soakMax     = 6 * time.Hour
	// soakEventGap is the time between events, which alternate a deploy
	// and a restart in place: each comes every 3 minutes.
	soakEventGap = 90 * time.Second
	// Hostile peers: one every soakHostileEvery, at most soakHostileMax
	// at once, each done within soakHostileFor.
	soakHostileEvery = 250 * time.Millisecond
	soakHostileMax   = 32
	soakHostileFor   = 10 * time.Second
	// soakFloodBytes is what a flooding peer sends during our lingering
	// close: half of LingerBytes, so the drain takes it all.
	soakFloodBytes = linger.DefaultLingerBytes / 2
	// soakNeverFINHold is how long a never-FIN peer holds its side open
	// after our FIN: past the LingerTimeout, so our close times out.
	soakNeverFINHold = linger.DefaultLingerTimeout + time.Second
)

var soakBackend = &backend{name: "soak", variants: []string{"lingerhttp"}, soak: true}

// The hostile peers' kinds, in the order they take turns.
var soakHostileKinds = []string{"never-fin", "flood", "reset", "slowloris"}

// soakPlan is a soak's schedule: its length, how often the backend
// samples itself, and the deploys and restarts. The first tenth is
// warm-up; the growth bars compare the second tenth with the last one,
// and the events fall between, so both windows are steady traffic.
type soakPlan struct {
	dur, every time.Duration
	events     []soakPlanned
}

type soakPlanned struct {
	at   time.Duration
	kind string // deploy, restart
	n    int    // deploy: the pair member
}

func planSoak(dur time.Duration) soakPlan {
	p := soakPlan{dur: dur, every: min(max(dur/120, time.Second), 10*time.Second)}
	gap := min(soakEventGap, dur*3/10)
	deploys := 0
	for at, k := dur/5+gap/2, 0; at < dur*85/100; at, k = at+gap, k+1 {
		if k%2 == 0 {
			p.events = append(p.events, soakPlanned{at: at, kind: "deploy", n: deploys % 2})
			deploys++
		} else {
			p.events = append(p.events, soakPlanned{at: at, kind: "restart"})
		}
	}
	return p
}

// soakKind is one kind of normal traffic's count.
type soakKind struct {
	Requests int `json:"requests"`
	OK       int `json:"ok"`
	// Retries: requests Go's client sent again on another connection
	// (the client's leg of nginx after a reload; h2 after a GOAWAY).
	Retries int `json:"retries,omitempty"`
	NotH2   int `json:"notHTTP2,omitempty"`
}

// soakHostile is one kind of hostile peer's count.
type soakHostile struct {
	Peers int `json:"peers"`
	SetUp int `json:"setUp"` // got as far as the hostile part
	Ended int `json:"ended"` // saw the server end the connection
}

// soakFailure is one failed normal request.
type soakFailure struct {
	T    float64 `json:"t"` // sent, seconds from the soak's start
	Kind string  `json:"kind"`
	How  string  `json:"how"`
}

// soakWindow is the medians of a window's samples.
type soakWindow struct {
	From, To   float64 // seconds
	N          int     // samples
	FDs        float64 `json:"fds"`
	Goroutines float64 `json:"goroutines"`
	HeapLive   float64 `json:"heapLive"`
	RSS        float64 `json:"rss"`
	Lingering  float64 `json:"lingering"`
}

// soakResult is the soak row's own columns.
type soakResult struct {
	Seconds         float64                 `json:"seconds"`
	IntervalMs      float64                 `json:"intervalMs"`
	PlannedDeploys  int                     `json:"plannedDeploys"`
	PlannedRestarts int                     `json:"plannedRestarts"`
	Kinds           map[string]*soakKind    `json:"kinds"`
	Hostile         map[string]*soakHostile `json:"hostile"`
	Failures        []soakFailure           `json:"failures,omitempty"` // the first soakFailuresKept
	Errors          []string                `json:"errors,omitempty"`   // the events' and proxies' errors
	Samples         []soakSample            `json:"samples"`
	Events          []soakEvent             `json:"events"`
	Before          soakSample              `json:"before"` // the backend before the soak's servers
	After           soakSample              `json:"after"`  // and after all of them shut down
	First           soakWindow              `json:"first"`  // the second tenth
	Last            soakWindow              `json:"last"`   // the last tenth
}

const soakFailuresKept = 20

// soakLoad counts the traffic of one soak.
type soakLoad struct {
	start   time.Time
	mu      sync.Mutex
	kinds   map[string]*tally
	hostile map[string]*soakHostile
	fails   []soakFailure
	nfails  int
}

func (l *soakLoad) tally(kind string) *tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.kinds[kind]
	if t == nil {
		t = &tally{}
		l.kinds[kind] = t
	}
	return t
}

// count counts one normal request of kind, sent at sent, that ended as out.
func (l *soakLoad) count(kind, out string, sent time.Time) {
	t := l.tally(kind)
	t.add("requests", 1)
	t.add(out, 1)
	if out != outOK {
		l.mu.Lock()
		l.nfails++
		if len(l.fails) < soakFailuresKept {
			l.fails = append(l.fails, soakFailure{T: sent.Sub(l.start).Seconds(), Kind: kind, How: out})
		}
		l.mu.Unlock()
	}
}

func (l *soakLoad) hostileCount(kind string, f func(h *soakHostile)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hostile[kind]
	if h == nil {
		h = &soakHostile{}
		l.hostile[kind] = h
	}
	f(h)
}

// soak runs the soak: see the legend under its table (soakTable).
func (d *driver) soak(s *scenario) error {
	dur := d.o.soak
	if dur == 0 {
		dur = soakDefault
	}
	plan := planSoak(dur)
	v, _ := variantNamed("lingerhttp")
	res := &soakResult{Seconds: dur.Seconds()}
	for _, e := range plan.events {
		if e.kind == "deploy" {
			res.PlannedDeploys++
		} else {
			res.PlannedRestarts++
		}
	}
	ld := &soakLoad{kinds: make(map[string]*tally), hostile: make(map[string]*soakHostile)}
	var kinds map[string]int
	stop, err := d.runReq(s.name, s.backend, request{IntervalMs: int(plan.every / time.Millisecond)}, v, func(addrs []string) error {
		if len(addrs) != 5 {
			return fmt.Errorf("the backend gave %d addresses, want 5", len(addrs))
		}
		mainAddr, tlsAddr, pair, genAddr := addrs[0], addrs[1], addrs[2:4], addrs[4]
		ng, err := startProxy("nginx", filepath.Join(d.tmp, "soak-nginx"), pair)
		if err != nil {
			return err
		}
		hp, err := startProxy("haproxy", filepath.Join(d.tmp, "soak-haproxy"), []string{mainAddr, genAddr})
		if err != nil {
			ng.stop()
			return err
		}
		defer func() {
			ng.stop()
			hp.stop()
			kinds = ng.errorKinds()
			for k, n := range hp.errorKinds() {
				kinds[k] += n
			}
		}()
		ld.start = time.Now()
		// ctx ends the loops; requests in flight then are let finish
		// (each bounded by its client's timeout) and counted.
		ctx, cancel := context.WithDeadline(d.ctx, ld.start.Add(dur))
		defer cancel()
		var wg sync.WaitGroup
		loop := func(f func()) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f()
			}()
		}
		loop(func() { d.soakBursts(ctx, ld, "nginx idle-deadline POST", ng.addr, true) })
		loop(func() { d.soakBursts(ctx, ld, "haproxy idle-deadline POST", hp.addr, false) })
		for range 2 {
			loop(func() { d.soakSteady(ctx, ld, "nginx steady POST", ng.addr, true) })
			loop(func() { d.soakSteady(ctx, ld, "haproxy steady POST", hp.addr, false) })
		}
		for range 3 {
			loop(func() { d.soakTLS(ctx, ld, tlsAddr, false) })
			loop(func() { d.soakTLS(ctx, ld, tlsAddr, true) })
		}
		loop(func() { d.soakUploads(ctx, ld, mainAddr) })
		loop(func() { d.soakHostilePeers(ctx, ld, mainAddr) })

		// The deploys and restarts, in the driver's own goroutine.
		for _, e := range plan.events {
			sleepCtx(ctx, time.Until(ld.start.Add(e.at)))
			if ctx.Err() != nil {
				break
			}
			if err := d.soakEvent(ng, pair, e); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("%s at %.0f s: %v", e.kind, e.at.Seconds(), err))
				fmt.Fprintf(os.Stderr, "lingerbench: soak: %s at %.0f s: %v\n", e.kind, e.at.Seconds(), err)
			}
		}
		wg.Wait()
		return nil
	})
	r := d.row(s.name, v.name)
	r.Soak = res
	res.Kinds = make(map[string]*soakKind)
	for kind, t := range ld.kinds {
		r.addOutcomes(t)
		res.Kinds[kind] = &soakKind{Requests: t.get("requests"), OK: t.get(outOK), Retries: t.get("retries"), NotH2: t.get("not HTTP/2")}
	}
	res.Hostile = ld.hostile
	res.Failures = ld.fails
	for k, n := range kinds {
		r.Extra[k] += float64(n)
	}
	if rep := stop.Soak; rep != nil {
		res.IntervalMs = rep.IntervalMs
		res.Samples, res.Events, res.Before, res.After = rep.Samples, rep.Events, rep.Before, rep.After
		if rep.Restart != nil {
			res.Errors = append(res.Errors, rep.Restart.Errors...)
		}
	}
	res.summarize()
	d.logf("soak: %d requests, %d ok; first %+v; last %+v; events %+v", r.Requests, r.OK, res.First, res.Last, res.Events)
	return err
}

// soakEvent runs one deploy or restart. A deploy is the shutdown
// scenario's: nginx is reloaded without the pair member at the moment
// the member is told to stop (lingerhttp's Shutdown, serving on for its
// DrainDelay); once its successor listens, nginx is reloaded with it.
func (d *driver) soakEvent(ng *proxy, pair []string, e soakPlanned) error {
	if e.kind == "restart" {
		_, err := d.backend.call(request{Op: "event", Event: "restart"})
		return err
	}
	dereg := make(chan error, 1)
	go func() { dereg <- ng.deregister(pair[e.n]) }()
	_, err := d.backend.call(request{Op: "event", Event: "deploy", N: e.n})
	if derr := <-dereg; err == nil {
		err = derr
	}
	// Back in the rotation: nginx's configuration with nothing down.
	if rerr := writeProxyConf(ng.kind, ng.conf, ng.cfg); rerr != nil && err == nil {
		err = rerr
	} else if rerr == nil {
		if serr := ng.cmd.Process.Signal(syscall.SIGHUP); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

// soakBursts: bursts of keep-alive POSTs through a proxy, separated by
// pauses that straddle the backend's idle timeout (proxyIdle's schedule),
// so the proxy's upstream connections are reused at the backend's idle
// deadline. Through nginx, whose reloads close clients' idle
// connections, the client's leg may resend (deployRequest).
func (d *driver) soakBursts(ctx context.Context, ld *soakLoad, kind, addr string, clientLegRetry bool) {
	tr := &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	for k := 0; k < 1_000_000 && ctx.Err() == nil; k++ {
		if k > 0 {
			sleepCtx(ctx, soakIdleTimeout+proxyPauseOffsets[k%len(proxyPauseOffsets)])
		}
		parallel(ctx, 24, 8, func(int) { d.soakProxyRequest(ld, cl, kind, addr, clientLegRetry) })
	}
}

// soakSteady: one POST every 25 ms through a proxy, so a deploy and a
// restart find requests in flight.
func (d *driver) soakSteady(ctx context.Context, ld *soakLoad, kind, addr string, clientLegRetry bool) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	for n := 0; n < 10_000_000 && ctx.Err() == nil; n++ {
		t0 := time.Now()
		d.soakProxyRequest(ld, cl, kind, addr, clientLegRetry)
		sleepCtx(ctx, 25*time.Millisecond-time.Since(t0))
	}
}

func (d *driver) soakProxyRequest(ld *soakLoad, cl *http.Client, kind, addr string, clientLegRetry bool) {
	sent := time.Now()
	if !clientLegRetry {
		ld.count(kind, doRequest(cl, proxyRequest(d.ctx, "POST", addr)), sent)
		return
	}
	req, retried := deployRequest(d.ctx, addr)
	out := doRequest(cl, req)
	if *retried {
		ld.tally(kind).add("retries", 1)
	}
	ld.count(kind, out, sent)
}

// soakTLS is one TLS client straight to the backend, on one connection,
// sending its next POST at the backend's idle deadline ± 2 ms: HTTP/1.1
// (not replayable), or h2 (replayable, as tls-idle-race's: net/http's h2
// server ends idle connections with GOAWAY).
func (d *driver) soakTLS(ctx context.Context, ld *soakLoad, addr string, h2 bool) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxConnsPerHost: 1, DisableCompression: true}
	kind := "TLS HTTP/1.1 idle-deadline POST"
	if h2 {
		tr.ForceAttemptHTTP2 = true
		kind = "TLS h2 idle-deadline POST"
	} else {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	body := bytes.Repeat([]byte("t"), 256)
	for i := 0; i < 10_000_000 && ctx.Err() == nil; i++ {
		if i > 0 {
			jitter := time.Duration(rand.Int64N(int64(2*idleRaceJitter))) - idleRaceJitter
			sleepCtx(ctx, soakIdleTimeout+jitter)
		}
		sent := time.Now()
		conns := 0
		rctx := httptrace.WithClientTrace(d.ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }})
		req, _ := http.NewRequestWithContext(rctx, "POST", "https://"+addr+"/", bytes.NewReader(body))
		if !h2 {
			req.GetBody = nil // not replayable: no silent retry
		}
		out, proto := doRequestProto(cl, req)
		if h2 && out == outOK && proto != 2 {
			ld.tally(kind).add("not HTTP/2", 1)
		}
		if conns > 1 {
			ld.tally(kind).add("retries", 1)
		}
		ld.count(kind, out, sent)
	}
}

// soakUploads: one upload a second, 2–4 MiB, that the backend rejects
// with a 413 without reading it (early-response's handler); OK is the
// whole 413 read.
func (d *driver) soakUploads(ctx context.Context, ld *soakLoad, addr string) {
	zeros := make([]byte, 64<<10)
	const kind = "rejected upload (413)"
	for i := 0; i < 1_000_000 && ctx.Err() == nil; i++ {
		t0 := time.Now()
		size := 2<<20 + rand.IntN(2<<20)
		reply := earlyReplySizes[i%len(earlyReplySizes)]
		ld.count(kind, soakUpload(d.ctx, addr, size, reply, zeros), t0)
		sleepCtx(ctx, time.Second-time.Since(t0))
	}
}

func soakUpload(ctx context.Context, addr string, size, reply int, zeros []byte) string {
	_, whole, dialErr, err := earlyUpload(ctx, addr, size, reply, zeros)
	switch {
	case dialErr != nil:
		return classify(dialErr)
	case whole:
		return outOK
	case err == errWrongAnswer:
		return outOther
	}
	return classify(err)
}

// soakHostilePeers starts a hostile peer straight to the backend every
// soakHostileEvery, the kinds taking turns, at most soakHostileMax at
// once, each done within soakHostileFor.
func (d *driver) soakHostilePeers(ctx context.Context, ld *soakLoad, addr string) {
	sem := make(chan struct{}, soakHostileMax)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; i < 10_000_000 && ctx.Err() == nil; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		kind := soakHostileKinds[i%len(soakHostileKinds)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			setUp, ended := soakHostilePeer(d.ctx, addr, kind)
			ld.hostileCount(kind, func(h *soakHostile) {
				h.Peers++
				if setUp {
					h.SetUp++
				}
				if ended {
					h.Ended++
				}
			})
		}()
		sleepCtx(ctx, soakHostileEvery)
	}
}

// soakHostilePeer is one hostile peer. never-fin, flood and reset ask
// for a response with "Connection: close", read it and the server's FIN,
// and then: never-fin holds its side open past the LingerTimeout, so our
// lingering close times out; flood sends soakFloodBytes into our drain
// and closes; reset closes with a RST (SO_LINGER 0) in the middle of our
// drain. slowloris sends half a request line and waits for the server to
// end the connection (ReadHeaderTimeout). It reports whether it got as
// far as its hostile part and whether it saw the server end the
// connection.
func soakHostilePeer(ctx context.Context, addr, kind string) (setUp, ended bool) {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(soakHostileFor))
	if kind == "slowloris" {
		if _, err := c.Write([]byte("GET /slow HT")); err != nil {
			return false, false
		}
		_, err := io.Copy(io.Discard, c)
		return true, err == nil // EOF: the server's FIN
	}
	if _, err := c.Write([]byte("GET /hostile HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")); err != nil {
		return false, false
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return false, false
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return false, false // not the server's FIN
	}
	switch kind {
	case "never-fin":
		time.Sleep(soakNeverFINHold)
	case "flood":
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < soakFloodBytes; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return true, true
			}
		}
	case "reset":
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	}
	return true, true
}

// summarize takes the medians of the second and the last tenth.
func (s *soakResult) summarize() {
	tenth := s.Seconds / 10
	s.First = soakMedians(s.Samples, tenth, 2*tenth)
	s.Last = soakMedians(s.Samples, s.Seconds-tenth, s.Seconds)
}

func soakMedians(samples []soakSample, from, to float64) soakWindow {
	w := soakWindow{From: from, To: to}
	var fds, gs, heap, rss, lg []float64
	for _, s := range samples {
		if s.T < from || s.T > to {
			continue
		}
		w.N++
		fds = append(fds, float64(s.FDs))
		gs = append(gs, float64(s.Goroutines))
		heap = append(heap, float64(s.HeapLive))
		rss = append(rss, float64(s.RSS))
		lg = append(lg, float64(s.Lingering))
	}
	w.FDs, w.Goroutines, w.HeapLive, w.RSS, w.Lingering = median(fds), median(gs), median(heap), median(rss), median(lg)
	return w
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// The growth bars: how far the last tenth's median may be above the
// second tenth's (see soakLegend for why these).
const (
	soakCountSlack    = 0.10 // descriptors, goroutines: +10 %...
	soakCountAbsolute = 20   // ...or +20, whichever is more
	soakBytesFactor   = 1.5  // live heap, RSS: ×1.5
	soakLingeringAbs  = 20   // lingering closes: +20
	soakWindowMin     = 3    // samples per window, at least
	// soakAfterSlack: once every server has shut down, the backend may
	// hold this many more descriptors and goroutines than before they
	// started (what the runtime and net/http start once, lazily).
	soakAfterSlack = 2
)

// growth lists the figures whose last tenth is above the bar.
func (s *soakResult) growth() []string {
	var bad []string
	f, l := s.First, s.Last
	count := func(name string, first, last float64) {
		if bar := first + max(soakCountSlack*first, soakCountAbsolute); last > bar {
			bad = append(bad, fmt.Sprintf("%s grew from %.0f to %.0f (bar %.0f)", name, first, last, bar))
		}
	}
	count("descriptors", f.FDs, l.FDs)
	count("goroutines", f.Goroutines, l.Goroutines)
	for _, b := range []struct {
		name        string
		first, last float64
	}{{"live heap", f.HeapLive, l.HeapLive}, {"RSS", f.RSS, l.RSS}} {
		if bar := b.first * soakBytesFactor; b.last > bar {
			bad = append(bad, fmt.Sprintf("%s grew from %.1f to %.1f MiB (bar %.1f)", b.name, b.first/(1<<20), b.last/(1<<20), bar/(1<<20)))
		}
	}
	if bar := f.Lingering + soakLingeringAbs; l.Lingering > bar {
		bad = append(bad, fmt.Sprintf("lingering closes grew from %.0f to %.0f (bar %.0f)", f.Lingering, l.Lingering, bar))
	}
	return bad
}

// failures is the soak row's -check: no normal request failed, the
// backend's kernel aborted no close, every planned deploy and restart
// ran without error, every hostile kind got through, nothing grew, and
// once every server had shut down the backend was back where it began.
func (s *soakResult) failures(row *row) []string {
	name := row.Scenario + "/" + row.Variant
	var bad []string
	if failed := row.Requests - row.OK; failed > 0 || row.Requests == 0 {
		var first []string
		for _, f := range s.Failures {
			first = append(first, fmt.Sprintf("%.1f s %s %s", f.T, f.Kind, f.How))
		}
		bad = append(bad, fmt.Sprintf("%s: %d of %d requests failed (%s)", name, failed, row.Requests, strings.Join(first, ", ")))
	}
	if c := row.Counters; c != nil && c.AbortOnClose+c.AbortOnData > 0 {
		bad = append(bad, fmt.Sprintf("%s: the backend aborted closes with RSTs (TCPAbortOnClose %d, TCPAbortOnData %d)", name, c.AbortOnClose, c.AbortOnData))
	}
	deploys, restarts := 0, 0
	for _, e := range s.Events {
		switch {
		case e.Err != "":
		case e.Kind == "deploy":
			deploys++
		case e.Kind == "restart":
			restarts++
		}
	}
	if deploys < s.PlannedDeploys || restarts < s.PlannedRestarts {
		bad = append(bad, fmt.Sprintf("%s: %d of %d deploys and %d of %d restarts ran", name, deploys, s.PlannedDeploys, restarts, s.PlannedRestarts))
	}
	for _, e := range s.Errors {
		bad = append(bad, name+": "+e)
	}
	for _, k := range soakHostileKinds {
		if h := s.Hostile[k]; h == nil || h.SetUp == 0 {
			bad = append(bad, fmt.Sprintf("%s: no %s peer got through, so the soak tested too little", name, k))
		}
	}
	if s.First.N < soakWindowMin || s.Last.N < soakWindowMin {
		bad = append(bad, fmt.Sprintf("%s: %d and %d samples in the compared windows, want %d each", name, s.First.N, s.Last.N, soakWindowMin))
	}
	for _, g := range s.growth() {
		bad = append(bad, name+": "+g)
	}
	if b, a := s.Before, s.After; a.FDs > b.FDs+soakAfterSlack || a.Goroutines > b.Goroutines+soakAfterSlack {
		bad = append(bad, fmt.Sprintf("%s: with every server shut down the backend holds %d descriptors and %d goroutines, %d and %d before they started",
			name, a.FDs, a.Goroutines, b.FDs, b.Goroutines))
	}
	return bad
}
