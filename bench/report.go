package main

// The results: the markdown table, latest.json and the sweep's
// SVG (hand-written, no dependencies).

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/netns"
)

// row is what one scenario × variant saw over all its runs. OK, 502, EOF,
// ECONNRESET and other are the clients' outcomes; what OK means is the
// scenario's (see the legend under the table).
type row struct {
	Scenario  string             `json:"scenario"`
	Variant   string             `json:"variant"`
	Runs      int                `json:"runs"`
	Requests  int                `json:"requests"`
	OK        int                `json:"ok"`
	Status502 int                `json:"status502"`
	EOF       int                `json:"eof"`
	Reset     int                `json:"econnreset"`
	Other     int                `json:"other"`
	Counters  *netns.Counters    `json:"backendCounters,omitempty"` // nil: not counted (not root)
	Stats     *linger.Stats      `json:"lingerStats,omitempty"`     // nil: the listener does not count
	Extra     map[string]float64 `json:"extra,omitempty"`
	Smuggle   *smuggleCounts     `json:"smuggle,omitempty"`   // the smuggle rows' own columns
	Scrape    *deployScrape      `json:"scrape,omitempty"`    // the shutdown rows' deploy scrape
	Restart   *restartCounts     `json:"restart,omitempty"`   // the restart rows' own columns
	Slowloris *slowlorisCounts   `json:"slowloris,omitempty"` // the slowloris rows' own columns
	Soak      *soakResult        `json:"soak,omitempty"`      // the soak row's own columns
	Note      string             `json:"note,omitempty"`      // heads the notes
	Errors    []string           `json:"errors,omitempty"`    // a few distinct failures (grpc)
	Deploys   []deployResult     `json:"deploys,omitempty"`   // apache-deploy: each deploy
	// Deadlines: the deploys whose Shutdown ran into its deadline, and
	// what was still open just before (apache-deploy).
	Deadlines []string `json:"shutdownDeadlines,omitempty"`
}

// resetColumns are the backend's RSTs and its close aborts (on close /
// on data) as the tables show them: "n/a" where they were not counted.
func (row *row) resetColumns() (rsts, aborts string) {
	c := row.Counters
	if c == nil {
		return "n/a", "n/a"
	}
	return strconv.FormatInt(c.OutRsts, 10), fmt.Sprintf("%d / %d", c.AbortOnClose, c.AbortOnData)
}

// addOutcomes adds a tally's requests and how they ended to the row.
func (row *row) addOutcomes(t *tally) {
	row.Requests += t.get("requests")
	row.OK += t.get(outOK)
	row.Status502 += t.get("502")
	row.EOF += t.get(outEOF)
	row.Reset += t.get(outReset)
	row.Other += t.get(outOther)
}

type sweepPoint struct {
	Variant  string  `json:"variant"`
	OffsetMs float64 `json:"offsetMs"`
	Tries    int     `json:"tries"`
	Served   int     `json:"served"`
	EOF      int     `json:"eof"`
	Reset    int     `json:"reset"`
	Other    int     `json:"other"`
	RSTs     *int64  `json:"backendRsts,omitempty"` // TcpOutRsts during this offset's tries
}

type latencyStats struct {
	RPS   float64 `json:"requestsPerSecond"`
	P50Ms float64 `json:"p50Ms"`
	P99Ms float64 `json:"p99Ms"`
}

type variantLatency struct {
	Variant string `json:"variant"`
	latencyStats
}

type overheadResult struct {
	Pairs             int                `json:"pairs"`
	Seconds           float64            `json:"secondsPerRun"`
	Conns             int                `json:"conns"`
	Variants          []variantLatency   `json:"variants"`
	Idle              int                `json:"idleConns"` // connections for the memory and Shutdown measures
	BytesPerLingering float64            `json:"bytesPerLingeringConn"`
	ShutdownMs        map[string]float64 `json:"shutdownIdleMs"`
}

type results struct {
	Date        string          `json:"date"`
	Mode        string          `json:"mode"`
	Kernel      string          `json:"kernel"`
	NProc       int             `json:"nproc"`
	Go          string          `json:"go"`
	Nginx       string          `json:"nginx,omitempty"`
	HAProxy     string          `json:"haproxy,omitempty"`
	Apache      string          `json:"apache,omitempty"`
	Node        string          `json:"node,omitempty"` // node-keepalive's Node.js
	RSTSource   string          `json:"rstSource"`
	WallSeconds float64         `json:"wallSeconds"`
	Skipped     []string        `json:"skipped,omitempty"`
	Failed      []string        `json:"failed,omitempty"`
	Rows        []*row          `json:"rows"`
	Sweep       []*sweepPoint   `json:"sweep,omitempty"`
	Overhead    *overheadResult `json:"overhead,omitempty"`
}

func newResults(o options, counted bool) *results {
	r := &results{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Mode:    "default",
		Kernel:  commandLine("uname", "-r"),
		NProc:   runtime.NumCPU(),
		Go:      runtime.Version(),
		Nginx:   proxyVersion("nginx"),
		HAProxy: proxyVersion("haproxy"),
		Apache:  proxyVersion("apache2"),
	}
	if o.quick {
		r.Mode = "quick"
	}
	if counted {
		r.RSTSource = "kernel counters of the backend's network namespace"
	} else {
		r.RSTSource = "none: not root, so only the clients' ECONNRESET counts"
	}
	return r
}

func commandLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).Output()
	return strings.TrimSpace(string(out))
}

func (r *results) sweepPoint(variant string, offset time.Duration) *sweepPoint {
	ms := float64(offset) / float64(time.Millisecond)
	for _, p := range r.Sweep {
		if p.Variant == variant && p.OffsetMs == ms {
			return p
		}
	}
	p := &sweepPoint{Variant: variant, OffsetMs: ms}
	r.Sweep = append(r.Sweep, p)
	return p
}

// markdown renders the table and the overhead summary.
func (r *results) markdown() string {
	var b strings.Builder
	rsts := "backend RSTs"
	if r.RSTSource != "" && !strings.HasPrefix(r.RSTSource, "kernel") {
		rsts = "backend RSTs (not counted: not root)"
	}
	var mainRows, smuggleRows, restartRows, slowlorisRows, soakRows []*row
	for _, row := range r.Rows {
		switch {
		case row.Soak != nil:
			soakRows = append(soakRows, row)
		case row.Smuggle != nil:
			smuggleRows = append(smuggleRows, row)
		case row.Slowloris != nil:
			slowlorisRows = append(slowlorisRows, row)
		case row.Restart != nil:
			restartRows = append(restartRows, row)
		default:
			mainRows = append(mainRows, row)
		}
	}
	if len(mainRows) > 0 || len(smuggleRows)+len(restartRows)+len(slowlorisRows)+len(soakRows) == 0 {
		b.WriteString(mainTable(mainRows, rsts))
	}
	if len(smuggleRows) > 0 {
		b.WriteString(smuggleTable(smuggleRows, rsts))
	}
	if len(slowlorisRows) > 0 {
		b.WriteString(slowlorisTable(slowlorisRows, rsts))
	}
	for _, row := range r.Rows {
		for _, line := range row.Deadlines {
			fmt.Fprintf(&b, "\n%s/%s %s\n", row.Scenario, row.Variant, line)
		}
	}
	if len(restartRows) > 0 {
		b.WriteString(restartTable(restartRows, rsts))
	}
	if len(soakRows) > 0 {
		b.WriteString(soakTable(soakRows, rsts))
	}
	if oh := r.Overhead; oh != nil && len(oh.Variants) > 0 {
		base := oh.Variants[0]
		fmt.Fprintf(&b, "\noverhead: %d keep-alive connections, %d alternating pairs of %.1f s; ratios to %s:",
			oh.Conns, oh.Pairs, oh.Seconds, base.Variant)
		for _, v := range oh.Variants[1:] {
			fmt.Fprintf(&b, " %s throughput ×%.3f, p50 ×%.3f, p99 ×%.3f;", v.Variant,
				ratio(v.RPS, base.RPS), ratio(v.P50Ms, base.P50Ms), ratio(v.P99Ms, base.P99Ms))
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, "memory: %.0f bytes per lingering connection (Go heap + stacks, %d lingering at once)\n", oh.BytesPerLingering, oh.Idle)
		fmt.Fprintf(&b, "Shutdown of %d idle keep-alive connections:", oh.Idle)
		for _, v := range variants {
			if ms, ok := oh.ShutdownMs[v.name]; ok {
				fmt.Fprintf(&b, " %s %.0f ms;", v.name, ms)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n" + legend)
	fmt.Fprintf(&b, "RSTs: %s. Mode %s, %.0f s, %s, %d CPUs, %s; %s; %s; %s",
		r.RSTSource, r.Mode, r.WallSeconds, r.Kernel, r.NProc, r.Go, orNone(r.Nginx, "no nginx"), orNone(r.HAProxy, "no HAProxy"), orNone(r.Apache, "no Apache"))
	if r.Node != "" {
		fmt.Fprintf(&b, "; Node.js %s", r.Node)
	}
	b.WriteString(".\n")
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "Skipped %s.\n", s)
	}
	for _, s := range r.Failed {
		fmt.Fprintf(&b, "FAILED %s.\n", s)
	}
	return b.String()
}

const legend = `OK is: unread-close, the whole answer read; idle-race, tls-idle-race, nginx-idle, haproxy-idle, apache-idle, nginx-tls-idle, shutdown, apache-deploy, haproxy-deploy, overhead, a 200; sweep, served; early-response, the whole 413 read; grpc-*, an RPC that succeeded.
EOF / ECONNRESET: how failed requests ended (unread-close: how every connection ended). rescued: requests the listener handed back instead of closing (Stats.Outcomes[linger.Rescued]).
tls-idle-race: idle-race with the backend terminating TLS (raw: http.Server.ServeTLS; lingerhttp: its ServeTLS) and Go's HTTP/2 client; the POSTs are replayable, as for browsers and proxies, and client retries counts those Go's client resent after a GOAWAY refused them. nginx-tls-idle (opt-in, -only): nginx-idle with proxy_pass https:// to a backend serving TLS (nginx speaks HTTP/1.1 to it).
grpc-*: grpc-go clients and server (bench/internal/grpcload), the server closing by MaxConnectionIdle (idle), MaxConnectionAge (age), GracefulStop in a hot restart (gracefulstop), MaxConnectionAge with a grace shorter than the streams (agegrace). requests: RPCs; ECONNRESET: RPCs failed with "connection reset by peer"; other: the rest of the failed; the notes give failures by status code. The clients run in the driver's namespace, as every scenario's clients do, so these rows' RSTs and aborts are the server's.
shutdown: a rolling deploy. At the same moment nginx is reloaded with the backend marked down and the backend is told to stop, as Kubernetes does; raw and linger call http.Server.Shutdown at once, lingerhttp's Shutdown serves on for DrainDelay (1 s) first, and raw+prestop (raw listener) sleeps as long before http.Server.Shutdown, as a Kubernetes preStop hook does. client-leg retries: POSTs that Go's transport resent (Idempotency-Key) after nginx's reload closed their client connection, not the backend's doing. The linger variants' deployed backend is exported by lingerprom through a Prometheus registry, scraped before and after the deploy; its scraped linger_closes_total must equal that listener's Stats (-check fails otherwise).
loss3-idle-race, loss3-deploy (only with -only faults): idle-race, and shutdown behind nginx (raw and lingerhttp), with the backend's namespace dropping 3 % of the packets it sends and 3 % of those it receives (nftables numgen); OK is a 200. nginx is set for a lossy link (max_fails=5 fail_timeout=10s instead of max_fails=1 fail_timeout=30s), so a lost packet does not mark an upstream down. Shutdown ms max: the slowest deploy's. -check: lingerhttp fails no request and sends no close-abort RST (TCPAbortOnClose, TCPAbortOnData), and its Shutdown returns within DrainDelay + LingerTimeout + 2 s (5 s). Over the lossy link the backend's kernel also answers segments that arrive for a connection or listener already gone with a RST (a SYN sent before the deploy, lost, and resent after the listener closed is refused, and nginx fails over), so TcpOutRsts is not held to 0 there.
apache-idle: nginx-idle's bursts through Apache httpd 2.4 (event MPM, mod_proxy_balancer, one member with keepalive=On ttl=60: pooled upstream connections kept 60 s). apache-deploy (only with -only apache-deploy; -deploys N per variant): the rolling deploy of one of two members behind Apache, which nobody tells (no reload, no health check): 16 clients POST steadily (not replayable, so every loss shows; -deploy-think paces them), the backend is told to stop with a 10 s Shutdown context, the load goes on until just after Shutdown returned; the note gives each deploy's failed requests, when they were sent, close-abort RSTs (abort on close + data) and Shutdown time; other statuses (503) are counted under other and named in the notes. Apache answers a request lost on a reused upstream connection by closing the client's connection without an answer (EOF) if the client's connection had served a request before, else with 502.
haproxy-deploy: the README's HAProxy recipe at 1/10 of its timings: apache-deploy's rolling deploy (-quick counts in every mode) behind HAProxy 2.6, which nobody tells: it health-checks both servers (option httpchk GET /ready, check inter 200ms fall 3 rise 2) and learns of the deploy only from that. raw: /ready a static 200, http.Server.Shutdown at once, so the checks fail only once their connects are refused; lingerhttp: /ready its ReadyHandler (503 from the moment Shutdown begins), DrainDelay 800 ms, above inter × fall (600 ms), as the recipe's 8 s is above 2 s × 3; lingerhttp-no-delay: the same with DrainDelay 0. HAProxy retries a refused connect on the same server (retries, default 3), then answers 503 (SC--). marked down: when HAProxy's log said the server was DOWN, from the stop (polled every 10 ms). -check: lingerhttp fails no request and sends no close-abort RST (the checks' refused connects after the listener closed are RSTs, as in apache-deploy).
smuggle-*: an attack through nginx, which answers /admin with 403 itself: a POST whose body, as nginx forwards it, is a request with a method of 6000 X, then a DELETE of /admin/users; the backend answers the POST 401 without reading the body. Three shapes take turns: long (a padding request after the DELETE takes the body past 256 KiB, net/http's post-handler discard limit), short (6 KiB), chunked (short, sent chunked; nginx forwards it with a Content-Length). http1.0: nginx's default upstream (HTTP/1.0, Connection: close); keepalive: HTTP/1.1 with an upstream keep-alive pool. reached backend: attacks the backend's handler answered; backend /admin runs: DELETEs that got past nginx (-check fails on any); admin answers seen: the /admin handler's answers that reached the attacker; direct /admin: requests for /admin sent to nginx, and how many it answered 403.
slowloris-deploy: issue 21's peers during a deploy. Peers (200; -quick 50) each get one response on a keep-alive connection and send 1–3 bytes of their next request ("G", "GE", "GET"), half as many more send half a request line on a new connection, and 8 normal clients POST on; then the backend (IdleTimeout 1 s, ReadHeaderTimeout 0; -rht: 1 s) is deployed away at once: raw, http.Server.Shutdown; lingerhttp, its Shutdown (DrainDelay 1 s, DrainIdle 5 s); each with a 20 s context. The peers read, and close when they see the server's FIN; -deaf: they never read nor close, so each lingering close waits for its LingerTimeout (2 s). conn fds: the descriptors the backend held for the deployed server's connections (/proc/self/fd matched with /proc/net/tcp), when Shutdown returned and at most (the normal clients' included). peers ended: those whose connection the server ended (FIN or RST seen) by the time Shutdown returned, and the last one, from the deploy (-deaf: looked at when Shutdown returned). -check: lingerhttp's Shutdown returns within DrainDelay + DrainIdle + LingerTimeout + 2 s (10 s), before its deadline, with 0 descriptors held; raw is the control. normal requests, RSTs: the normal clients', which stop when the closed listener refuses them (each refusal one RST). -quick runs slowloris-deploy alone.
node-keepalive-agent, -fetch: Node.js's own keep-alive clients against a backend with IdleTimeout 1 s: http.Agent with keepAlive (one per lane), and the built-in fetch (undici; a dispatcher with one connection per lane). 200 lanes (-quick 40) each send an opening POST, then 3 (-quick 2) more, each after an idle gap of 1 s + an offset from −12 to +12 ms; requests: the swept ones. raw+keepalive-hdr: net/http whose handler adds Keep-Alive: timeout=1 (as Apache httpd and Node's server send it); lingerhttp-no-hdr: lingerhttp with its Keep-Alive: timeout=N masked (the handler sets Keep-Alive: max=1000, which Node ignores), retiring alone. reused: OK requests sent on a reused connection (the server numbers requests per connection). Node keeps a connection for N − 1 s of a timeout=N, so for timeout=1 it does not reuse at all. -check: lingerhttp fails none and sends no RST.
churn: a connection per request (health checks, HTTP/1.0, Connection: close): 16 clients each open a connection, send an HTTP/1.0 GET, read the hello to the server's FIN and close, 30,000 requests per run (-quick 3,000), three rounds of every variant in alternating order. linger and lingerhttp wrap a net.Listen listener, whose Accept sets Go's keep-alive on each connection as raw's does; linger.Listen is the listener linger.Listen makes, and lingerhttp.Run lingerhttp on that listener (as its ListenAndServe and Run serve): Go's Accept sets no keep-alive there, each connection has linger's from the listening socket. Medians over the runs, their spread (min–max), and the ratios to raw's medians: requests per second, p50/p99 latency (connect to FIN), and the backend's CPU (getrusage utime + stime) per request; and the ratio of CPU per request to raw's run of the same round, its median and spread over the rounds.
Notes: the listener's close outcomes (Stats), then scenario details: proxies' error-log lines by kind, client dials, Shutdown time.
`

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// notes lists the listener's outcomes and the row's extra counts.
func (row *row) notes() string {
	var parts []string
	if row.Note != "" {
		parts = append(parts, row.Note)
	}
	if s := row.Stats; s != nil {
		// Every outcome the library names; rescues have their column.
		for o := linger.Outcome(0); !strings.HasPrefix(o.String(), "Outcome("); o++ {
			if n := s.Outcomes[o]; n > 0 && o != linger.Rescued {
				parts = append(parts, fmt.Sprintf("%s %d", o, n))
			}
		}
	}
	if row.Scrape != nil {
		parts = append(parts, row.Scrape.note())
	}
	keys := make([]string, 0, len(row.Extra))
	for k := range row.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := row.Extra[k]
		switch {
		case v == float64(int64(v)):
			parts = append(parts, fmt.Sprintf("%s: %d", k, int64(v)))
		case v >= 100:
			parts = append(parts, fmt.Sprintf("%s: %.0f", k, v))
		default:
			parts = append(parts, fmt.Sprintf("%s: %.3g", k, v))
		}
	}
	return strings.ReplaceAll(strings.Join(parts, "; "), "|", "/")
}

// table renders rows as a markdown table: a blank line, header, the
// alignment line align, then one line a row.
func table(header, align string, rows []*row, line func(*row) string) string {
	var b strings.Builder
	b.WriteString("\n" + header + "\n" + align + "\n")
	for _, row := range rows {
		b.WriteString(line(row) + "\n")
	}
	return b.String()
}

// mainTable renders the rows of every scenario but smuggle.
func mainTable(rows []*row, rsts string) string {
	return table("| scenario | variant | requests | OK | 502 | EOF | ECONNRESET | other | "+rsts+" | abort on close / data | rescued | notes |",
		"|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|", rows, func(row *row) string {
			rst, aborts := row.resetColumns()
			return fmt.Sprintf("| %s | %s | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s |",
				row.Scenario, row.Variant, row.Requests, row.OK, row.Status502, row.EOF, row.Reset, row.Other,
				rst, aborts, row.rescuedColumn(), row.notes())
		})
}

// smuggleTable renders the smuggle rows, which have columns of their own.
func smuggleTable(rows []*row, rsts string) string {
	return table("| scenario | variant | attempts | reached backend | backend /admin runs | admin answers seen | direct /admin: nginx 403 | "+rsts+" | rescued | notes |",
		"|---|---|--:|--:|--:|--:|--:|--:|--:|---|", rows, func(row *row) string {
			s := row.Smuggle
			rst, _ := row.resetColumns()
			return fmt.Sprintf("| %s | %s | %d | %d | %d | %d | %d / %d | %s | %s | %s |",
				row.Scenario, row.Variant, s.Attempts, s.Reached, s.AdminRuns, s.AdminSeen, s.Direct403, s.Direct,
				rst, row.rescuedColumn(), row.notes())
		})
}

// slowlorisTable renders the slowloris rows: the deploy's Shutdown and
// the descriptors the peers held, then the normal clients' requests.
func slowlorisTable(rows []*row, rsts string) string {
	return table("| scenario | variant | peers set up (1–3 bytes after a response + half a request line) | Shutdown s (bar) | before its 20 s deadline | conn fds at Shutdown's end / peak | peers ended by then (last at s) | normal requests | OK | "+rsts+" | notes |",
		"|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|", rows, func(row *row) string {
			sl := row.Slowloris
			rst, _ := row.resetColumns()
			bar := ""
			if sl.BoundMs > 0 {
				bar = fmt.Sprintf(" (≤ %.0f)", sl.BoundMs/1000)
			}
			before := "yes"
			if sl.DeadlineHit {
				before = "no"
			}
			return fmt.Sprintf("| %s | %s | %d of %d + %d | %.2f%s | %s | %d / %d | %d (%.2f) | %d | %d | %s | %s |",
				row.Scenario, row.Variant, sl.SetUp, sl.Reused, sl.HalfLines, sl.ShutdownMs/1000, bar, before,
				sl.FDsAtEnd, sl.FDsPeak, sl.Ended, sl.LastEndMs/1000, row.Requests, row.OK, rst, row.notes())
		})
}

// rescuedColumn is the listener's rescued count, empty where the listener
// does not count (raw).
func (row *row) rescuedColumn() string {
	if row.Stats == nil {
		return ""
	}
	return strconv.FormatInt(row.Stats.Outcomes[linger.Rescued], 10)
}

// checkFailures lists the checked scenarios where a variant other than raw
// let the backend send a RST (or, uncounted, a client saw ECONNRESET; for
// the grpc rows, an RPC failed with connection reset by peer), the
// lossless rows that failed a request or sent a RST, and the smuggle rows
// (every variant, raw too) where the backend's /admin ran, or where the
// attack proved nothing: nginx let a direct /admin through, or an attack
// did not reach the backend; and the shutdown rows whose Prometheus scrape
// of the deployed listener was not its Stats.
func (r *results) checkFailures() []string {
	var bad []string
	for _, row := range r.Rows {
		if s := row.Soak; s != nil {
			bad = append(bad, s.failures(row)...)
			continue
		}
		if s := row.Scrape; s != nil && len(s.Mismatch) > 0 {
			bad = append(bad, fmt.Sprintf("%s/%s: the deploy's Prometheus scrape was not the listener's Stats: %s", row.Scenario, row.Variant, strings.Join(s.Mismatch, "; ")))
		}
		if sl := row.Slowloris; sl != nil {
			name := row.Scenario + "/" + row.Variant
			if scn := scenarioOfRow(row.Scenario); scn != nil && slices.Contains(scn.boundedShutdown, row.Variant) {
				switch {
				case sl.DeadlineHit:
					bad = append(bad, fmt.Sprintf("%s: Shutdown ran into its deadline", name))
				case sl.BoundMs > 0 && sl.ShutdownMs > sl.BoundMs:
					bad = append(bad, fmt.Sprintf("%s: Shutdown took %.2f s, above its bound %.0f s", name, sl.ShutdownMs/1000, sl.BoundMs/1000))
				}
				if sl.FDsAtEnd > 0 {
					bad = append(bad, fmt.Sprintf("%s: %d connection descriptors held after Shutdown returned", name, sl.FDsAtEnd))
				}
				if sl.SetUp < sl.Reused+sl.HalfLines {
					bad = append(bad, fmt.Sprintf("%s: %d of %d peers set up, so the scenario tested too little", name, sl.SetUp, sl.Reused+sl.HalfLines))
				}
			}
			continue
		}
		if s := row.Smuggle; s != nil {
			name := row.Scenario + "/" + row.Variant
			if s.AdminRuns > 0 {
				bad = append(bad, fmt.Sprintf("%s: the backend's /admin ran %d times in %d attacks: requests smuggled past nginx's 403", name, s.AdminRuns, s.Attempts))
			}
			if s.Direct403 < s.Direct {
				bad = append(bad, fmt.Sprintf("%s: nginx answered %d of %d direct /admin requests with 403, so the scenario's nginx does not deny /admin", name, s.Direct403, s.Direct))
			}
			if s.Reached < s.Attempts {
				bad = append(bad, fmt.Sprintf("%s: %d of %d attacks reached the backend, so the scenario tested too little", name, s.Reached, s.Attempts))
			}
			continue
		}
		if row.Variant == variants[0].name {
			continue
		}
		scn := scenarioOfRow(row.Scenario)
		lossless := scn != nil && slices.Contains(scn.lossless, row.Variant)
		if failed := row.Requests - row.OK; lossless && failed > 0 {
			bad = append(bad, fmt.Sprintf("%s/%s: %d of %d requests failed", row.Scenario, row.Variant, failed, row.Requests))
		}
		if rs := row.Restart; lossless && rs != nil && rs.Refused > 0 {
			bad = append(bad, fmt.Sprintf("%s/%s: the backend refused %d of the proxy's connects", row.Scenario, row.Variant, rs.Refused))
		}
		if !lossless && (scn == nil || !scn.noRSTs) {
			continue
		}
		if c := row.Counters; c != nil {
			outRsts := c.OutRsts
			if scn != nil && scn.refusedAfterClose {
				outRsts = 0
			}
			if outRsts > 0 || c.AbortOnClose > 0 || c.AbortOnData > 0 {
				bad = append(bad, fmt.Sprintf("%s/%s: backend sent RSTs (TcpOutRsts %d, TCPAbortOnClose %d, TCPAbortOnData %d)",
					row.Scenario, row.Variant, c.OutRsts, c.AbortOnClose, c.AbortOnData))
			}
		} else if row.Reset > 0 {
			bad = append(bad, fmt.Sprintf("%s/%s: clients saw %d ECONNRESET", row.Scenario, row.Variant, row.Reset))
		}
	}
	for _, f := range r.Failed {
		bad = append(bad, "failed: "+f)
	}
	return bad
}

// write writes latest.json and sweep.svg into dir.
func (r *results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if len(r.Sweep) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "sweep.svg"), []byte(r.sweepSVG()), 0o644); err != nil {
			return err
		}
	}
	for _, row := range r.Rows {
		if row.Soak != nil {
			if err := os.WriteFile(filepath.Join(dir, "soak.svg"), []byte(row.Soak.svg(r.Date, r.Kernel)), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeReadmeTable writes README-table.md: the table of a full default
// run, with the machine it ran on, for the README to quote.
func (r *results) writeReadmeTable(dir string) error {
	var b strings.Builder
	b.WriteString("# linger benchmark: a default run\n\n")
	b.WriteString("Made by `bench/run -publish` (all scenarios, default counts; `make bench-publish`).\n\n")
	fmt.Fprintf(&b, "- date: %s\n- `uname -r`: %s\n- `nginx -v`: %s\n- `haproxy -v`: %s\n- `apache2 -v`: %s\n- `nproc`: %d\n- Go: %s\n- wall time: %.0f s\n",
		r.Date, r.Kernel, orNone(r.Nginx, "not installed"), orNone(r.HAProxy, "not installed"), orNone(r.Apache, "not installed"), r.NProc, r.Go, r.WallSeconds)
	b.WriteString(r.markdown())
	return os.WriteFile(filepath.Join(dir, "README-table.md"), []byte(b.String()), 0o644)
}

// sweepSVG draws one panel per variant: for each offset, a stacked bar of
// the tries' outcomes as the client saw them (served, EOF, reset, other),
// and a dot for the backend's RSTs per try (capped at 100%).
func (r *results) sweepSVG() string {
	const (
		panelW, panelH = 440.0, 240.0
		left, top      = 50.0, 48.0
		gap            = 40.0
		bottom         = 76.0
	)
	var names []string
	for _, v := range variants {
		if slices.ContainsFunc(r.Sweep, func(p *sweepPoint) bool { return p.Variant == v.name }) {
			names = append(names, v.name)
		}
	}
	offs := sweepOffsets()
	width := left + float64(len(names))*(panelW+gap)
	height := top + panelH + bottom
	kinds := []struct{ name, color string }{
		{"served", "#4caf50"}, {"EOF: request lost, no reset seen", "#ffb300"}, {"ECONNRESET", "#e53935"}, {"other", "#9e9e9e"},
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14" font-weight="bold">sweep: a client sends its next request at the server's idle close + offset</text>`+"\n", left)
	fmt.Fprintf(&b, `<text x="%.0f" y="32" fill="#555">%s, %s mode, kernel %s</text>`+"\n", left, r.Date, r.Mode, r.Kernel)
	for pi, name := range names {
		x0 := left + float64(pi)*(panelW+gap)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", x0, top-6, name)
		for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
			y := top + panelH*(1-f)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x0+panelW, y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">%.0f%%</text>`+"\n", x0-4, y+4, f*100)
		}
		barW := panelW / float64(len(offs))
		for i, off := range offs {
			ms := float64(off) / float64(time.Millisecond)
			x := x0 + float64(i)*barW
			if ms == float64(int(ms)) {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%+.0f</text>`+"\n", x+barW/2, top+panelH+16, ms)
			}
			i := slices.IndexFunc(r.Sweep, func(p *sweepPoint) bool { return p.Variant == name && p.OffsetMs == ms })
			if i < 0 || r.Sweep[i].Tries == 0 {
				continue
			}
			p := r.Sweep[i]
			total := float64(p.Tries)
			y := top + panelH
			for ki, n := range []int{p.Served, p.EOF, p.Reset, p.Other} {
				h := panelH * float64(n) / total
				y -= h
				if n > 0 {
					fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %+.1f ms: %s %d of %d</title></rect>`+"\n",
						x+1, y, barW-2, h, kinds[ki].color, name, ms, kinds[ki].name, n, p.Tries)
				}
			}
			if p.RSTs != nil {
				rate := float64(*p.RSTs) / total
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="black"><title>%s %+.1f ms: backend sent %d RSTs in %d tries</title></circle>`+"\n",
					x+barW/2, top+panelH*(1-min(rate, 1)), name, ms, *p.RSTs, p.Tries)
			}
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">offset (ms) of the client's send from the server's close</text>`+"\n", x0+panelW/2, top+panelH+34)
	}
	y := top + panelH + 52
	x := left
	for _, k := range kinds {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", x, y, k.color, x+14, y+9, k.name)
		x += 30 + 7*float64(len(k.name))
	}
	if slices.ContainsFunc(r.Sweep, func(p *sweepPoint) bool { return p.RSTs != nil }) {
		fmt.Fprintf(&b, `<circle cx="%.0f" cy="%.0f" r="4" fill="black"/><text x="%.0f" y="%.0f">backend RSTs per try (kernel count)</text>`+"\n", x+5, y+5, x+14, y+9)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// publishDir is where -publish copies a run's results: the copy the README
// quotes and git tracks, relative to bench/ (bench/run's directory). A run
// without -publish writes only to its -out directory, untracked, so that
// running the benchmark leaves the checkout as it was.
const publishDir = "results"

// publishedFiles are the files -publish copies: a full default run's
// table, JSON and sweep, or the restart scenario's table.
func publishedFiles(o options) []string {
	if o.only["restart"] {
		return []string{"restart-table.md"}
	}
	if o.only["soak"] {
		return []string{"soak.svg"}
	}
	return []string{"README-table.md", "latest.json", "sweep.svg"}
}

// checkPublish refuses -publish for a run whose results the README does
// not quote: quick counts, or a part of the default run.
func checkPublish(o options) error {
	switch {
	case !o.publish:
		return nil
	case o.quick:
		return errors.New("a -quick run's counts are not the ones the README quotes")
	case len(o.only) == 0 || len(o.only) == 1 && (o.only["restart"] || o.only["soak"]):
		return nil
	}
	return errors.New("it publishes the full default run (no -only), -only restart or the soak")
}

// publish copies the run's published files from its -out directory to
// publishDir.
func publish(o options) error {
	if err := os.MkdirAll(publishDir, 0o755); err != nil {
		return err
	}
	for _, f := range publishedFiles(o) {
		b, err := os.ReadFile(filepath.Join(o.out, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(publishDir, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
