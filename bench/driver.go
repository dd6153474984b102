package main

// The driver: runs the scenarios' clients and proxies, alternating the
// variants, and collects what every run saw into rows.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/netns"
)

// sizes are a mode's counts. Every client loop is bounded by a count and
// by a time.
type sizes struct {
	unreadConns, unreadRounds            int
	idleClients, idleRounds              int
	idleFor                              time.Duration
	tlsIdleFor                           time.Duration // per tls-idle-race run
	sweepTries, sweepRounds              int           // tries per offset and round
	earlyUploads, earlyRounds            int
	proxyBursts, proxyBurst, proxyRounds int // bursts per round, requests per burst
	shutdownFor                          time.Duration
	shutdownRounds                       int
	apacheBursts, apacheRounds           int           // apache-idle's, fewer than the other proxies': the default run's budget
	deployWarm, deployAfter              time.Duration // apache-deploy: load before the deploy, and after Shutdown returned
	deploys                              int           // apache-deploy: deploys per variant (-deploys)
	overheadFor                          time.Duration
	overheadPairs, overheadConns         int
	grpcFor                              time.Duration // per close path, variant and round
	grpcRounds                           int
	smuggleAttempts, smuggleRounds       int // attacks per nginx mode and variant, over the rounds
	// slowloris-deploy: peers that stop after 1–3 bytes of their next
	// request (and half as many with half a request line), the rows
	// (slowlorisModes) run and the deploys per variant and row.
	slowlorisPeers, slowlorisModes, slowlorisRounds int
	// node-keepalive: Node's lanes per client kind, the swept requests
	// each lane sends, and rounds.
	nodeLanes, nodePerLane, nodeRounds int
}

var (
	defaultSizes = sizes{
		unreadConns: 500, unreadRounds: 2,
		idleClients: 16, idleRounds: 2, idleFor: 4 * time.Second,
		tlsIdleFor: time.Second,
		sweepTries: 15, sweepRounds: 2,
		earlyUploads: 16, earlyRounds: 2,
		proxyBursts: 10, proxyBurst: 64, proxyRounds: 2,
		shutdownFor: 4 * time.Second, shutdownRounds: 2,
		apacheBursts: 3, apacheRounds: 1,
		deployWarm: 2 * time.Second, deployAfter: 200 * time.Millisecond, deploys: 10,
		overheadFor: 2 * time.Second, overheadPairs: 3, overheadConns: 10000,
		grpcFor: 1500 * time.Millisecond, grpcRounds: 2,
		smuggleAttempts: 20, smuggleRounds: 2,
		slowlorisPeers: 200, slowlorisModes: 3, slowlorisRounds: 1,
		nodeLanes: 200, nodePerLane: 3, nodeRounds: 1,
	}
	// Quick mode keeps two rounds wherever it can, so every variant runs
	// first once: with one round, raw would always run first.
	quickSizes = sizes{
		unreadConns: 100, unreadRounds: 2,
		idleClients: 16, idleRounds: 2, idleFor: time.Second,
		tlsIdleFor: 600 * time.Millisecond,
		sweepTries: 4, sweepRounds: 2,
		earlyUploads: 4, earlyRounds: 2,
		proxyBursts: 3, proxyBurst: 40, proxyRounds: 2,
		shutdownFor: time.Second, shutdownRounds: 2,
		apacheBursts: 2, apacheRounds: 1,
		deployWarm: 500 * time.Millisecond, deployAfter: 100 * time.Millisecond, deploys: 2,
		overheadFor: 500 * time.Millisecond, overheadPairs: 3, overheadConns: 2000,
		grpcFor: 500 * time.Millisecond, grpcRounds: 2,
		// One round: every keep-alive run costs net/http's 500 ms wait
		// before it closes, and which variant runs first does not move
		// a count that must be 0.
		smuggleAttempts: 6, smuggleRounds: 1,
		// One deploy per row and variant: each costs Shutdown's seconds.
		slowlorisPeers: 50, slowlorisModes: 1, slowlorisRounds: 1,
		nodeLanes: 40, nodePerLane: 2, nodeRounds: 1,
	}
)

type driver struct {
	ctx     context.Context
	o       options
	sz      sizes
	host    string // the backend's address
	netns   string // the backend's network namespace, "" on loopback
	counted bool   // the backend counts its namespace's RSTs
	tmp     string // the proxies' configs and logs
	backend *backendProc
	res     *results
	rows    map[string]*row

	burstSeq map[string]int // proxyIdle's place in its pause schedule, per row
}

// runDriver runs the scenarios with the backend in backendNS, or, if that
// is "", on loopback, for the reason noNetns.
func runDriver(o options, backendNS, noNetns string) int {
	start := time.Now()
	raiseFileLimit()
	ctx, cancel := signalContext()
	defer cancel()

	d := &driver{ctx: ctx, o: o, sz: defaultSizes, host: "127.0.0.1", rows: make(map[string]*row), burstSeq: make(map[string]int)}
	if o.quick {
		d.sz = quickSizes
	}
	if o.deploys > 0 {
		d.sz.deploys = o.deploys
	}
	if o.apacheRounds > 0 {
		d.sz.apacheRounds = o.apacheRounds
	}
	if backendNS != "" {
		d.host, d.counted, d.netns = backendIP, true, backendNS
	}
	tmp, err := filepath.Abs(filepath.Join(o.out, "tmp", fmt.Sprintf("run-%d", os.Getpid())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "lingerbench:", err)
		return 1
	}
	d.tmp = tmp
	if err := os.MkdirAll(d.tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "lingerbench:", err)
		return 1
	}
	if !o.keep {
		defer os.RemoveAll(d.tmp)
	}
	d.res = newResults(o, d.counted)

	b, err := startBackend(backendNS, d.host, d.counted)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lingerbench: starting the backend:", err)
		return 1
	}
	d.backend = b
	defer b.stop()

	// One line for everything skipped, and why.
	var skipped []string
	skip := make(map[string]string)
	for _, s := range scenarios {
		if s.proxy == "" && s.needs == nil || !d.selected(s) {
			continue
		}
		switch {
		case s.proxy != "" && !d.counted:
			skip[s.name] = "needs network namespaces"
		case s.proxy != "":
			skip[s.name] = proxyMissing(s.proxy)
		}
		if skip[s.name] == "" && s.needs != nil {
			skip[s.name] = s.needs()
		}
		if why := skip[s.name]; why != "" {
			skipped = append(skipped, s.name)
			d.res.Skipped = append(d.res.Skipped, s.name+": "+why)
		}
	}
	switch {
	case !d.counted:
		msg := fmt.Sprintf("lingerbench: %s, so no network namespaces: resets are counted as the clients see them (ECONNRESET), not by the kernel", noNetns)
		if len(skipped) > 0 {
			msg += "; skipping " + strings.Join(skipped, ", ")
		}
		fmt.Fprintln(os.Stderr, msg)
	case len(skipped) > 0:
		var parts []string
		for _, name := range skipped {
			parts = append(parts, name+" ("+skip[name]+")")
		}
		fmt.Fprintf(os.Stderr, "lingerbench: skipping %s\n", strings.Join(parts, ", "))
	}

	failed := false
	for _, s := range scenarios {
		if !d.selected(s) || skip[s.name] != "" {
			continue
		}
		t0 := time.Now()
		err := s.run(d, s)
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "lingerbench: interrupted; stopping")
			return 130
		}
		if err != nil {
			failed = true
			fmt.Fprintf(os.Stderr, "lingerbench: %s failed: %v\n", s.name, err)
			d.res.Failed = append(d.res.Failed, s.name+": "+err.Error())
		}
		fmt.Fprintf(os.Stderr, "lingerbench: %-15s %5.1f s\n", s.name, time.Since(t0).Seconds())
	}
	d.res.WallSeconds = time.Since(start).Seconds()
	for _, s := range scenarios {
		for _, name := range s.rowNames() {
			for _, v := range variants {
				if r := d.rows[name+"/"+v.name]; r != nil {
					d.res.Rows = append(d.res.Rows, r)
				}
			}
		}
	}

	fmt.Print(d.res.markdown())
	if err := d.res.write(o.out); err != nil {
		fmt.Fprintln(os.Stderr, "lingerbench: writing results:", err)
		failed = true
	}
	if !o.quick && len(o.only) == 0 && !failed {
		if err := d.res.writeReadmeTable(o.out); err != nil {
			fmt.Fprintln(os.Stderr, "lingerbench: writing results:", err)
			failed = true
		}
	}
	if o.publish {
		if failed {
			fmt.Fprintln(os.Stderr, "lingerbench: not publishing a run that failed")
		} else if err := publish(o); err != nil {
			fmt.Fprintln(os.Stderr, "lingerbench: publishing results:", err)
			failed = true
		} else {
			fmt.Fprintf(os.Stderr, "lingerbench: published %s to %s/\n", strings.Join(publishedFiles(o), ", "), publishDir)
		}
	}
	if o.check {
		if bad := d.res.checkFailures(); len(bad) > 0 {
			for _, b := range bad {
				fmt.Fprintln(os.Stderr, "lingerbench: check failed:", b)
			}
			return 1
		}
		fmt.Fprintln(os.Stderr, "lingerbench: check passed")
	}
	if failed {
		return 1
	}
	return 0
}

func (d *driver) selected(s *scenario) bool {
	return d.o.only[s.name] || len(d.o.only) == 0 && !s.optIn
}

func (d *driver) logf(format string, args ...any) {
	if d.o.verbose {
		fmt.Fprintf(os.Stderr, "lingerbench: "+format+"\n", args...)
	}
}

// row returns the row of scenario × variant, made on first use.
func (d *driver) row(scn, v string) *row {
	key := scn + "/" + v
	r := d.rows[key]
	if r == nil {
		r = &row{Scenario: scn, Variant: v, Extra: make(map[string]float64)}
		if d.counted {
			r.Counters = &netns.Counters{}
		}
		d.rows[key] = r
	}
	return r
}

// alternate runs fn for every variant that serves b, rounds times,
// reversing the order every other round so drift and warm-up hit all
// variants alike.
func (d *driver) alternate(rounds int, b *backend, fn func(v variant) error) error {
	vs := b.variantList()
	for r := range rounds {
		for i := range vs {
			v := vs[i]
			if r%2 == 1 {
				v = vs[len(vs)-1-i]
			}
			if err := d.ctx.Err(); err != nil {
				return err
			}
			if err := fn(v); err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
		}
	}
	return nil
}

// run starts backend b for variant v, runs body against its addresses and
// stops it, adding the backend's counters and listener stats to the row
// of scn.
func (d *driver) run(scn string, b *backend, v variant, body func(addrs []string) error) error {
	_, err := d.runReq(scn, b, request{}, v, body)
	return err
}

// runReq is run with more said in the start request (req's GRPC); it
// returns the backend's answer to stop.
func (d *driver) runReq(scn string, b *backend, req request, v variant, body func(addrs []string) error) (response, error) {
	req.Op, req.Scenario, req.Variant = "start", b.name, v.name
	resp, err := d.backend.call(req)
	if err != nil {
		return response{}, err
	}
	bodyErr := body(resp.Addrs)
	stop, err := d.backend.call(request{Op: "stop"})
	if err != nil {
		return stop, err
	}
	r := d.row(scn, v.name)
	r.Runs++
	if stop.Counters != nil && r.Counters != nil {
		*r.Counters = r.Counters.Add(*stop.Counters)
	}
	if stop.Stats != nil {
		if r.Stats == nil {
			r.Stats = &linger.Stats{}
		}
		*r.Stats = r.Stats.Add(*stop.Stats)
	}
	if stop.Scrape != nil {
		r.Scrape = r.Scrape.add(stop.Scrape)
	}
	d.logf("%s %s: counters %+v stats %+v", scn, v.name, stop.Counters, stop.Stats)
	return stop, bodyErr
}

// backendProc is the backend child process and its control pipe.
type backendProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan []byte
	mu    sync.Mutex
}

func startBackend(ns, host string, counted bool) (*backendProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-role", "backend", "-host", host}
	if counted {
		args = append(args, "-count-rsts")
	}
	var cmd *exec.Cmd
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, self}, args...)...)
	} else {
		cmd = exec.Command(self, args...)
	}
	cmd.Stderr = os.Stderr
	// Its own process group: a Ctrl-C reaches the driver, which stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &backendProc{cmd: cmd, in: in, lines: make(chan []byte, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			b.lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(b.lines)
	}()
	return b, nil
}

func (b *backendProc) call(req request) (response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var resp response
	msg, _ := json.Marshal(req)
	if _, err := b.in.Write(append(msg, '\n')); err != nil {
		return resp, fmt.Errorf("backend: %w", err)
	}
	select {
	case line, ok := <-b.lines:
		if !ok {
			return resp, errors.New("backend exited")
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return resp, fmt.Errorf("backend said %q: %w", line, err)
		}
		if resp.Err != "" {
			return resp, fmt.Errorf("backend %s: %s", req.Op, resp.Err)
		}
		return resp, nil
	case <-time.After(90 * time.Second):
		return resp, fmt.Errorf("backend did not answer %s in 90 s", req.Op)
	}
}

func (b *backendProc) event(name string, n int) (float64, error) {
	resp, err := b.call(request{Op: "event", Event: name, N: n})
	return resp.Value, err
}

// stop closes the backend's stdin, which makes it exit, and kills it by
// PID if it has not within 10 s.
func (b *backendProc) stop() {
	b.in.Close()
	done := make(chan struct{})
	go func() {
		b.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-done
	}
}
