package main

// The measurements: the idle timeout, requests per connection, the race
// around the idle timeout, and the early response.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// idleConns is how many connections measure the idle timeout at once:
// backends that sweep idle connections on a tick close them at different
// times, and the spread shows it.
const idleConns = 3

// raceBudget bounds the sweep's time: -n shrinks to fit it.
const raceBudget = 10 * time.Minute

// racePing is the swept POSTs' body.
var racePing = []byte("lingerprobe ping")

// prober runs the measurements for one set of options.
type prober struct {
	o        *options
	progress io.Writer
}

// probe measures the backend o names and returns the report.
func probe(ctx context.Context, o *options, progress io.Writer) (*report, error) {
	start := time.Now()
	p := &prober{o: o, progress: progress}
	rep := &report{
		URL:              o.target.String(),
		Balancer:         o.lb,
		BalancerIdleSecs: o.lbIdle.Seconds(),
	}
	p.logf("lingerprobe: waiting up to %v for the backend to close idle connections", o.maxIdle)
	var wg sync.WaitGroup
	var idleErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		rep.Idle, idleErr = p.idle(ctx)
	}()
	if o.maxRequests > 0 {
		rep.MaxRequests = p.requestsPerConn(ctx)
	}
	wg.Wait()
	if idleErr != nil {
		return nil, idleErr
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if o.raceN > 0 && rep.Idle.Closed && !rep.Idle.ConnectionClose {
		rep.Race = p.race(ctx, rep.Idle)
	}
	if o.earlyTries > 0 {
		rep.Early = p.early(ctx)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	rep.Verdict = judge(o, rep)
	rep.DurationSecs = time.Since(start).Seconds()
	return rep, nil
}

func (p *prober) logf(format string, args ...any) {
	fmt.Fprintf(p.progress, format+"\n", args...)
}

// idle measures how long idle keep-alive connections stay open and how they
// end: idleConns connections each send one GET, read the answer, and wait
// up to -max-idle for the backend to end the connection.
func (p *prober) idle(ctx context.Context) (idleReport, error) {
	type one struct {
		a       answer
		rtt     time.Duration
		closed  bool
		after   time.Duration
		end     string
		unasked int
		err     error
	}
	res := make([]one, idleConns)
	var wg sync.WaitGroup
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &res[i]
			c, err := p.dial(ctx)
			if err != nil {
				r.err = fmt.Errorf("lingerprobe: %w", err)
				return
			}
			defer c.Close()
			r.rtt = c.dialed
			r.a, err = c.exchange(p.request(p.path(), nil), "GET", p.o.timeout)
			if err != nil {
				r.err = fmt.Errorf("lingerprobe: first request: %w", err)
				return
			}
			if r.a.close {
				return
			}
			r.closed, r.after, r.end, r.unasked = p.waitClose(ctx, c, p.o.maxIdle)
		}()
	}
	wg.Wait()
	var rep idleReport
	var afters []time.Duration
	for _, r := range res {
		if r.err != nil {
			return rep, r.err
		}
	}
	first := res[0].a
	rep.Status = first.status
	rep.Server = first.server
	rep.PoweredBy = first.poweredBy
	rep.KeepAliveHeader = first.keepAlive
	rep.AdvertisedSecs = keepAliveTimeout(first.keepAlive).Seconds()
	rep.ConnectionClose = first.close
	rep.RTTms = ms(res[0].rtt)
	rep.WaitedSecs = p.o.maxIdle.Seconds()
	if first.close {
		return rep, nil
	}
	for _, r := range res {
		rep.UnaskedBytes += r.unasked
		if !r.closed {
			continue
		}
		afters = append(afters, r.after)
		switch {
		case rep.End == "":
			rep.End = r.end
		case rep.End != r.end:
			rep.End = "mixed " + rep.End + "/" + r.end
		}
	}
	if len(afters) < len(res) {
		// One connection outlived -max-idle: the timeout is longer.
		rep.Closed = false
		rep.End = ""
		return rep, nil
	}
	slices.Sort(afters)
	rep.Closed = true
	rep.TimeoutSecs = afters[len(afters)/2].Seconds()
	rep.MinSecs = afters[0].Seconds()
	rep.MaxSecs = afters[len(afters)-1].Seconds()
	return rep, nil
}

// path is the path of the URL's requests, with its query.
func (p *prober) path() string {
	return p.o.target.RequestURI()
}

// waitClose waits up to max for the backend to end the idle connection c,
// from now, and says whether it did, after how long, how (FIN or RST),
// and how many bytes it sent first (a 408, say).
func (p *prober) waitClose(ctx context.Context, c *conn, max time.Duration) (closed bool, after time.Duration, end string, unasked int) {
	start := time.Now()
	c.SetReadDeadline(start.Add(max))
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 4096)
	var first time.Time
	for {
		n, err := c.br.Read(buf)
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		unasked += n
		if err == nil {
			if unasked > 1<<20 {
				return false, 0, endOther, unasked
			}
			continue
		}
		end = classify(err)
		if end == endTimeout {
			return false, 0, "", unasked
		}
		if first.IsZero() {
			first = time.Now()
		}
		return true, first.Sub(start), end, unasked
	}
}

// requestsPerConn sends up to -max-requests GETs on one connection and
// counts those answered before the backend ends it.
func (p *prober) requestsPerConn(ctx context.Context) *maxReqReport {
	r := &maxReqReport{Bound: p.o.maxRequests}
	c, err := p.dial(ctx)
	if err != nil {
		r.End = classify(err)
		return r
	}
	defer c.Close()
	req := p.request(p.path(), nil)
	for r.Served < p.o.maxRequests && ctx.Err() == nil {
		a, err := c.exchange(req, "GET", p.o.timeout)
		if err != nil {
			r.End = classify(err)
			return r
		}
		r.Served++
		if a.close {
			r.End = "Connection: close"
			r.Limit = r.Served
			return r
		}
	}
	return r
}

// Outcomes of one swept request.
const (
	outAnswered    = iota // the whole answer came
	outRetired            // the whole answer came, with "Connection: close"
	outEOF                // the connection ended without an answer
	outReset              // a reset
	outOther              // our timeout, a failed dial or first request
	outClosedFirst        // the backend had closed already: not sent
	nOutcomes
)

// race sends -n GETs and -n POSTs, each on its own connection idle for the
// measured timeout plus an offset swept across about two -sweep, -conns
// connections at a time.
func (p *prober) race(ctx context.Context, idle idleReport) *raceReport {
	rtt := time.Duration(idle.RTTms * float64(time.Millisecond))
	spread := secs(idle.MaxSecs - idle.MinSecs)
	sweep := max(p.o.sweep, 3*rtt, spread)
	closes := secs(idle.TimeoutSecs)
	// The close is seen half a round trip after the backend made it, and a
	// request reaches the backend half a round trip after it is sent: the
	// requests that meet the close are those sent about a round trip
	// before the close is seen, and on a busy machine a few milliseconds
	// earlier still (the reader's wake-up). Requests sent after the close
	// is seen find it and are not sent. So the sweep runs from 1.5 sweeps
	// before that moment to half a sweep after it.
	from := -rtt - 3*sweep/2
	to := -rtt + sweep/2
	n := p.o.raceN
	// Each round of -conns requests takes one idle period, plus one for
	// the staggered start: keep the whole under raceBudget.
	if fit := (int(raceBudget/max(closes, time.Millisecond)) - 1) * p.o.conns / 2; n > fit {
		n = max(fit, 1)
		p.logf("lingerprobe: %d requests per method, not %d, to stay within %v", n, p.o.raceN, raceBudget)
	}
	rep := &raceReport{IdleCloseSecs: closes.Seconds(), FromMs: ms(from), ToMs: ms(to)}
	methods := []struct {
		name string
		body []byte
	}{{"GET", nil}, {"POST", racePing}}
	type result struct {
		out    int
		offset time.Duration
	}
	results := make([][]result, len(methods))
	for m := range methods {
		results[m] = make([]result, n)
	}
	rounds := (2*n + p.o.conns - 1) / p.o.conns
	p.logf("lingerprobe: sending %d requests on connections idle %.3f s %+.1f to %+.1f ms, %d at a time: about %v",
		2*n, closes.Seconds(), ms(from), ms(to), min(p.o.conns, 2*n), (time.Duration(rounds+1) * closes).Round(time.Second))
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(p.o.conns, 2*n)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Start the workers spread across one idle period, so their
			// requests and the backend's closes do not all come at once:
			// a burst of them delays the client's reads by milliseconds,
			// against the backend's timers, and no balancer sends so.
			t := time.NewTimer(closes * time.Duration(k) / time.Duration(workers))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= 2*n {
					return
				}
				// Alternate methods so both see the same conditions; the
				// j-th of a method goes at from + (to-from)·j/(n-1).
				m, j := i%2, i/2
				off := from
				if n > 1 {
					off += time.Duration(int64(to-from) * int64(j) / int64(n-1))
				}
				results[m][j] = result{p.raceOne(ctx, closes+off, methods[m].body), off}
			}
		}()
	}
	wg.Wait()
	for m, meth := range methods {
		rc := raceCount{Method: meth.name}
		var failed []time.Duration
		for _, r := range results[m] {
			switch r.out {
			case outAnswered:
				rc.Answered++
			case outRetired:
				rc.Answered++
				rc.Retired++
			case outEOF:
				rc.EOF++
				failed = append(failed, r.offset)
			case outReset:
				rc.Reset++
				failed = append(failed, r.offset)
			case outOther:
				rc.Other++
			case outClosedFirst:
				rc.ClosedFirst++
			}
		}
		rc.Sent = n - rc.ClosedFirst
		if len(failed) > 0 {
			slices.Sort(failed)
			rc.FailedFromMs = ms(failed[0])
			rc.FailedToMs = ms(failed[len(failed)-1])
		}
		rep.Methods = append(rep.Methods, rc)
	}
	return rep
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// raceOne opens a connection, sends one GET, waits wait after its answer,
// and then, if the connection still looks open, sends the request (a POST
// of body, or a GET when body is nil) and says how it went.
func (p *prober) raceOne(ctx context.Context, wait time.Duration, body []byte) int {
	c, err := p.dial(ctx)
	if err != nil {
		return outOther
	}
	defer c.Close()
	a, err := c.exchange(p.request(p.path(), nil), "GET", p.o.timeout)
	if err != nil || a.close {
		return outOther
	}
	t := time.NewTimer(wait)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return outOther
	}
	if c.looksClosed() {
		return outClosedFirst
	}
	method := "GET"
	if body != nil {
		method = "POST"
	}
	a, err = c.exchange(p.request(p.path(), body), method, p.o.timeout)
	switch classify(err) {
	case "":
		if a.close {
			return outRetired
		}
		return outAnswered
	case endFIN:
		return outEOF
	case endRST:
		return outReset
	}
	return outOther
}

// early POSTs -early-body bytes to -reject-path, -early-tries times, one
// connection each: the whole body is written before the answer is read, as
// simple clients do.
func (p *prober) early(ctx context.Context) *earlyReport {
	rep := &earlyReport{Path: p.o.rejectPath, BodyBytes: p.o.earlyBody, Tries: p.o.earlyTries}
	statuses := map[int]bool{}
	chunk := make([]byte, 64<<10)
	for range p.o.earlyTries {
		if ctx.Err() != nil {
			break
		}
		out, status, sentWhole := p.earlyOne(ctx, chunk)
		if sentWhole {
			rep.BodySentWhole++
		}
		switch out {
		case "":
			rep.Whole++
			statuses[status] = true
		case endFIN:
			rep.EOF++
		case endRST:
			rep.Reset++
		case endTimeout:
			rep.Timeout++
		default:
			rep.Other++
		}
	}
	for s := range statuses {
		rep.Statuses = append(rep.Statuses, s)
	}
	slices.Sort(rep.Statuses)
	return rep
}

// earlyOne does one early-response POST and says how reading the answer
// ended ("" when it came whole), its status, and whether the whole body was
// written.
func (p *prober) earlyOne(ctx context.Context, chunk []byte) (out string, status int, sentWhole bool) {
	c, err := p.dial(ctx)
	if err != nil {
		return classify(err), 0, false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(p.o.timeout))
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	hdr := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lingerprobe\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		p.o.rejectPath, p.o.target.Host, p.o.earlyBody)
	_, werr := c.Write([]byte(hdr))
	for sent := 0; werr == nil && sent < p.o.earlyBody; {
		var n int
		n, werr = c.Write(chunk[:min(len(chunk), p.o.earlyBody-sent)])
		sent += n
	}
	if werr != nil && errors.Is(werr, context.Canceled) {
		return endOther, 0, false
	}
	// A write that stalled until the deadline leaves the read its own.
	c.SetDeadline(time.Now().Add(p.o.timeout))
	a, rerr := c.read("POST")
	if rerr != nil {
		// A reset reports ECONNRESET once (Linux clears the socket's
		// error as it reports it): if the write took it, the read sees
		// only the end of a truncated answer.
		if classify(werr) == endRST && classify(rerr) != endRST {
			rerr = werr
		}
		return classify(rerr), 0, werr == nil
	}
	return "", a.status, werr == nil
}
