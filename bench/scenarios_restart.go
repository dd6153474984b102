package main

// The restart scenario: ONE backend behind nginx or HAProxy under steady
// POST load, restarted in place several times: nowhere else for the proxy
// to send a request while the backend is away. restart.go runs the
// backend's generations.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/linger-go/linger/internal/netns"
)

func restartRowNames() []string { return []string{"restart-nginx", "restart-haproxy"} }

// restartSizes are the scenario's counts: per run, restarts restarts,
// each every apart (tableflip's next one also waits for the old
// generation to exit), then tail more of load.
type restartSizes struct {
	rounds, restarts, workers int
	every, tail               time.Duration
	pace                      time.Duration // each worker sends one request per pace
}

var (
	restartDefault = restartSizes{rounds: 2, restarts: 4, workers: 8, every: 1500 * time.Millisecond, tail: 500 * time.Millisecond, pace: 5 * time.Millisecond}
	restartQuick   = restartSizes{rounds: 1, restarts: 2, workers: 8, every: time.Second, tail: 300 * time.Millisecond, pace: 5 * time.Millisecond}
)

// restartCounts are a restart row's own columns.
type restartCounts struct {
	Restarts int     `json:"restarts"`
	Refused  int64   `json:"refusedConnects"` // the proxy's connects the backend refused: TcpAttemptFails in the proxy's namespace
	GapMaxMs float64 `json:"gapMaxMs"`        // the longest time no socket listened (0 when the new generation was first)
	Overlap  float64 `json:"overlapMinMs"`    // the shortest time both generations served (tableflip)
	P99Ms    float64 `json:"p99Ms"`           // clients' latency, all runs
	MaxMs    float64 `json:"maxMs"`
}

func (d *driver) restart(s *scenario) error {
	t0 := time.Now()
	sz := restartDefault
	if d.o.quick {
		sz = restartQuick
	}
	for _, kind := range []string{"nginx", "haproxy"} {
		scn := "restart-" + kind
		if proxyPath(kind) == "" {
			d.res.Skipped = append(d.res.Skipped, scn+": "+kind+" is not installed")
			continue
		}
		lat := make(map[string][]time.Duration)
		err := d.alternate(sz.rounds, s.backend, func(v variant) error {
			l, err := d.restartRun(scn, kind, s.backend, v, sz)
			lat[v.name] = append(lat[v.name], l...)
			return err
		})
		for name, l := range lat {
			slices.Sort(l)
			if r := d.rows[scn+"/"+name]; r != nil && r.Restart != nil && len(l) > 0 {
				r.Restart.P99Ms = quantileMs(l, 0.99)
				r.Restart.MaxMs = quantileMs(l, 1)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", scn, err)
		}
	}
	if !d.o.quick {
		return d.writeRestartTable(time.Since(t0))
	}
	return nil
}

// writeRestartTable writes restart-table.md into the run's directory: the
// restart rows of a default run, for the README to quote once published
// (the scenario is not part of the full run that writes README-table.md).
func (d *driver) writeRestartTable(took time.Duration) error {
	var rows []*row
	for _, name := range restartRowNames() {
		for _, v := range variants {
			if r := d.rows[name+"/"+v.name]; r != nil {
				rows = append(rows, r)
			}
		}
	}
	rsts := "backend RSTs"
	if !d.counted {
		rsts = "backend RSTs (not counted: not root)"
	}
	var b strings.Builder
	b.WriteString("# linger benchmark: the restart scenario\n\n")
	b.WriteString("Made by `bench/run -only restart -publish` (default counts; `make bench-publish`).\n\n")
	fmt.Fprintf(&b, "- date: %s\n- `uname -r`: %s\n- `nginx -v`: %s\n- `haproxy -v`: %s\n- `nproc`: %d\n- Go: %s\n- the scenario's time: %.0f s\n",
		time.Now().UTC().Format(time.RFC3339), d.res.Kernel, orNone(d.res.Nginx, "not installed"), orNone(d.res.HAProxy, "not installed"),
		d.res.NProc, d.res.Go, took.Seconds())
	b.WriteString(restartTable(rows, rsts))
	if err := os.MkdirAll(d.o.out, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.o.out, "restart-table.md"), []byte(b.String()), 0o644)
}

// restartRun runs one restart run of variant v behind proxy kind and
// returns the clients' latencies.
func (d *driver) restartRun(scn, kind string, b *backend, v variant, sz restartSizes) ([]time.Duration, error) {
	var lat []time.Duration
	var refused int64
	var restartErr error
	stop, err := d.runReq(scn, b, request{}, v, func(addrs []string) error {
		p, err := startProxy(kind, filepath.Join(d.tmp, scn+"-"+v.name), addrs[:1])
		if err != nil {
			return err
		}
		tr := &http.Transport{MaxIdleConnsPerHost: sz.workers, DisableCompression: true}
		cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}
		before, err := readAttemptFails()
		if err != nil {
			p.stop()
			return err
		}

		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < sz.restarts && d.ctx.Err() == nil; i++ {
				sleepCtx(d.ctx, sz.every)
				if _, err := d.backend.event("restart", 0); err != nil {
					restartErr = err
					return
				}
			}
			sleepCtx(d.ctx, sz.tail)
		}()
		var t tally
		var mu sync.Mutex
		limit := time.Now().Add(time.Duration(sz.restarts+1) * (sz.every + restartWait))
		parallel(d.ctx, sz.workers, sz.workers, func(int) {
			for n := 0; n < 100_000 && time.Now().Before(limit); n++ {
				select {
				case <-done:
					return
				default:
				}
				t.add("requests", 1)
				t0 := time.Now()
				t.add(doRequest(cl, proxyRequest(d.ctx, "POST", p.addr)), 1)
				el := time.Since(t0)
				mu.Lock()
				lat = append(lat, el)
				mu.Unlock()
				sleepCtx(d.ctx, sz.pace-el) // a steady rate, not saturation: the proxy's pool holds idle connections, as in production
			}
		})
		<-done
		tr.CloseIdleConnections()
		p.stop()
		after, err := readAttemptFails()
		if err != nil {
			return err
		}
		refused = after - before
		addProxyTally(d.row(scn, v.name), &t, p)
		return nil
	})
	r := d.row(scn, v.name)
	if r.Restart == nil {
		r.Restart = &restartCounts{Overlap: -1}
	}
	rc := r.Restart
	rc.Refused += refused
	if res := stop.Restart; res != nil {
		rc.Restarts += res.Restarts
		for _, g := range res.GapsMs {
			rc.GapMaxMs = max(rc.GapMaxMs, g)
			if g < 0 && (rc.Overlap < 0 || -g < rc.Overlap) {
				rc.Overlap = -g
			}
		}
		for _, ms := range res.DrainMs {
			r.Extra["drain ms (max)"] = max(r.Extra["drain ms (max)"], ms)
		}
		if len(res.Errors) > 0 && err == nil {
			err = fmt.Errorf("generations: %s", strings.Join(res.Errors, "; "))
		}
	}
	if err == nil {
		err = restartErr
	}
	d.logf("%s %s: refused %d, restart %+v", scn, v.name, refused, stop.Restart)
	return lat, err
}

// readAttemptFails reads TcpAttemptFails of the calling process's network
// namespace: connects that ended in a RST (or other failure) before they
// were established. The driver's namespace holds only the driver, its
// clients (which connect to the proxy, on loopback) and the proxies, so
// its count is the proxies' connects the backend's kernel refused.
func readAttemptFails() (int64, error) {
	m, err := netns.ReadSNMP()
	if err != nil {
		return 0, err
	}
	v, ok := m["Tcp:AttemptFails"]
	if !ok {
		return 0, fmt.Errorf("no counter Tcp:AttemptFails in /proc/net/snmp")
	}
	return v, nil
}

// restartTable renders the restart rows, which have columns of their own.
func restartTable(rows []*row, rsts string) string {
	return table("| scenario | variant | restarts | requests | OK | 502 | EOF | ECONNRESET | other | refused connects | gap max ms | "+rsts+" | abort on close / data | p99 / max ms | notes |",
		"|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|", rows, func(row *row) string {
			rc := row.Restart
			rst, aborts := row.resetColumns()
			gap := fmt.Sprintf("%.1f", rc.GapMaxMs)
			if rc.GapMaxMs <= 0 && rc.Overlap >= 0 {
				gap = fmt.Sprintf("0 (overlap ≥ %.2f)", rc.Overlap)
			}
			return fmt.Sprintf("| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s | %.0f / %.0f | %s |",
				row.Scenario, row.Variant, rc.Restarts, row.Requests, row.OK, row.Status502, row.EOF, row.Reset, row.Other,
				rc.Refused, gap, rst, aborts, rc.P99Ms, rc.MaxMs, row.notes())
		}) + "\nrestart-*: one backend behind the proxy under 8 keep-alive clients' POSTs, restarted in place; raw: net/http stopped (http.Server.Shutdown) and a new process started on the port; *+tableflip: the backend re-executes itself with tableflip, the socket inherited, and the old process drains (raw: http.Server.Shutdown; linger: Listener.Handoff, then Shutdown; lingerhttp: Server.Handoff). refused connects: the proxy's connects the backend's kernel refused (TcpAttemptFails in the proxy's namespace); gap max ms: the longest time from the old process closing its listener to the new one listening (overlap: the new one was serving that long before the old stopped); drain ms: how long an old process drained.\n"
}
