package main

// The restart scenario's backend: one HTTP server restarted in place, the
// only backend behind its proxy.
//
// Each generation of the server is a process of its own (this binary with
// -role restart-gen), started in the backend's namespace. The control
// (the backend process that the driver talks to) starts the first one,
// tells generations to restart or stop by signals to their PIDs, as an
// operator or systemd does (SIGHUP: restart, SIGTERM: stop), and hears
// from them on a pipe that every generation inherits as stdout: one JSON
// line per event.
//
//   - raw: net/http stopped and started again. SIGTERM: the generation
//     calls http.Server.Shutdown, which closes the listening socket, and
//     exits; the control then starts the next one on the same port.
//   - raw+tableflip, linger+tableflip, lingerhttp+tableflip: SIGHUP makes
//     the generation call tableflip's Upgrade, which re-executes this
//     binary with the listening socket inherited and returns once the new
//     generation is ready; the old one then drains: http.Server.Shutdown
//     (raw), linger's Handoff then Shutdown (linger), lingerhttp's Handoff
//     (lingerhttp). The socket never closes.
//
// The control is the generations' subreaper: a generation started by
// tableflip becomes its child when its parent exits, and it reaps it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"golang.org/x/sys/unix"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
)

const (
	// restartDrainIdle is lingerhttp's DrainIdle in the restart scenario:
	// under load the proxy reuses every idle connection within
	// milliseconds, and tableflip's next upgrade waits for the old
	// generation to exit.
	restartDrainIdle = time.Second
	// restartGenLifetime bounds a generation that is never told to stop.
	restartGenLifetime = 10 * time.Minute
	// restartWait bounds each wait of the control for a generation.
	restartWait = 30 * time.Second
)

// genEvent is one line a generation writes on the control's pipe.
type genEvent struct {
	Pid     int           `json:"pid"`
	Event   string        `json:"event"`        // ready, closed, exit, error
	At      int64         `json:"at,omitempty"` // ready: listening since; closed: stopped accepting (Unix ns)
	Handoff bool          `json:"handoff,omitempty"`
	DrainMs float64       `json:"drainMs,omitempty"`
	Stats   *linger.Stats `json:"stats,omitempty"`
	Err     string        `json:"err,omitempty"`
}

// restartResult is what the control reports when the run stops.
type restartResult struct {
	Restarts int       `json:"restarts"`
	GapsMs   []float64 `json:"gapsMs"`  // per restart: the new generation listening minus the old one closing (negative: overlap)
	DrainMs  []float64 `json:"drainMs"` // per generation: how long it drained
	Errors   []string  `json:"errors,omitempty"`
}

func isTableflip(variant string) bool { return strings.HasSuffix(variant, "+tableflip") }

// emit writes one event line; a line is far below PIPE_BUF, so lines of
// generations writing at once do not interleave.
func emit(e genEvent) {
	e.Pid = os.Getpid()
	b, _ := json.Marshal(e)
	os.Stdout.Write(append(b, '\n'))
}

// runRestartGen is one generation of the restart scenario's server.
func runRestartGen(variant, addr string) int {
	log.SetPrefix(fmt.Sprintf("lingerbench restart %s[%d]: ", variant, os.Getpid()))
	log.SetFlags(0)
	fail := func(err error) int {
		emit(genEvent{Event: "error", Err: err.Error()})
		return 1
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)

	var upg *tableflip.Upgrader
	var ln net.Listener
	var err error
	if isTableflip(variant) {
		// Plain TCP, as linger's README advises: Go 1.24+ listens with
		// MPTCP by default, and Close cannot stop new handshakes on it.
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		if upg, err = tableflip.New(tableflip.Options{UpgradeTimeout: restartWait, ListenConfig: &lc}); err != nil {
			return fail(err)
		}
		defer upg.Stop()
		ln, err = upg.Listen("tcp", addr) // inherited, after the first generation
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return fail(err)
	}
	listening := time.Now()

	srv := restartServer()
	var lln *linger.Listener
	var ls *lingerhttp.Server
	switch variant {
	case "raw", "raw+tableflip":
		go srv.Serve(ln)
	case "linger+tableflip":
		lln = linger.Wrap(ln, linger.Config{})
		go srv.Serve(lln)
	case "lingerhttp+tableflip":
		ls = lingerhttp.New(srv, lingerhttp.Config{DrainIdle: restartDrainIdle})
		go ls.Serve(ln)
	default:
		return fail(fmt.Errorf("variant %s does not run restart", variant))
	}
	if upg != nil {
		if err := upg.Ready(); err != nil {
			return fail(err)
		}
	}
	emit(genEvent{Event: "ready", At: listening.UnixNano()})

	// Wait to be restarted or stopped. A restart that fails leaves this
	// generation serving.
	handoff := false
	lifetime := time.NewTimer(restartGenLifetime)
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP && upg != nil {
				if err := upgrade(upg); err != nil {
					emit(genEvent{Event: "error", Err: "upgrade: " + err.Error()})
					continue
				}
				handoff = true // the successor is ready, on the same socket
			} else if upg != nil {
				upg.Stop()
			}
			break wait
		case <-lifetime.C:
			break wait
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), restartWait)
	defer cancel()
	start := time.Now()
	emit(genEvent{Event: "closed", At: start.UnixNano(), Handoff: handoff})
	var errs []error
	switch {
	case ls != nil && handoff:
		errs = append(errs, ls.Handoff(ctx))
	case ls != nil:
		errs = append(errs, ls.Shutdown(ctx))
	case lln != nil:
		if handoff {
			errs = append(errs, lln.Handoff())
		}
		err := srv.Shutdown(ctx)
		if handoff && errors.Is(err, net.ErrClosed) {
			// Serve had not yet seen Handoff's close when Shutdown closed
			// the listener it tracks again: a second close, no failure.
			err = nil
		}
		errs = append(errs, err, lln.Shutdown(ctx))
	default:
		errs = append(errs, srv.Shutdown(ctx))
	}
	e := genEvent{Event: "exit", Handoff: handoff, DrainMs: float64(time.Since(start)) / float64(time.Millisecond)}
	switch {
	case ls != nil:
		st := ls.Listener().Stats()
		e.Stats = &st
	case lln != nil:
		st := lln.Stats()
		e.Stats = &st
	}
	if err := errors.Join(errs...); err != nil {
		e.Err = err.Error()
	}
	emit(e)
	return 0
}

// upgrade is tableflip's Upgrade, once this generation's parent has
// exited: tableflip refuses to upgrade before, and even after
// WaitForParent it may refuse once more, as its loop sees the parent's
// exit and the upgrade request at the same time and takes either.
func upgrade(upg *tableflip.Upgrader) error {
	ctx, cancel := context.WithTimeout(context.Background(), restartWait)
	defer cancel()
	if err := upg.WaitForParent(ctx); err != nil {
		return err
	}
	var err error
	for range 50 {
		if err = upg.Upgrade(); err == nil || err.Error() != "parent hasn't exited" {
			return err
		}
	}
	return err
}

// restartServer is every generation's server: it reads the POST, works
// 2 ms, so a restart finds requests in flight, and answers 1 KiB.
func restartServer() *http.Server {
	h := echoHandler(proxyReplySize)
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(2 * time.Millisecond)
			h(w, r)
		}),
		IdleTimeout: 30 * time.Second,
		ErrorLog:    log.New(io.Discard, "", 0),
	}
}

// restartRun is the control's side of one restart run.
type restartRun struct {
	variant string
	addr    string
	self    string
	r, w    *os.File           // the generations' event pipe; the control keeps w for the generations it starts
	events  chan genEvent      // from the pipe
	seen    []genEvent         // every event so far
	cmds    map[int]*exec.Cmd  // generations the control started itself
	live    map[int]bool       // generations that said ready and not yet exit
	cur     int                // the generation serving now
	known   map[int]bool       // generations whose ready the control has taken
	reaping sync.WaitGroup     // reapers of exited generations
	exited  map[int]chan error // closed when a generation is reaped
	res     restartResult
	stats   *linger.Stats
}

var subreaperOnce sync.Once

func startRestart(host, variant string) (*restartRun, error) {
	subreaperOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			log.Printf("restart: cannot become the generations' subreaper (%v); init reaps them", err)
		}
	})
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// A port for every generation: tableflip finds the inherited socket
	// by its address, and the stopped-and-started one binds it again.
	probe, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	addr := probe.Addr().String()
	probe.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	rr := &restartRun{
		variant: variant, addr: addr, self: self, r: r, w: w,
		events: make(chan genEvent, 64),
		cmds:   make(map[int]*exec.Cmd), live: make(map[int]bool), known: make(map[int]bool), exited: make(map[int]chan error),
	}
	go rr.read()
	pid, err := rr.startGen()
	if err != nil {
		rr.stop()
		return nil, err
	}
	if _, err := rr.await(pid, "ready"); err != nil {
		rr.stop()
		return nil, err
	}
	rr.cur, rr.known[pid] = pid, true
	return rr, nil
}

// read passes the pipe's lines on until every writer has closed it.
func (rr *restartRun) read() {
	defer close(rr.events)
	dec := json.NewDecoder(rr.r)
	for {
		var e genEvent
		if err := dec.Decode(&e); err != nil {
			return
		}
		rr.events <- e
	}
}

// startGen starts a generation as the control's own child.
func (rr *restartRun) startGen() (int, error) {
	cmd := exec.Command(rr.self, "-role", "restart-gen", "-variant", rr.variant, "-addr", rr.addr)
	cmd.Stdout, cmd.Stderr = rr.w, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	rr.cmds[pid] = cmd
	return pid, nil
}

// note records an event: stats and drain times of exits, errors, and
// which generations live; an exited generation is reaped.
func (rr *restartRun) note(e genEvent) {
	rr.seen = append(rr.seen, e)
	switch e.Event {
	case "ready":
		rr.live[e.Pid] = true
	case "error":
		rr.res.Errors = append(rr.res.Errors, fmt.Sprintf("generation %d: %s", e.Pid, e.Err))
	case "exit":
		delete(rr.live, e.Pid)
		rr.res.DrainMs = append(rr.res.DrainMs, e.DrainMs)
		if e.Stats != nil {
			if rr.stats == nil {
				rr.stats = &linger.Stats{}
			}
			*rr.stats = rr.stats.Add(*e.Stats)
		}
		if e.Err != "" {
			rr.res.Errors = append(rr.res.Errors, fmt.Sprintf("generation %d drain: %s", e.Pid, e.Err))
		}
		rr.reap(e.Pid)
	}
}

// reap waits for an exited generation: by its exec.Cmd if the control
// started it, else (tableflip started it, and it is the control's child
// since its parent exited) by wait4.
func (rr *restartRun) reap(pid int) {
	done := make(chan error, 1)
	rr.exited[pid] = done
	rr.reaping.Add(1)
	go func() {
		defer rr.reaping.Done()
		if cmd := rr.cmds[pid]; cmd != nil {
			done <- cmd.Wait()
			return
		}
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		done <- err
	}()
}

// await waits for generation pid's event; pid 0 waits for a generation
// the control does not know yet to say ready.
func (rr *restartRun) await(pid int, event string) (genEvent, error) {
	match := func(e genEvent) bool {
		if pid == 0 {
			return e.Event == "ready" && !rr.known[e.Pid]
		}
		return e.Event == event && e.Pid == pid
	}
	for _, e := range rr.seen {
		if match(e) {
			return e, nil
		}
	}
	timeout := time.After(restartWait)
	for {
		select {
		case e, ok := <-rr.events:
			if !ok {
				return genEvent{}, fmt.Errorf("no %s event from generation %d: every generation exited", event, pid)
			}
			rr.note(e)
			if match(e) {
				return e, nil
			}
		case <-timeout:
			return genEvent{}, fmt.Errorf("no %s event from generation %d within %v; errors: %v", event, pid, restartWait, rr.res.Errors)
		}
	}
}

// restart restarts the serving generation and returns the gap: how long
// after the old generation stopped accepting the new one was listening
// (negative: the new one was serving first).
func (rr *restartRun) restart() (float64, error) {
	old := rr.cur
	var ready genEvent
	var err error
	if isTableflip(rr.variant) {
		// tableflip upgrades only once the generation before has exited.
		for pid := range rr.live {
			if pid != old {
				if _, err := rr.await(pid, "exit"); err != nil {
					return 0, err
				}
			}
		}
		if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
			return 0, err
		}
		if ready, err = rr.await(0, "ready"); err != nil {
			return 0, err
		}
	} else {
		if err := syscall.Kill(old, syscall.SIGTERM); err != nil {
			return 0, err
		}
		if _, err := rr.await(old, "exit"); err != nil {
			return 0, err
		}
		<-rr.exited[old] // the process is gone, as its socket
		pid, err := rr.startGen()
		if err != nil {
			return 0, err
		}
		if ready, err = rr.await(pid, "ready"); err != nil {
			return 0, err
		}
	}
	closed, err := rr.await(old, "closed")
	if err != nil {
		return 0, err
	}
	rr.cur, rr.known[ready.Pid] = ready.Pid, true
	gap := float64(ready.At-closed.At) / float64(time.Millisecond)
	rr.res.Restarts++
	rr.res.GapsMs = append(rr.res.GapsMs, gap)
	return gap, nil
}

// stop stops the serving generation for good, waits for every generation
// to exit, and reports.
func (rr *restartRun) stop() (*restartResult, *linger.Stats) {
	if rr.cur != 0 {
		syscall.Kill(rr.cur, syscall.SIGTERM)
	}
	for _, pid := range rr.pids() {
		if _, err := rr.await(pid, "exit"); err != nil {
			rr.res.Errors = append(rr.res.Errors, err.Error())
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for pid, cmd := range rr.cmds {
		if _, ok := rr.exited[pid]; !ok { // started, never said ready or exit
			cmd.Process.Kill()
			rr.reap(pid)
		}
	}
	rr.reaping.Wait()
	rr.w.Close()
	rr.r.Close()
	for range rr.events {
	}
	return &rr.res, rr.stats
}

// pids are the generations that said ready and not yet exit.
func (rr *restartRun) pids() []int {
	var pids []int
	for pid := range rr.live {
		pids = append(pids, pid)
	}
	return pids
}
