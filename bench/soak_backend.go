package main

// The soak scenario's backend: lingerhttp servers that live for the whole
// soak in this one process (the process the soak samples), a pair of them
// deployed away and replaced in turn, and the restart scenario's
// lingerhttp+tableflip generations (processes of their own, restart.go)
// restarted in place.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
)

const (
	// soakIdleTimeout is every soak server's IdleTimeout (lingerhttp's
	// retire threshold): the proxies' and TLS clients' pauses straddle it.
	soakIdleTimeout = proxyIdleTimeout
	// soakReadHeaderTimeout ends a partial request (the slowloris peers).
	soakReadHeaderTimeout = time.Second
	// soakDeployTimeout bounds a deploy's Shutdown, as an orchestrator's
	// grace period does.
	soakDeployTimeout = deployShutdownTimeout
)

// soakSample is one look at the backend process.
type soakSample struct {
	T          float64 `json:"t"`          // seconds since the soak began
	FDs        int     `json:"fds"`        // open descriptors (/proc/self/fd)
	Goroutines int     `json:"goroutines"` // runtime.NumGoroutine
	HeapLive   uint64  `json:"heapLive"`   // bytes the last GC found live (runtime/metrics /gc/heap/live:bytes)
	RSS        uint64  `json:"rss"`        // bytes, VmRSS of /proc/self/status
	Lingering  int64   `json:"lingering"`  // Stats.Lingering, summed over the soak's listeners in this process
	Open       int64   `json:"open"`       // Stats.Open, likewise
}

// soakEvent is a deploy or restart, as the backend saw it.
type soakEvent struct {
	Kind string  `json:"kind"` // deploy, restart
	T    float64 `json:"t"`    // seconds since the soak began
	Ms   float64 `json:"ms"`   // deploy: Shutdown's time; restart: the gap (negative: overlap)
	Err  string  `json:"err,omitempty"`
}

// soakReport is what the backend says when the soak stops.
type soakReport struct {
	IntervalMs float64      `json:"intervalMs"`
	Samples    []soakSample `json:"samples"`
	Events     []soakEvent  `json:"events"`
	// Before: the process before the soak's servers started; After: once
	// every one of them has shut down (every close ended).
	Before, After soakSample
	Restart       *restartResult `json:"restart,omitempty"`
}

// soakServer is one lingerhttp server of the soak.
type soakServer struct {
	addr string
	s    *lingerhttp.Server
}

// soakRun is the backend's side of one soak.
type soakRun struct {
	host    string
	addrs   []string // main, tls, pair 0, pair 1, the restart generations'
	start   time.Time
	every   time.Duration
	mu      sync.Mutex
	servers []*soakServer // main, tls, pair 0, pair 1
	retired linger.Stats  // the deployed-away servers' listeners'
	restart *restartRun
	samples []soakSample
	events  []soakEvent
	before  soakSample
	stopS   chan struct{}
	sampled chan struct{}
}

// soakHandler serves the soak: /upload is early-response's handler (a
// 413 to a large upload, unread), anything else reads the body and
// answers 1 KiB.
func soakHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/upload", earlyHandler)
	mux.HandleFunc("/", echoHandler(proxyReplySize))
	return mux
}

// startSoak starts the soak's servers on host: main (HTTP), tls (TLS,
// HTTP/1.1 and h2), the deploy pair, and the restart generations
// (r.addrs, in that order). It samples the process every interval.
func startSoak(host string, every time.Duration) (*soakRun, error) {
	if every <= 0 {
		every = 2 * time.Second
	}
	r := &soakRun{host: host, every: every, stopS: make(chan struct{}), sampled: make(chan struct{})}
	r.before = r.sample(time.Now())
	for i := range 4 {
		drain := time.Duration(0)
		if i >= 2 {
			drain = deployDrainDelay
		}
		s, err := startSoakServer(net.JoinHostPort(host, "0"), i == 1, drain)
		if err != nil {
			r.stopServers()
			return nil, err
		}
		r.servers = append(r.servers, s)
		r.addrs = append(r.addrs, s.addr)
	}
	var err error
	if r.restart, err = startRestart(host, "lingerhttp+tableflip"); err != nil {
		r.stopServers()
		return nil, err
	}
	r.addrs = append(r.addrs, r.restart.addr)
	r.start = time.Now()
	go r.sampleLoop()
	return r, nil
}

// startSoakServer serves a lingerhttp server on addr, keeping on serving
// for drainDelay when it is deployed away. Binding addr again right after
// the server before it closed works: Go sets SO_REUSEADDR, and that
// server's closed connections hold no listening socket.
func startSoakServer(addr string, tls bool, drainDelay time.Duration) (*soakServer, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // as in startRun
	var ln net.Listener
	var err error
	for try := 0; try < 20; try++ {
		if ln, err = lc.Listen(context.Background(), "tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: soakHandler(), IdleTimeout: soakIdleTimeout, ReadHeaderTimeout: soakReadHeaderTimeout, ErrorLog: quiet}
	cfg := lingerhttp.Config{DrainDelay: drainDelay}
	s := &soakServer{addr: ln.Addr().String(), s: lingerhttp.New(srv, cfg)}
	if tls {
		srv.TLSConfig = backendTLS()
		go s.s.ServeTLS(ln, "", "")
	} else {
		go s.s.Serve(ln)
	}
	return s, nil
}

func (s *soakServer) stats() linger.Stats {
	if l := s.s.Listener(); l != nil {
		return l.Stats()
	}
	return linger.Stats{}
}

func (r *soakRun) sampleLoop() {
	defer close(r.sampled)
	tick := time.NewTicker(r.every)
	defer tick.Stop()
	for {
		select {
		case <-r.stopS:
			return
		case now := <-tick.C:
			s := r.sample(now)
			r.mu.Lock()
			r.samples = append(r.samples, s)
			r.mu.Unlock()
		}
	}
}

// sample looks at the process now.
func (r *soakRun) sample(now time.Time) soakSample {
	s := soakSample{Goroutines: runtime.NumGoroutine()}
	if !r.start.IsZero() {
		s.T = now.Sub(r.start).Seconds()
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.FDs = len(ents) - 1 // ReadDir's own descriptor
	}
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(m)
	if m[0].Value.Kind() == metrics.KindUint64 {
		s.HeapLive = m[0].Value.Uint64()
	}
	s.RSS = vmRSS()
	r.mu.Lock()
	for _, srv := range r.servers {
		st := srv.stats()
		s.Lingering += st.Lingering
		s.Open += st.Open
	}
	r.mu.Unlock()
	return s
}

// vmRSS is the process's resident set in bytes (proc(5): VmRSS, in kB).
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// event runs a deploy of pair member req.N or a restart in place.
func (r *soakRun) event(req request) (float64, error) {
	t := time.Since(r.start).Seconds()
	var ms float64
	var err error
	switch req.Event {
	case "deploy":
		ms, err = r.deploy(req.N)
	case "restart":
		ms, err = r.restart.restart()
	default:
		return 0, fmt.Errorf("soak: unknown event %q", req.Event)
	}
	e := soakEvent{Kind: req.Event, T: t, Ms: ms}
	if err != nil {
		e.Err = err.Error()
	}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	return ms, err
}

// deploy takes pair member i away with lingerhttp's Shutdown (serving on
// for DrainDelay while nginx is reloaded without it), then starts its
// successor on the same address; it returns Shutdown's time.
func (r *soakRun) deploy(i int) (float64, error) {
	if i < 0 || i > 1 {
		return 0, fmt.Errorf("soak: deploy of pair member %d", i)
	}
	r.mu.Lock()
	old := r.servers[2+i]
	r.mu.Unlock()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), soakDeployTimeout)
	err := old.s.Shutdown(ctx)
	cancel()
	ms := float64(time.Since(start)) / float64(time.Millisecond)
	if err != nil {
		err = fmt.Errorf("deploy: shutdown: %w", err)
	}
	next, serr := startSoakServer(old.addr, false, deployDrainDelay)
	r.mu.Lock()
	r.retired = r.retired.Add(old.stats())
	if serr == nil {
		r.servers[2+i] = next
	}
	r.mu.Unlock()
	if serr != nil {
		return ms, errors.Join(err, fmt.Errorf("deploy: successor: %w", serr))
	}
	return ms, err
}

// stopServers shuts every server of this process down.
func (r *soakRun) stopServers() linger.Stats {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range r.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.s.Shutdown(ctx)
		}()
	}
	wg.Wait()
	st := r.retired
	for _, s := range r.servers {
		st = st.Add(s.stats())
	}
	r.servers = nil
	return st
}

// stop ends the sampling, shuts everything down and reports.
func (r *soakRun) stop() (*soakReport, *linger.Stats) {
	close(r.stopS)
	<-r.sampled
	st := r.stopServers()
	res, gst := r.restart.stop()
	if gst != nil {
		st = st.Add(*gst)
	}
	rep := &soakReport{
		IntervalMs: float64(r.every) / float64(time.Millisecond),
		Samples:    r.samples,
		Events:     r.events,
		Before:     r.before,
		After:      r.sample(time.Now()),
		Restart:    res,
	}
	return rep, &st
}
