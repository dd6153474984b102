package main

// slowloris-deploy: many peers that send a few bytes of a request and
// stop, while a deploy takes the backend away (issue 21). A peer that
// sent "G" after a response on a keep-alive connection, or half a request
// line on a new one, must not hold a descriptor longer than plain
// net/http would hold it, nor hold the deploy's Shutdown.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
)

const (
	slowlorisIdleTimeout = time.Second
	// slowlorisShutdownTimeout is the deploy's Shutdown context: longer
	// than lingerhttp's bound, so the row tells a drain that ends by
	// itself from one the deadline ends.
	slowlorisShutdownTimeout = 20 * time.Second
	slowlorisClients         = 8 // normal keep-alive clients during the deploy
	// slowlorisBound is lingerhttp's bar: DrainDelay + DrainIdle +
	// LingerTimeout + 2 s, with the deployed backend's Config.
	slowlorisBound = deployDrainDelay + lingerhttp.DefaultDrainIdle + linger.DefaultLingerTimeout + 2*time.Second
)

func slowlorisServer(readHeaderTimeout time.Duration) func() *http.Server {
	return func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(echoHandler(64)), IdleTimeout: slowlorisIdleTimeout,
			ReadHeaderTimeout: readHeaderTimeout, ErrorLog: quiet}
	}
}

var (
	slowlorisBackend = &backend{name: "slowloris", variants: []string{"raw", "lingerhttp"},
		server: slowlorisServer(0), deploy: true, peerFDs: true}
	slowlorisRHTBackend = &backend{name: "slowloris-rht", variants: []string{"raw", "lingerhttp"},
		server: slowlorisServer(time.Second), deploy: true, peerFDs: true}
)

// slowlorisMode is one row: the backend's server, and whether the peers
// close their side when they see the server's FIN (read, EOF, close) or
// never read and hold their side open (deaf), so every lingering close
// waits for its LingerTimeout.
type slowlorisMode struct {
	row     string
	backend *backend
	deaf    bool
}

var slowlorisModes = []slowlorisMode{
	{row: "slowloris-deploy", backend: slowlorisBackend},
	{row: "slowloris-deploy-deaf", backend: slowlorisBackend, deaf: true},
	{row: "slowloris-deploy-rht", backend: slowlorisRHTBackend},
}

func slowlorisRowNames() []string {
	var names []string
	for _, m := range slowlorisModes {
		names = append(names, m.row)
	}
	return names
}

// slowlorisCounts are a slowloris row's own columns, over its runs.
type slowlorisCounts struct {
	Reused    int  `json:"reusedPeers"`    // peers that sent 1–3 bytes after a response
	HalfLines int  `json:"halfLines"`      // peers that sent half a request line on a new connection
	SetUp     int  `json:"setUp"`          // peers that got so far
	Deaf      bool `json:"deaf,omitempty"` // the peers never read nor close
	// Shutdown: the longest of the runs, its bar (0: none) and whether a
	// run's Shutdown ran into its context's deadline.
	ShutdownMs  float64   `json:"shutdownMs"`
	ShutdownsMs []float64 `json:"shutdownsMs"`
	BoundMs     float64   `json:"boundMs,omitempty"`
	DeadlineHit bool      `json:"deadlineHit,omitempty"`
	// The deployed server's connection descriptors: the most held at the
	// end of a Shutdown, and at any time of a run.
	FDsAtEnd int `json:"connFdsAtShutdownEnd"`
	FDsPeak  int `json:"connFdsPeak"`
	// Peers whose connection the server had ended (FIN or RST seen) by
	// the time Shutdown returned, and the latest such end, in ms from the
	// deploy.
	Ended     int     `json:"endedByShutdown"`
	LastEndMs float64 `json:"lastEndMs"`
}

// slowloris runs every mode's rows (d.sz.slowlorisModes of them).
func (d *driver) slowloris(s *scenario) error {
	for _, m := range slowlorisModes[:min(d.sz.slowlorisModes, len(slowlorisModes))] {
		err := d.alternate(d.sz.slowlorisRounds, m.backend, func(v variant) error {
			return d.slowlorisRun(m, v)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", m.row, err)
		}
	}
	return nil
}

// slowlorisPeer is one peer's connection and when the server ended it.
type slowlorisPeer struct {
	c     net.Conn
	ended atomic.Int64 // UnixNano of the FIN or RST seen; 0: not yet
}

// slowlorisRun: normal keep-alive clients POST steadily; d.sz.slowlorisPeers
// peers each get one response on a keep-alive connection and send 1–3
// bytes of their next request, and half as many open a connection and
// send half a request line; then the backend is deployed away at once
// (its Shutdown with a 20 s context) while the normal clients go on until
// Shutdown returned or the listener refuses them.
func (d *driver) slowlorisRun(m slowlorisMode, v variant) error {
	r := d.row(m.row, v.name)
	if r.Slowloris == nil {
		r.Slowloris = &slowlorisCounts{Deaf: m.deaf}
		if v.name == "lingerhttp" {
			r.Slowloris.BoundMs = float64(slowlorisBound / time.Millisecond)
		}
	}
	sl := r.Slowloris
	var t tally
	var rep *shutdownReport
	var deployAt time.Time
	var peers []*slowlorisPeer
	err := d.run(m.row, m.backend, v, func(addrs []string) error {
		addr := addrs[0]
		hard := time.Now().Add(slowlorisShutdownTimeout + 15*time.Second) // every wait below ends by then
		loadCtx, stopLoad := context.WithCancel(d.ctx)
		var load sync.WaitGroup
		for range slowlorisClients {
			load.Add(1)
			go func() {
				defer load.Done()
				d.slowlorisClient(loadCtx, addr, hard, &t)
			}()
		}
		defer func() {
			stopLoad()
			load.Wait()
		}()

		// The peers, 64 setting up at a time.
		reused, half := d.sz.slowlorisPeers, d.sz.slowlorisPeers/2
		sl.Reused += reused
		sl.HalfLines += half
		var mu sync.Mutex
		parallel(d.ctx, reused+half, 64, func(i int) {
			c, err := dialer.DialContext(d.ctx, "tcp", addr)
			if err != nil {
				return
			}
			c.SetDeadline(hard)
			if i < reused && !slowlorisReuse(c, 1+i%3) || i >= reused && !slowlorisHalfLine(c) {
				c.Close()
				return
			}
			p := &slowlorisPeer{c: c}
			mu.Lock()
			peers = append(peers, p)
			mu.Unlock()
		})
		sl.SetUp += len(peers)
		var watch sync.WaitGroup
		if !m.deaf {
			// Read until the server ends the connection, then close: a
			// peer that stops sending but lets go when told.
			for _, p := range peers {
				watch.Add(1)
				go func() {
					defer watch.Done()
					io.Copy(io.Discard, p.c)
					p.ended.Store(time.Now().UnixNano())
					p.c.Close()
				}()
			}
		}
		defer func() {
			for _, p := range peers {
				p.c.Close()
			}
			watch.Wait()
		}()

		deployAt = time.Now()
		resp, err := d.backend.call(request{Op: "event", Event: "shutdown", TimeoutMs: int(slowlorisShutdownTimeout / time.Millisecond)})
		returned := time.Now()
		stopLoad()
		if err != nil {
			return fmt.Errorf("shutdown event: %w", err)
		}
		rep = resp.Shutdown
		if rep == nil {
			return errors.New("shutdown event: no report")
		}
		if m.deaf {
			// Whether the server has ended each connection: a read finds
			// its FIN (EOF) or RST at once, else times out.
			for _, p := range peers {
				p.c.SetReadDeadline(time.Now().Add(time.Millisecond))
				var b [512]byte
				for {
					if _, err := p.c.Read(b[:]); err != nil {
						if !errors.Is(err, os.ErrDeadlineExceeded) {
							p.ended.Store(returned.UnixNano())
						}
						break
					}
				}
			}
		}
		for _, p := range peers {
			if e := p.ended.Load(); e != 0 && e <= returned.UnixNano() {
				sl.Ended++
				sl.LastEndMs = max(sl.LastEndMs, float64(e-deployAt.UnixNano())/1e6)
			}
		}
		return nil
	})
	r.addOutcomes(&t)
	for key, what := range map[string]string{"refused": "normal dials refused after the listener closed",
		outEOF: "normal EOF", outReset: "normal ECONNRESET", outOther: "normal other failures"} {
		if n := t.get(key); n > 0 {
			r.Extra[what] += float64(n)
		}
	}
	if rep != nil {
		sl.ShutdownsMs = append(sl.ShutdownsMs, rep.Ms)
		sl.ShutdownMs = max(sl.ShutdownMs, rep.Ms)
		sl.DeadlineHit = sl.DeadlineHit || rep.DeadlineHit
		if f := rep.PeerFDs; f != nil {
			sl.FDsAtEnd = max(sl.FDsAtEnd, f.AtEnd)
			sl.FDsPeak = max(sl.FDsPeak, f.Peak)
		}
		if rep.DeadlineHit && rep.AtDeadline != nil {
			r.Deadlines = append(r.Deadlines, "Shutdown ran into its deadline; "+rep.AtDeadline.String())
		}
	}
	d.logf("%s %s: %d peers set up, %s, %d ended by then (last at %.0f ms), conn fds %+v; normal requests %d, ok %d",
		m.row, v.name, len(peers), rep.describe(), sl.Ended, sl.LastEndMs, rep.peerFDs(), t.get("requests"), t.get(outOK))
	return err
}

func (s *shutdownReport) peerFDs() *peerFDs {
	if s == nil {
		return nil
	}
	return s.PeerFDs
}

// slowlorisReuse gets one response on c, then sends n bytes of the next
// request and stops.
func slowlorisReuse(c net.Conn, n int) bool {
	if _, err := c.Write([]byte("GET /first HTTP/1.1\r\nHost: backend\r\n\r\n")); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		return false
	}
	_, err = c.Write([]byte("GET /next HTTP/1.1\r\n")[:n])
	return err == nil
}

// slowlorisHalfLine sends half a request line on a new connection.
func slowlorisHalfLine(c net.Conn) bool {
	_, err := c.Write([]byte("GET /slow HT"))
	return err == nil
}

// slowlorisClient POSTs on one keep-alive connection, 0–10 ms apart, until
// ctx ends, the time is up or the backend refuses its dial (the
// deployed listener has closed).
func (d *driver) slowlorisClient(ctx context.Context, addr string, hard time.Time, t *tally) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for n := 0; n < 100_000 && time.Now().Before(hard) && ctx.Err() == nil; n++ {
		sleepCtx(ctx, time.Duration(rand.Int64N(int64(10*time.Millisecond))))
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/", strings.NewReader("ping"))
		req.GetBody = nil // not replayable: no silent retry
		resp, err := cl.Do(req)
		if ctx.Err() != nil {
			return // the run is over: not counted
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			t.add("refused", 1)
			return
		}
		t.add("requests", 1)
		if err != nil {
			t.add(classify(err), 1)
			continue
		}
		out := readStatus(resp)
		if out != outOK && out != outEOF && out != outReset {
			out = outOther
		}
		t.add(out, 1)
	}
}

// The backend's side: the deployed server's connection descriptors.

// peerFDs are the descriptors the backend held for the deployed server's
// connections (its listening socket not counted).
type peerFDs struct {
	AtEnd int `json:"atEnd"` // when Shutdown returned
	Peak  int `json:"peak"`  // the most, sampled every 10 ms from the run's start and as Shutdown began
}

// fdSampler samples the descriptors held for connections on one local
// port.
type fdSampler struct {
	port int
	peak atomic.Int64
	once sync.Once
	stop chan struct{}
	done chan struct{}
}

func startFDSampler(port int) *fdSampler {
	s := &fdSampler{port: port, stop: make(chan struct{}), done: make(chan struct{})}
	go s.sample()
	return s
}

func (s *fdSampler) sample() {
	defer close(s.done)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.now()
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// now counts at once, for the peak: the shutdown event calls it as it
// begins, when every peer is set up.
func (s *fdSampler) now() {
	n, err := connFDs(s.port)
	if err != nil {
		return
	}
	for {
		p := s.peak.Load()
		if int64(n) <= p || s.peak.CompareAndSwap(p, int64(n)) {
			return
		}
	}
}

// end stops the sampling and counts once more.
func (s *fdSampler) end() *peerFDs {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	n, _ := connFDs(s.port)
	return &peerFDs{AtEnd: n, Peak: max(n, int(s.peak.Load()))}
}

// connFDs counts the descriptors this process holds for TCP connections
// whose local port is port, in any state but LISTEN: its open file
// descriptors that are sockets, matched by inode with the namespace's
// /proc/net/tcp and tcp6 (proc(5)). Connections the kernel still keeps
// after their close (TIME_WAIT, FIN_WAIT2 orphans) have no descriptor
// and are not counted.
func connFDs(port int) (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	inodes := make(map[string]bool, len(ents))
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue // no IPv6
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] == "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if err == nil && int(p) == port && inodes[f[9]] {
				n++
			}
		}
	}
	return n, nil
}
