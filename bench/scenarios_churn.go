package main

// churn: a connection per request, the traffic of health checks (ALB,
// nginx, HAProxy and Kubernetes probes open one connection per check),
// HTTP/1.0 clients and "Connection: close": every request pays a close,
// so here a lingering close's cost shows, where keep-alive hides it.
//
// The clients are the bench's own, not ApacheBench: each opens a
// connection, sends an HTTP/1.0 request without keep-alive (as ab without
// -k does), reads the answer to the server's FIN and closes. ab reports
// its percentiles in whole milliseconds, too coarse for a p99 that moves
// by fractions of one; and this client does nothing a request does not
// need (no http.Transport), so it takes as little as ab of the two CPUs
// it shares with the backend.
//
// The backend's CPU is its getrusage (utime + stime, every thread of the
// process, in microseconds), read before and after each run's load.

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

var churnBackend = &backend{name: "churn", variants: []string{"raw", "linger", "lingerhttp", "linger.Listen", "lingerhttp.Run"}, server: helloServer}

// churnSizes are churn's counts: requests per run, clients, rounds (each
// runs every variant once, the order reversed every other round).
func churnSizes(quick bool) (requests, conns, rounds int) {
	if quick {
		return 3000, 16, 3
	}
	return 30000, 16, 3
}

// churnRequest is an HTTP/1.0 request: the server closes after answering.
var churnRequest = []byte("GET / HTTP/1.0\r\nHost: backend\r\n\r\n")

// churnRun is what one run of one variant measured.
type churnRun struct {
	rps, p50, p99 float64 // requests per second; ms
	cpuPerReq     float64 // the backend's µs of CPU per request
}

func (d *driver) churn(s *scenario) error {
	n, conns, rounds := churnSizes(d.o.quick)
	if d.o.churnRounds > 0 {
		rounds = d.o.churnRounds
	}
	runs := make(map[string][]churnRun)
	err := d.alternate(rounds, s.backend, func(v variant) error {
		return d.run(s.name, s.backend, v, func(addrs []string) error {
			var t tally
			cpu0, err := d.backend.event("cpu", 0)
			if err != nil {
				return err
			}
			t0 := time.Now()
			lat := d.churnLoad(addrs[0], n, conns, &t)
			secs := time.Since(t0).Seconds()
			cpu1, err := d.backend.event("cpu", 0)
			if err != nil {
				return err
			}
			d.row(s.name, v.name).addOutcomes(&t)
			slices.Sort(lat)
			runs[v.name] = append(runs[v.name], churnRun{
				rps: float64(len(lat)) / secs, p50: quantileMs(lat, 0.50), p99: quantileMs(lat, 0.99),
				cpuPerReq: (cpu1 - cpu0) / float64(max(t.get("requests"), 1)),
			})
			return nil
		})
	})
	if err != nil {
		return err
	}
	base := churnMedians(runs["raw"])
	for _, v := range s.backend.variantList() {
		r := d.row(s.name, v.name)
		m := churnMedians(runs[v.name])
		// Medians over the runs.
		r.Extra["req/s"] = float64(int(m.rps))
		r.Extra["p50 ms"] = m.p50
		r.Extra["p99 ms"] = m.p99
		r.Extra["CPU µs/req"] = m.cpuPerReq
		r.Note = churnNote(runs[v.name], runs["raw"], m, base, v.name == "raw")
	}
	return nil
}

// churnLoad makes n requests, a connection each, from conns clients, and
// returns the latencies (connect to the server's FIN) of those answered
// 200 in whole.
func (d *driver) churnLoad(addr string, n, conns int, t *tally) []time.Duration {
	var mu sync.Mutex
	all := make([]time.Duration, 0, n)
	parallel(d.ctx, n, conns, func(int) {
		t.add("requests", 1)
		t0 := time.Now()
		out := churnOne(d, addr)
		t.add(out, 1)
		if out == outOK {
			l := time.Since(t0)
			mu.Lock()
			all = append(all, l)
			mu.Unlock()
		}
	})
	return all
}

var churnBufs = sync.Pool{New: func() any { b := make([]byte, 512); return &b }}

// churnOne makes one request on a connection of its own and says how it
// ended.
func churnOne(d *driver, addr string) string {
	c, err := dialer.DialContext(d.ctx, "tcp", addr)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(churnRequest); err != nil {
		return classify(err)
	}
	bp := churnBufs.Get().(*[]byte)
	defer churnBufs.Put(bp)
	buf := (*bp)[:0]
	for len(buf) < cap(buf) {
		m, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return classify(err)
		}
	}
	if bytes.HasPrefix(buf, []byte("HTTP/1.0 200 ")) || bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
		if bytes.HasSuffix(buf, []byte("hello, world\n")) {
			return outOK
		}
	}
	return outEOF
}

// churnMedians is the median of each measure over runs.
func churnMedians(runs []churnRun) churnRun {
	pick := func(f func(churnRun) float64) float64 {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	return churnRun{
		rps:       pick(func(r churnRun) float64 { return r.rps }),
		p50:       pick(func(r churnRun) float64 { return r.p50 }),
		p99:       pick(func(r churnRun) float64 { return r.p99 }),
		cpuPerReq: pick(func(r churnRun) float64 { return r.cpuPerReq }),
	}
}

// churnNote says the spread of each measure over the runs (the lowest
// and highest run) and, but for raw, the ratios of the medians to raw's,
// and the median and spread of the ratio of CPU per request to raw's
// within each round (rawRuns[i] ran in runs[i]'s round, a few seconds
// apart, so the machine's slower drifts cancel out).
func churnNote(runs, rawRuns []churnRun, m, base churnRun, isRaw bool) string {
	span := func(f func(churnRun) float64, format string) string {
		lo, hi := f(runs[0]), f(runs[0])
		for _, r := range runs[1:] {
			lo, hi = min(lo, f(r)), max(hi, f(r))
		}
		return fmt.Sprintf(format+"–"+format, lo, hi)
	}
	s := fmt.Sprintf("%d runs, min–max: req/s %s, p50 %s ms, p99 %s ms, CPU %s µs/req", len(runs),
		span(func(r churnRun) float64 { return r.rps }, "%.0f"),
		span(func(r churnRun) float64 { return r.p50 }, "%.2f"),
		span(func(r churnRun) float64 { return r.p99 }, "%.2f"),
		span(func(r churnRun) float64 { return r.cpuPerReq }, "%.1f"))
	if !isRaw {
		s += fmt.Sprintf("; medians to raw's: req/s ×%.3f, CPU/req ×%.3f, p99 %+.2f ms", ratio(m.rps, base.rps), ratio(m.cpuPerReq, base.cpuPerReq), m.p99-base.p99)
		var rs []float64
		for i := range min(len(runs), len(rawRuns)) {
			rs = append(rs, ratio(runs[i].cpuPerReq, rawRuns[i].cpuPerReq))
		}
		if len(rs) > 0 {
			s += fmt.Sprintf("; CPU/req to raw's in the same round: median ×%.3f (×%.3f–×%.3f)", median(rs), slices.Min(rs), slices.Max(rs))
		}
	}
	return s
}
