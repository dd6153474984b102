package main

// apache-deploy: the rolling deploy of one of two backends behind Apache
// httpd, in the form issue 16 reports. Nobody tells Apache: no reload, no
// health check. It keeps its upstream connections in pools per child
// process, and finds out that a member is gone when it connects to it and
// is refused (then it fails over to the other member and keeps it out for
// retry=60 s).

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/netns"
)

const (
	deployClients = 16 // steady keep-alive POST clients
	// deployShutdownTimeout is the deployed server's Shutdown context, as
	// an orchestrator's grace period bounds it.
	deployShutdownTimeout = 10 * time.Second
)

// deployRun is what one deploy saw.
type deployRun struct {
	failed   int // requests that did not get a 200
	failures []deployFailure
	shutdown *shutdownReport
	counters *netns.Counters // the backend namespace's, over the run
	rescued  int64
	// downMs: when the proxy's health check marked the deployed server
	// down, in ms from the stop (nil: no health check, or never).
	downMs *float64
}

// deployFailure is one failed request: when it was sent, in ms from the
// moment the backend was told to stop (negative: before), and how it
// failed.
type deployFailure struct {
	SentMs float64 `json:"sentMs"`
	How    string  `json:"how"`
}

// deployResult is one deploy in latest.json.
type deployResult struct {
	Failed      int             `json:"failed"`
	Failures    []deployFailure `json:"failures,omitempty"`
	CloseAborts *int64          `json:"closeAborts,omitempty"` // TCPAbortOnClose + TCPAbortOnData; nil: not counted
	RSTs        *int64          `json:"backendRsts,omitempty"` // TcpOutRsts
	Rescued     int64           `json:"rescued"`
	ShutdownMs  float64         `json:"shutdownMs"`
	DeadlineHit bool            `json:"deadlineHit,omitempty"`
	DownMs      *float64        `json:"markedDownMs,omitempty"` // haproxy-deploy: when the health check marked it down
}

// apacheDeploy: 16 clients POST steadily through Apache to two backends;
// after deployWarm the first backend is told to stop (raw and linger:
// http.Server.Shutdown at once, then linger's Shutdown; lingerhttp: its
// Shutdown, serving on for DrainDelay 1 s; raw+prestop: a 1 s sleep, then
// http.Server.Shutdown), its Shutdown bounded by 10 s; the load goes on
// until deployAfter past Shutdown's return. The POSTs are not replayable,
// so Go's transport resends none and every lost request shows; each
// failure is kept with the time it was sent, relative to the stop, which
// tells the drain's phases apart (lingerhttp closes its listener at
// +1000 ms). Each variant is deployed d.sz.deploys times (-deploys),
// alternating. haproxy-deploy runs it too, behind HAProxy with health
// checks on /ready (scenarios_haproxy_deploy.go).
func (d *driver) apacheDeploy(s *scenario) error {
	scn := s.name
	sz := d.sizesOf(s)
	runs := make(map[string][]deployRun)
	err := d.alternate(sz.deploys, s.backend, func(v variant) error {
		var dr deployRun
		var t tally
		var kinds map[string]int
		stop, err := d.runReq(scn, s.backend, request{}, v, func(addrs []string) error {
			p, err := startProxyConfig(s.proxy, filepath.Join(d.tmp, scn+"-"+v.name), proxyConfig{Upstreams: addrs, Check: s.check})
			if err != nil {
				return err
			}
			defer func() {
				p.stop()
				kinds = p.errorKinds()
			}()
			tr := &http.Transport{MaxIdleConnsPerHost: deployClients, DisableCompression: true}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 15 * time.Second}

			done := make(chan struct{})
			var watched sync.WaitGroup // the health check's verdict, if it has one
			defer watched.Wait()       // before the proxy stops
			var evErr error
			var mu sync.Mutex
			deployAt := time.Now().Add(sz.deployWarm) // set exactly when told
			go func() {
				defer close(done)
				sleepCtx(d.ctx, sz.deployWarm)
				if d.ctx.Err() != nil {
					return
				}
				mu.Lock()
				deployAt = time.Now()
				mu.Unlock()
				if s.check != nil {
					// Down within inter × (fall + 1) or so; bounded well past it.
					watched.Add(1)
					go func(at time.Time) {
						defer watched.Done()
						if ms := p.watchDown(d.ctx, "s0", at, 5*time.Second); ms >= 0 {
							dr.downMs = &ms
						}
					}(deployAt)
				}
				resp, err := d.backend.call(request{Op: "event", Event: "shutdown", TimeoutMs: int(deployShutdownTimeout / time.Millisecond)})
				dr.shutdown, evErr = resp.Shutdown, err
				sleepCtx(d.ctx, sz.deployAfter)
			}()
			// Bounded in time even if the backend never answered.
			hard := time.Now().Add(sz.deployWarm + deployDrainDelay + deployShutdownTimeout + sz.deployAfter + 5*time.Second)
			think := d.o.deployThink
			parallel(d.ctx, deployClients, deployClients, func(int) {
				for n := 0; n < 1_000_000 && time.Now().Before(hard) && d.ctx.Err() == nil; n++ {
					select {
					case <-done:
						return
					default:
					}
					if think > 0 && n > 0 {
						sleepCtx(d.ctx, time.Duration(rand.Int64N(int64(think))))
					}
					t.add("requests", 1)
					sent := time.Now()
					out := doRequestWith(cl, proxyRequest(d.ctx, "POST", p.addr), readStatus)
					t.add(out, 1)
					if out != outOK {
						mu.Lock()
						dr.failures = append(dr.failures, deployFailure{SentMs: float64(sent.Sub(deployAt).Microseconds()) / 1000, How: out})
						mu.Unlock()
					}
				}
			})
			<-done
			if evErr != nil {
				return fmt.Errorf("shutdown event: %w", evErr)
			}
			if dr.shutdown == nil && d.ctx.Err() == nil {
				return fmt.Errorf("shutdown event: no report")
			}
			return nil
		})
		if stop.Counters != nil {
			c := *stop.Counters
			dr.counters = &c
		}
		if stop.Stats != nil {
			dr.rescued = stop.Stats.Outcomes[linger.Rescued]
		}
		if d.ctx.Err() != nil {
			return err
		}
		r := d.row(scn, v.name)
		r.addOutcomes(&t)
		dr.failed = t.get("requests") - t.get(outOK)
		for code := 100; code < 600; code++ {
			if n := t.get(strconv.Itoa(code)); n > 0 && code != 502 {
				r.Other += n
				r.Extra[strconv.Itoa(code)] += float64(n)
			}
		}
		for kind, n := range kinds {
			r.Extra[kind] += float64(n)
		}
		runs[v.name] = append(runs[v.name], dr)
		d.logf("%s %s deploy %d: %d requests, %d failed (eof %d, 502 %d, 503 %d, reset %d)%s, %s, counters %+v, rescued %d",
			scn, v.name, len(runs[v.name]), t.get("requests"), dr.failed, t.get(outEOF), t.get("502"), t.get("503"), t.get(outReset),
			failureTimes(dr.failures, 20), dr.shutdown.describe(), dr.counters, dr.rescued)
		if s := dr.shutdown; s != nil && s.DeadlineHit {
			line := fmt.Sprintf("deploy %d: Shutdown ran into its %.0f s deadline (%s)", len(runs[v.name]), deployShutdownTimeout.Seconds(), s.Err)
			if s.AtDeadline != nil {
				line += "; " + s.AtDeadline.String()
			}
			r.Deadlines = append(r.Deadlines, line)
			fmt.Fprintf(os.Stderr, "lingerbench: %s/%s %s\n", scn, v.name, line)
		}
		return err
	})
	for name, rs := range runs {
		summarizeDeploys(d.row(scn, name), rs)
	}
	return err
}

func (s *shutdownReport) describe() string {
	if s == nil {
		return "no Shutdown report"
	}
	str := fmt.Sprintf("Shutdown %.2f s", s.Ms/1000)
	if s.DeadlineHit {
		str += " (deadline hit)"
	}
	if st := s.Stats; st != nil {
		str += fmt.Sprintf(" (its listener: accepted %d, clean %d, pending %d, crossed %d, timeout %d, aborted %d, rescued %d)",
			st.Accepted, st.Outcomes[linger.Clean], st.Outcomes[linger.Pending], st.Outcomes[linger.Crossed], st.Outcomes[linger.Timeout], st.Outcomes[linger.Aborted], st.Outcomes[linger.Rescued])
	}
	return str
}

// failureTimes says when the first max failures were sent, in ms from
// the moment the backend was told to stop, and how they failed.
func failureTimes(fs []deployFailure, max int) string {
	if len(fs) == 0 {
		return ""
	}
	fs = slices.Clone(fs)
	slices.SortFunc(fs, func(a, b deployFailure) int { return cmp.Compare(a.SentMs, b.SentMs) })
	var parts []string
	for _, f := range fs[:min(len(fs), max)] {
		parts = append(parts, fmt.Sprintf("%+.0f %s", f.SentMs, f.How))
	}
	if len(fs) > max {
		parts = append(parts, "...")
	}
	return " sent at ms " + strings.Join(parts, ", ")
}

// summarizeDeploys writes the per-deploy numbers into the row: the note
// lists each deploy's lost requests, close-abort RSTs and Shutdown time,
// so a rate shows and not only a sum.
func summarizeDeploys(r *row, rs []deployRun) {
	var lost, aborts, secs, downs []string
	losing, hits := 0, 0
	for _, dr := range rs {
		res := deployResult{Failed: dr.failed, Failures: dr.failures, Rescued: dr.rescued}
		lost = append(lost, strconv.Itoa(dr.failed))
		if dr.failed > 0 {
			losing++
		}
		if c := dr.counters; c != nil {
			n, rsts := c.AbortOnClose+c.AbortOnData, c.OutRsts
			res.CloseAborts, res.RSTs = &n, &rsts
			aborts = append(aborts, strconv.FormatInt(n, 10))
		}
		if s := dr.shutdown; s != nil {
			res.ShutdownMs, res.DeadlineHit = s.Ms, s.DeadlineHit
			secs = append(secs, strconv.FormatFloat(s.Ms/1000, 'f', 1, 64))
			if s.DeadlineHit {
				hits++
			}
		}
		if dr.downMs != nil {
			res.DownMs = dr.downMs
			downs = append(downs, fmt.Sprintf("%+.0f", *dr.downMs))
		}
		r.Deploys = append(r.Deploys, res)
	}
	note := fmt.Sprintf("%d deploys, %d lost requests: failed per deploy %s", len(rs), losing, strings.Join(lost, ","))
	if len(rs) == 1 {
		note = "1 deploy"
	}
	var all []deployFailure
	for _, dr := range rs {
		all = append(all, dr.failures...)
	}
	if len(all) > 0 {
		note += ";" + failureTimes(all, 12) + " from the moment the backend was told to stop"
	}
	if len(aborts) > 0 {
		note += "; close-abort RSTs per deploy " + strings.Join(aborts, ",")
	}
	if len(downs) > 0 {
		note += "; marked down by the health check at ms " + strings.Join(downs, ",")
	}
	if len(secs) > 0 {
		note += fmt.Sprintf("; Shutdown s %s (%d hit the %.0f s deadline)", strings.Join(secs, ","), hits, deployShutdownTimeout.Seconds())
	}
	r.Note = note
}
