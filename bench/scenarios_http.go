package main

// The net/http scenarios without a proxy: idle-race, early-response and
// overhead.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idleRaceJitter spreads the clients' next request around the server's
// idle deadline.
const idleRaceJitter = 2 * time.Millisecond

// idleRace: keep-alive clients, one connection each, send their next
// request at the server's idle deadline ± jitter. The requests are POSTs
// without GetBody, so the Transport does not retry them and every lost
// request shows.
func (d *driver) idleRace(s *scenario) error {
	return d.idleRaceClients(s, idleRaceLoad{
		scheme: "http",
		dur:    d.sz.idleFor,
		transport: func(dial dialFunc) *http.Transport {
			return &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
		},
		send: func(cl *http.Client, url string, t *tally) {
			req, _ := http.NewRequestWithContext(d.ctx, "POST", url, strings.NewReader("ping"))
			req.GetBody = nil // not replayable: no silent retry
			t.add(doRequest(cl, req), 1)
		},
	})
}

// idleRaceLoad is what differs between the idle races over HTTP/1.1 and
// over TLS: the scheme, how long the clients go on, their transport, how
// one request is sent and tallied, and the tally's counts the row notes.
type idleRaceLoad struct {
	scheme    string
	dur       time.Duration
	transport func(dial dialFunc) *http.Transport
	send      func(cl *http.Client, url string, t *tally)
	notes     []string
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// idleRaceClients runs the idle race's clients against each variant:
// d.sz.idleClients of them, one connection each, each sending its next
// request at the server's idle timeout ± idleRaceJitter.
func (d *driver) idleRaceClients(s *scenario, load idleRaceLoad) error {
	return d.alternate(d.sz.idleRounds, s.backend, func(v variant) error {
		return d.run(s.name, s.backend, v, func(addrs []string) error {
			var t tally
			var dials countingDialer
			url := load.scheme + "://" + addrs[0] + "/"
			deadline := time.Now().Add(load.dur)
			maxPerClient := int(load.dur/idleRaceTimeout) + 1
			parallel(d.ctx, d.sz.idleClients, d.sz.idleClients, func(int) {
				tr := load.transport(dials.DialContext)
				// The client closes first, so the backend's counters
				// see the scenario's closes, not the run's end.
				defer tr.CloseIdleConnections()
				cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
				for i := 0; i < maxPerClient && time.Now().Before(deadline) && d.ctx.Err() == nil; i++ {
					if i > 0 {
						jitter := time.Duration(rand.Int64N(int64(2*idleRaceJitter))) - idleRaceJitter
						sleepCtx(d.ctx, idleRaceTimeout+jitter)
					}
					t.add("requests", 1)
					load.send(cl, url, &t)
				}
			})
			r := d.row(s.name, v.name)
			r.addOutcomes(&t)
			r.Extra["dials"] += float64(dials.n.Load())
			for _, k := range load.notes {
				if n := t.get(k); n > 0 {
					r.Extra[k] += float64(n)
				}
			}
			return nil
		})
	})
}

// doRequest does req and reads the whole answer; it returns outOK for a
// 200, "502" for a 502, else how the exchange failed.
func doRequest(cl *http.Client, req *http.Request) string {
	return doRequestWith(cl, req, readResponse)
}

// doRequestWith does req and reads the whole answer with read, which says
// how it ended; if req fails, classify does.
func doRequestWith(cl *http.Client, req *http.Request, read func(*http.Response) string) string {
	resp, err := cl.Do(req)
	if err != nil {
		return classify(err)
	}
	return read(resp)
}

// readResponse reads the whole answer and says how it ended, as doRequest.
func readResponse(resp *http.Response) string {
	out := readStatus(resp)
	if out == strconv.Itoa(resp.StatusCode) && resp.StatusCode != http.StatusBadGateway {
		return outOther // an answer whose status the rows do not count apart
	}
	return out
}

// readStatus reads the whole answer and says how it ended: outOK for a
// 200, the status code for another answer, else how the read failed.
func readStatus(resp *http.Response) string {
	_, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return classify(err)
	case resp.StatusCode == http.StatusOK:
		return outOK
	}
	return strconv.Itoa(resp.StatusCode)
}

// earlyReplySizes are the 413's body lengths, taken in turn: a small
// error page, which is out on the wire long before the close, and a large
// one, still in the server's send queue when the close comes.
var earlyReplySizes = []int{8 << 10, 256 << 10}

// earlyResponse: the handler answers 413 to an 8–13 MiB upload without
// reading it. The client writes the whole body, then reads the answer, as
// simple clients do. OK: the whole 413 arrived; EOF: the answer was
// truncated; ECONNRESET: a reset came first.
func (d *driver) earlyResponse(s *scenario) error {
	scn := s.name
	zeros := make([]byte, 64<<10)
	return d.alternate(d.sz.earlyRounds, s.backend, func(v variant) error {
		return d.run(scn, s.backend, v, func(addrs []string) error {
			var t tally
			parallel(d.ctx, d.sz.earlyUploads, 4, func(i int) {
				t.add("requests", 1)
				size := 8<<20 + rand.IntN(5<<20)
				reply := earlyReplySizes[i%len(earlyReplySizes)]
				sentWhole, whole, dialErr, rerr := earlyUpload(d.ctx, addrs[0], size, reply, zeros)
				if dialErr != nil {
					t.add(outOther, 1)
					return
				}
				if sentWhole {
					t.add("body sent whole", 1)
				}
				if whole {
					t.add(outOK, 1)
					t.add(fmt.Sprintf("whole %d KiB 413", reply>>10), 1)
					return
				}
				if rerr == errWrongAnswer {
					rerr = io.ErrUnexpectedEOF // counted as a truncated answer
				}
				t.add(classify(rerr), 1)
			})
			r := d.row(scn, v.name)
			r.addOutcomes(&t)
			r.Extra["body sent whole"] += float64(t.get("body sent whole"))
			for _, n := range earlyReplySizes {
				k := fmt.Sprintf("whole %d KiB 413", n>>10)
				r.Extra[k] += float64(t.get(k))
			}
			return nil
		})
	})
}

// earlyUpload writes a size-byte upload whose answer is reply bytes, all
// of it before it reads the answer, and reports whether the body was sent
// whole and the whole 413 arrived, or the dial's error, or the error that
// ended the answer (errWrongAnswer for an answer not the 413 asked for).
func earlyUpload(ctx context.Context, addr string, size, reply int, zeros []byte) (sentWhole, whole bool, dialErr, err error) {
	c, dialErr := dialer.DialContext(ctx, "tcp", addr)
	if dialErr != nil {
		return false, false, dialErr, nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	hdr := fmt.Sprintf("POST /upload?reply=%d HTTP/1.1\r\nHost: backend\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", reply, size)
	_, werr := c.Write([]byte(hdr))
	for sent := 0; werr == nil && sent < size; {
		var n int
		n, werr = c.Write(zeros[:min(len(zeros), size-sent)])
		sent += n
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return werr == nil, false, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && (resp.StatusCode != http.StatusRequestEntityTooLarge || len(body) != reply) {
		err = errWrongAnswer
	}
	return werr == nil, err == nil, nil, err
}

var errWrongAnswer = errors.New("not the 413 asked for")

// overhead: keep-alive hello-world throughput and latency, alternating
// pairs; then the memory of lingering connections and the time Shutdown
// takes for many idle ones.
func (d *driver) overhead(s *scenario) error {
	scn := s.name
	lat := make(map[string][]time.Duration)
	secs := make(map[string]float64)
	err := d.alternate(d.sz.overheadPairs, s.backend, func(v variant) error {
		return d.run(scn, s.backend, v, func(addrs []string) error {
			n, l := d.helloLoad(addrs[0], 16, d.sz.overheadFor)
			r := d.row(scn, v.name)
			r.Requests += n
			r.OK += len(l)
			r.Other += n - len(l)
			lat[v.name] = append(lat[v.name], l...)
			secs[v.name] += d.sz.overheadFor.Seconds()
			return nil
		})
	})
	if err != nil {
		return err
	}
	oh := &overheadResult{Pairs: d.sz.overheadPairs, Seconds: d.sz.overheadFor.Seconds(), Conns: 16, Idle: d.sz.overheadConns, ShutdownMs: make(map[string]float64)}
	for _, v := range s.backend.variantList() {
		l := lat[v.name]
		slices.Sort(l)
		st := latencyStats{RPS: float64(len(l)) / secs[v.name], P50Ms: quantileMs(l, 0.50), P99Ms: quantileMs(l, 0.99)}
		oh.Variants = append(oh.Variants, variantLatency{Variant: v.name, latencyStats: st})
		r := d.row(scn, v.name)
		r.Extra["req/s"] = float64(int(st.RPS))
		r.Extra["p50 ms"] = st.P50Ms
		r.Extra["p99 ms"] = st.P99Ms
	}
	d.res.Overhead = oh

	// Memory per lingering connection: the backend closes every
	// connection at once; ours never answer its FIN until we let go.
	n := d.sz.overheadConns
	err = d.run(memoryBackend.name, memoryBackend, variants[0], func(addrs []string) error {
		conns := d.dialMany(addrs[0], n, nil)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		if len(conns) < n {
			return fmt.Errorf("memory: only %d of %d connections", len(conns), n)
		}
		b, err := d.backend.event("measure", n)
		oh.BytesPerLingering = b
		return err
	})
	delete(d.rows, memoryBackend.name+"/"+variants[0].name)
	if err != nil {
		return err
	}

	// Shutdown of many idle keep-alive connections.
	return d.alternate(1, shutdownIdleBackend, func(v variant) error {
		defer delete(d.rows, shutdownIdleBackend.name+"/"+v.name)
		return d.run(shutdownIdleBackend.name, shutdownIdleBackend, v, func(addrs []string) error {
			var wg sync.WaitGroup
			conns := d.dialMany(addrs[0], n, func(c net.Conn) bool {
				c.SetDeadline(time.Now().Add(60 * time.Second))
				if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: backend\r\n\r\n")); err != nil {
					return false
				}
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return false
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				// Close when the server does, as clients do.
				wg.Add(1)
				go func() {
					defer wg.Done()
					io.Copy(io.Discard, br)
					c.Close()
				}()
				return true
			})
			defer func() {
				for _, c := range conns {
					c.Close()
				}
				wg.Wait()
			}()
			if len(conns) < n {
				return fmt.Errorf("shutdown-idle: only %d of %d connections", len(conns), n)
			}
			ms, err := d.backend.event("shutdown", 0)
			oh.ShutdownMs[v.name] = ms
			return err
		})
	})
}

// helloLoad runs conns keep-alive clients against addr for dur and
// returns how many requests were made and the latencies of those that
// succeeded.
func (d *driver) helloLoad(addr string, conns int, dur time.Duration) (int, []time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := "http://" + addr + "/"
	deadline := time.Now().Add(dur)
	var mu sync.Mutex
	var all []time.Duration
	total := 0
	parallel(d.ctx, conns, conns, func(int) {
		var lat []time.Duration
		n := 0
		for ; n < 1_000_000 && time.Now().Before(deadline) && d.ctx.Err() == nil; n++ {
			req, _ := http.NewRequestWithContext(d.ctx, "GET", url, nil)
			t0 := time.Now()
			if doRequest(cl, req) == outOK {
				lat = append(lat, time.Since(t0))
			}
		}
		mu.Lock()
		all = append(all, lat...)
		total += n
		mu.Unlock()
	})
	return total, all
}

// dialMany opens n connections to addr, 64 at a time, calls setup (if
// not nil) on each, and returns those that opened and set up.
func (d *driver) dialMany(addr string, n int, setup func(net.Conn) bool) []net.Conn {
	var mu sync.Mutex
	var conns []net.Conn
	parallel(d.ctx, n, 64, func(int) {
		c, err := dialer.DialContext(d.ctx, "tcp", addr)
		if err != nil {
			return
		}
		if setup != nil && !setup(c) {
			c.Close()
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	})
	return conns
}

func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}
