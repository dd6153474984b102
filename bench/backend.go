package main

// The backend: a child process, alone in its network namespace, that runs
// the servers of one scenario run at a time. The driver talks to it with
// one JSON line per request on stdin and one per answer on stdout; when its
// stdin closes (the driver is gone) it exits.

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/netns"
	"github.com/linger-go/linger/internal/testnet"
)

type request struct {
	Op       string `json:"op"` // start, event, counters, stop
	Scenario string `json:"scenario,omitempty"`
	Variant  string `json:"variant,omitempty"`
	Event    string `json:"event,omitempty"`
	N        int    `json:"n,omitempty"`
	// TimeoutMs bounds the shutdown event's Shutdown (its context);
	// zero means 30 s.
	TimeoutMs int          `json:"timeoutMs,omitempty"`
	GRPC      *grpcRequest `json:"grpc,omitempty"` // the grpc scenario's close path
	// IntervalMs: the soak's sampling interval (start).
	IntervalMs int `json:"intervalMs,omitempty"`
}

type response struct {
	Err      string          `json:"err,omitempty"`
	Addrs    []string        `json:"addrs,omitempty"`
	Counters *netns.Counters `json:"counters,omitempty"` // movement during the run, if counted
	Stats    *linger.Stats   `json:"stats,omitempty"`    // summed over the run's listeners, if they count
	Value    float64         `json:"value,omitempty"`    // an event's result
	GRPC     *grpcResult     `json:"grpc,omitempty"`     // the grpc scenario's server, on stop
	Smuggle  map[string]int  `json:"smuggle,omitempty"`  // the smuggle scenario's handler runs, on stop
	Shutdown *shutdownReport `json:"shutdown,omitempty"` // the shutdown event's
	Scrape   *deployScrape   `json:"scrape,omitempty"`   // the shutdown scenario's scrape, on stop
	Restart  *restartResult  `json:"restart,omitempty"`  // the restart scenario's generations, on stop
	Soak     *soakReport     `json:"soak,omitempty"`     // the soak's samples, on stop
}

// shutdownReport is how the deployed server's Shutdown went.
type shutdownReport struct {
	Ms  float64 `json:"ms"`            // from the event, preStop included
	Err string  `json:"err,omitempty"` // what Shutdown returned
	// DeadlineHit: Shutdown returned because its context ended;
	// AtDeadline is what was still open just before.
	DeadlineHit bool              `json:"deadlineHit,omitempty"`
	AtDeadline  *shutdownSnapshot `json:"atDeadline,omitempty"`
	// Stats: the deployed server's listener's, when Shutdown returned
	// (nil: it does not count).
	Stats *linger.Stats `json:"stats,omitempty"`
	// PeerFDs: the descriptors the deployed server held for connections,
	// if its backend counts them.
	PeerFDs *peerFDs `json:"peerFds,omitempty"`
}

// Timing of the backends' servers.
const (
	idleRaceTimeout  = 200 * time.Millisecond
	proxyIdleTimeout = time.Second
	sweepCloseAfter  = 20 * time.Millisecond // sweep: the server closes this long after its reply
	earlyBodyLimit   = 1 << 20               // early-response: bodies above this get 413
	earlyReplyMax    = 1 << 20               // the 413's body, at most
	proxyReplySize   = 1 << 10
)

// backendRun is one scenario run: its servers and listeners.
type backendRun struct {
	lns     []net.Listener  // as served
	srvs    []*http.Server  // nil entries for raw TCP servers
	conns   sync.WaitGroup  // raw TCP accept loops and handlers
	grpc    *grpcServer     // the grpc scenario's server, if that is the run
	smuggle *smuggleHandler // the smuggle scenario's handler, if that is the run
	restart *restartRun     // the restart scenario's generations, if that is the run
	soak    *soakRun        // the soak's servers and samples, if that is the run
	preStop time.Duration   // the shutdown event sleeps this long first
	deploy  *deployScraper  // the shutdown scenario's scrape of the deployed server; nil for raw
	probe   *connProbe      // follows the deployed server's connections
	fds     *fdSampler      // counts the deployed server's connection descriptors
	before  netns.Counters
	counted bool
	memBase uint64
}

func runBackend(host string, countRSTs bool) int {
	log.SetPrefix("lingerbench backend: ")
	log.SetFlags(0)
	raiseFileLimit()
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	var cur *backendRun
	for in.Scan() {
		var req request
		var resp response
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			resp.Err = err.Error()
			out.Encode(resp)
			continue
		}
		var err error
		switch req.Op {
		case "start":
			if cur != nil {
				cur.stop()
			}
			cur, err = startRun(host, req, countRSTs)
			if err == nil {
				for _, ln := range cur.lns {
					resp.Addrs = append(resp.Addrs, ln.Addr().String())
				}
				if cur.restart != nil {
					resp.Addrs = append(resp.Addrs, cur.restart.addr)
				}
				if cur.soak != nil {
					resp.Addrs = cur.soak.addrs
				}
			}
		case "event":
			if cur == nil {
				err = errors.New("no run")
				break
			}
			if req.Event == "shutdown" {
				resp.Shutdown = cur.shutdownFirst(req)
				resp.Value = resp.Shutdown.Ms
				break
			}
			resp.Value, err = cur.event(req)
		case "counters":
			// How the counters moved since the run started.
			if cur == nil || !cur.counted {
				err = errors.New("no run, or not counting")
				break
			}
			var c netns.Counters
			if c, err = netns.ReadCounters(); err == nil {
				d := c.Sub(cur.before)
				resp.Counters = &d
			}
		case "stop":
			if cur == nil {
				err = errors.New("no run")
				break
			}
			resp = cur.stop()
			cur = nil
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			resp.Err = err.Error()
		}
		if err := out.Encode(resp); err != nil {
			break
		}
	}
	if cur != nil {
		cur.stop()
	}
	return 0
}

func startRun(host string, req request, countRSTs bool) (*backendRun, error) {
	b, ok := backendNamed(req.Scenario)
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q", req.Scenario)
	}
	v, ok := variantNamed(req.Variant)
	if !ok || !b.runs(v.name) {
		return nil, fmt.Errorf("variant %q does not serve %s", req.Variant, b.name)
	}
	r := &backendRun{preStop: v.preStop}
	if b.soak {
		// Its servers are its own: see soak_backend.go.
		var err error
		if r.soak, err = startSoak(host, time.Duration(req.IntervalMs)*time.Millisecond); err != nil {
			return nil, err
		}
		if countRSTs {
			if r.before, err = netns.ReadCounters(); err != nil {
				r.stop()
				return nil, err
			}
			r.counted = true
		}
		return r, nil
	}
	if b.restart {
		// Its servers are processes of their own: see restart.go.
		var err error
		if r.restart, err = startRestart(host, v.name); err != nil {
			return nil, err
		}
		if countRSTs {
			if r.before, err = netns.ReadCounters(); err != nil {
				r.stop()
				return nil, err
			}
			r.counted = true
		}
		return r, nil
	}
	servers := 1
	if b.deploy {
		servers = 2 // a rolling deploy: one of two backends goes away
	}
	// Plain TCP for every variant, as the README tells users: this module
	// is go 1.26, where net.Listen would listen with MPTCP, whose sockets
	// refuse the socket filter linger's Close stops new handshakes with.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	for i := range servers {
		listen := func(addr string) (net.Listener, error) { return lc.Listen(context.Background(), "tcp", addr) }
		if v.listen != nil {
			listen = v.listen
		}
		inner, err := listen(net.JoinHostPort(host, "0"))
		if err != nil {
			r.stop()
			return nil, err
		}
		var srv *http.Server
		if b.server != nil {
			srv = b.server()
			if h, ok := srv.Handler.(*smuggleHandler); ok {
				r.smuggle = h
			}
			if b.deploy && i == 0 {
				r.probe = &connProbe{}
				r.probe.hook(srv)
			}
			if b.peerFDs && i == 0 {
				r.fds = startFDSampler(inner.Addr().(*net.TCPAddr).Port)
			}
		}
		var ln net.Listener
		if b.lingerAll {
			ln = linger.Wrap(inner, linger.Config{LingerTimeout: time.Minute, MaxLingering: 1 << 20})
		} else if v.serve != nil && srv != nil {
			var drain time.Duration
			if b.deploy && i == 0 {
				drain = cmp.Or(b.drainDelay, deployDrainDelay) // the one the deploy takes away
			}
			r.lns = append(r.lns, v.serve(srv, inner, drain))
			r.srvs = append(r.srvs, srv)
			continue
		} else if v.wrap != nil {
			ln = v.wrap(inner, srv)
		} else {
			inner.Close()
			r.stop()
			return nil, fmt.Errorf("variant %s does not run %s", v.name, b.name)
		}
		r.lns = append(r.lns, ln)
		r.srvs = append(r.srvs, srv)
		switch {
		case b.grpc:
			// grpcload.Serve serves it; the driver runs the clients.
			if r.grpc, err = startGRPC(ln, req); err != nil {
				ln.Close()
				r.stop()
				return nil, err
			}
		case srv != nil && srv.TLSConfig != nil:
			go srv.ServeTLS(ln, "", "") // TLS on top of the variant's listener
		case srv != nil:
			go srv.Serve(ln)
		case b.handle != nil:
			r.conns.Add(1)
			go r.acceptLoop(ln, b.handle)
		default:
			r.stop()
			return nil, fmt.Errorf("backend %s serves nothing", b.name)
		}
	}
	if b.lingerAll {
		r.memBase = testnet.HeapAndStacks()
	}
	if b.scrape {
		r.deploy = newDeployScraper(r.lns[0])
	}
	if countRSTs {
		c, err := netns.ReadCounters()
		if err != nil {
			r.stop()
			return nil, err
		}
		r.before, r.counted = c, true
	}
	return r, nil
}

func (r *backendRun) acceptLoop(ln net.Listener, handle func(net.Conn)) {
	defer r.conns.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		r.conns.Add(1)
		go func() {
			defer r.conns.Done()
			handle(c)
		}()
	}
}

func (r *backendRun) event(req request) (float64, error) {
	if r.soak != nil {
		return r.soak.event(req)
	}
	switch req.Event {
	case "restart":
		if r.restart == nil {
			return 0, errors.New("restart: not a restart run")
		}
		return r.restart.restart()
	case "cpu":
		// The process's user and system CPU time so far, µs (churn).
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3, nil
	case "measure":
		// Wait until req.N connections linger, then weigh them.
		s, ok := r.lns[0].(statser)
		if !ok {
			return 0, errors.New("memory needs a listener with Stats")
		}
		deadline := time.Now().Add(30 * time.Second)
		for s.Stats().Lingering < int64(req.N) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := s.Stats().Lingering; got < int64(req.N) {
			return 0, fmt.Errorf("only %d of %d connections lingering", got, req.N)
		}
		return (float64(testnet.HeapAndStacks()) - float64(r.memBase)) / float64(req.N), nil
	}
	return 0, fmt.Errorf("unknown event %q", req.Event)
}

// shutdownFirst takes the first server away, as a deploy does:
// lingerhttp's Shutdown, or http.Server.Shutdown and then the listener's
// own Shutdown where it has one; after the variant's preStop sleep, with
// req.TimeoutMs for the context.
func (r *backendRun) shutdownFirst(req request) *shutdownReport {
	start := time.Now()
	if r.deploy != nil {
		r.deploy.before()
		defer r.deploy.after() // once the server below has shut down
	}
	if r.probe != nil {
		r.probe.shutdownBegins()
	}
	if r.fds != nil {
		r.fds.now()
	}
	time.Sleep(r.preStop) // a preStop hook: serve on while the balancer deregisters
	timeout := 30 * time.Second
	if req.TimeoutMs > 0 {
		timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var snap *shutdownSnapshot
	var snapped sync.WaitGroup
	if r.probe != nil && timeout > probeLead {
		snapped.Add(1)
		t := time.AfterFunc(timeout-probeLead, func() {
			defer snapped.Done()
			snap = r.probe.snapshot(r.lns[0])
		})
		defer func() {
			if t.Stop() {
				snapped.Done()
			}
			snapped.Wait()
		}()
	}
	var err error
	if lh, ok := r.lns[0].(*lingerHTTP); ok {
		err = lh.Shutdown(ctx) // lingerhttp's drain replaces http.Server.Shutdown
	} else {
		if r.srvs[0] != nil {
			err = r.srvs[0].Shutdown(ctx)
		}
		if s, ok := r.lns[0].(shutdown); ok {
			if lerr := s.Shutdown(ctx); err == nil {
				err = lerr
			}
		}
	}
	rep := &shutdownReport{Ms: float64(time.Since(start)) / float64(time.Millisecond)}
	if r.fds != nil {
		rep.PeerFDs = r.fds.end()
	}
	if st, ok := r.lns[0].(statser); ok {
		stats := st.Stats()
		rep.Stats = &stats
	}
	if err != nil {
		rep.Err = err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		rep.DeadlineHit = true
		if r.probe != nil {
			snapped.Wait()
			rep.AtDeadline = snap
		}
	}
	return rep
}

// stop shuts the run's servers down, waits for their closes (and lingering
// closes), and reports how the counters moved.
func (r *backendRun) stop() response {
	var resp response
	if r.restart != nil {
		resp.Restart, resp.Stats = r.restart.stop()
	}
	if r.soak != nil {
		resp.Soak, resp.Stats = r.soak.stop()
	}
	if r.grpc != nil {
		// GracefulStop and the listener's Shutdown: every close is done.
		var err error
		if resp.GRPC, err = r.grpc.stop(); err != nil {
			resp.Err = "grpc: " + err.Error()
		}
	}
	if r.fds != nil {
		r.fds.end()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, ln := range r.lns {
		if lh, ok := ln.(*lingerHTTP); ok {
			lh.Shutdown(ctx)
		} else if srv := r.srvs[i]; srv != nil {
			srv.Shutdown(ctx)
		} else {
			ln.Close()
		}
	}
	r.conns.Wait()
	for _, ln := range r.lns {
		if s, ok := ln.(shutdown); ok {
			s.Shutdown(ctx)
		}
		if s, ok := ln.(statser); ok {
			st := s.Stats()
			if resp.Stats == nil {
				resp.Stats = &linger.Stats{}
			}
			*resp.Stats = resp.Stats.Add(st)
		}
	}
	if r.smuggle != nil {
		// Every server and listener is shut down: no handler runs now.
		resp.Smuggle = r.smuggle.counts()
	}
	if r.deploy != nil {
		resp.Scrape = r.deploy.got
	}
	if r.counted {
		// A RST goes out when the socket closes or when the late segment
		// arrives; everything has closed by now, and nothing more arrives
		// once the driver's clients are done.
		time.Sleep(20 * time.Millisecond)
		if c, err := netns.ReadCounters(); err == nil {
			d := c.Sub(r.before)
			resp.Counters = &d
		}
	}
	return resp
}

// echoHandler reads the request body and answers size bytes.
func echoHandler(size int) func(http.ResponseWriter, *http.Request) {
	reply := []byte(strings.Repeat("x", size))
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(reply)
	}
}

var earlyReply = []byte(strings.Repeat("upload too large\n", earlyReplyMax/17+1)[:earlyReplyMax])

// earlyHandler rejects a large upload without reading it, as a server
// checking Content-Length does; net/http then half-closes and, 500 ms
// later, closes with the body unread. The 413's body is as long as the
// query's "reply" asks (an error page, small or large).
func earlyHandler(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > earlyBodyLimit {
		n, _ := strconv.Atoi(r.URL.Query().Get("reply"))
		w.Header().Set("Content-Length", strconv.Itoa(min(max(n, 0), earlyReplyMax)))
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write(earlyReply[:min(max(n, 0), earlyReplyMax)])
		return
	}
	io.Copy(io.Discard, r.Body)
	w.Write([]byte("ok\n"))
}

const unreadCloseReply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbye\n"

// unreadCloseHandler reads the request line, answers, and closes with the
// rest of the request unread.
func unreadCloseHandler(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 4096)
	if _, err := br.ReadString('\n'); err != nil {
		return
	}
	c.Write([]byte(unreadCloseReply))
}

// sweepHandler answers the client's first line with "ok", then closes the
// idle connection exactly sweepCloseAfter later, serving the request that
// arrives before (as an idle timeout does).
func sweepHandler(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		return
	}
	if _, err := c.Write([]byte("ok\n")); err != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(sweepCloseAfter))
	if _, err := br.ReadString('\n'); err != nil {
		return
	}
	c.Write([]byte("served\n"))
}
