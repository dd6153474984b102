package main

// The report: what -json prints, and the table a person reads.

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// report is everything one run measured. Times are in seconds (…_s) or
// milliseconds (…_ms).
type report struct {
	URL              string        `json:"url"`
	Balancer         string        `json:"balancer"`
	BalancerIdleSecs float64       `json:"balancer_idle_s"`
	Idle             idleReport    `json:"idle"`
	MaxRequests      *maxReqReport `json:"max_requests,omitempty"`
	Race             *raceReport   `json:"race,omitempty"`
	Early            *earlyReport  `json:"early_response,omitempty"`
	Verdict          verdict       `json:"verdict"`
	DurationSecs     float64       `json:"duration_s"`
}

// idleReport is how idle keep-alive connections end.
type idleReport struct {
	Status          int     `json:"status"`
	Server          string  `json:"server,omitempty"`
	PoweredBy       string  `json:"powered_by,omitempty"`
	KeepAliveHeader string  `json:"keep_alive_header,omitempty"`
	AdvertisedSecs  float64 `json:"advertised_timeout_s,omitempty"`
	ConnectionClose bool    `json:"connection_close"` // on the first answer
	Closed          bool    `json:"closed"`           // within waited_s
	TimeoutSecs     float64 `json:"timeout_s,omitempty"`
	MinSecs         float64 `json:"timeout_min_s,omitempty"`
	MaxSecs         float64 `json:"timeout_max_s,omitempty"`
	End             string  `json:"end,omitempty"` // FIN, RST
	UnaskedBytes    int     `json:"unasked_bytes,omitempty"`
	WaitedSecs      float64 `json:"max_idle_s"`
	RTTms           float64 `json:"connect_ms"`
}

// maxReqReport is how many requests one connection served.
type maxReqReport struct {
	Bound  int    `json:"bound"`
	Served int    `json:"served"`
	Limit  int    `json:"limit,omitempty"` // the answer that said "Connection: close"
	End    string `json:"end,omitempty"`
}

// raceReport is the sweep around the idle timeout.
type raceReport struct {
	IdleCloseSecs float64 `json:"idle_close_s"` // the measured idle close the sweep is around
	FromMs        float64 `json:"from_ms"`      // the first request's offset from it
	ToMs          float64 `json:"to_ms"`        // the last one's

	Methods []raceCount `json:"methods"`
}

// raceCount is one method's swept requests.
type raceCount struct {
	Method       string  `json:"method"`
	Sent         int     `json:"sent"`
	Answered     int     `json:"answered"`
	Retired      int     `json:"retired"` // answered with "Connection: close"
	EOF          int     `json:"eof"`
	Reset        int     `json:"reset"`
	Other        int     `json:"other"`
	ClosedFirst  int     `json:"closed_first"` // not sent: the backend had closed
	FailedFromMs float64 `json:"failed_from_ms,omitempty"`
	FailedToMs   float64 `json:"failed_to_ms,omitempty"`
}

// earlyReport is the large POSTs the backend answers before reading.
type earlyReport struct {
	Path          string `json:"path"`
	BodyBytes     int    `json:"body_bytes"`
	Tries         int    `json:"tries"`
	BodySentWhole int    `json:"body_sent_whole"`
	Whole         int    `json:"whole_answer"`
	Statuses      []int  `json:"statuses,omitempty"`
	Reset         int    `json:"reset"`
	EOF           int    `json:"eof"`
	Timeout       int    `json:"timeout"`
	Other         int    `json:"other"`
}

// verdict is the conclusion.
type verdict struct {
	Result        string   `json:"result"` // clean, races, unknown
	Reason        string   `json:"reason"`
	Backend       string   `json:"backend_guess,omitempty"`
	SuggestedSecs float64  `json:"suggested_backend_idle_s,omitempty"`
	FixBackend    []string `json:"fix_backend,omitempty"`  // one line per server; the guessed one first
	FixBalancer   string   `json:"fix_balancer,omitempty"` // or this, on the balancer
	Notes         []string `json:"notes,omitempty"`
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeText(w io.Writer) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(cells ...any) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprint(tw, "\n")
	}
	fmt.Fprintf(&b, "lingerprobe %s  (balancer: %s, idle timeout %s)\n\n", r.URL, balancers[r.Balancer].name, fmtDur(secs(r.BalancerIdleSecs)))

	idle := r.Idle
	fmt.Fprintf(&b, "idle keep-alive connection\n")
	switch {
	case idle.ConnectionClose:
		row("  closed by the backend", "at once: \"Connection: close\" on the first answer")
	case idle.Closed:
		spread := ""
		if idle.MaxSecs-idle.MinSecs >= 0.005 {
			spread = fmt.Sprintf(" (%d connections: %.2f–%.2f s)", idleConns, idle.MinSecs, idle.MaxSecs)
		}
		row("  closed by the backend after", fmtSecs(idle.TimeoutSecs)+spread)
		row("  how it ended", idle.End)
	default:
		row("  closed by the backend after", fmt.Sprintf("more than %s (the probe stopped waiting)", fmtDur(secs(idle.WaitedSecs))))
	}
	ka := "none"
	if idle.KeepAliveHeader != "" {
		ka = idle.KeepAliveHeader
	}
	row("  Keep-Alive header", ka)
	if m := r.MaxRequests; m != nil {
		var s string
		switch {
		case m.Limit > 0:
			s = fmt.Sprintf("%d (then \"Connection: close\")", m.Limit)
		case m.Served >= m.Bound:
			s = fmt.Sprintf("more than %d", m.Bound)
		default:
			s = fmt.Sprintf("%d, then %s", m.Served, m.End)
		}
		row("  requests per connection", s)
	}
	server := idle.Server
	if idle.PoweredBy != "" {
		server = strings.TrimSpace(server + " (X-Powered-By: " + idle.PoweredBy + ")")
	}
	if server == "" {
		server = "(no Server header)"
	}
	row("  server", server)
	row("  status of GET", idle.Status)
	tw.Flush()

	if rc := r.Race; rc != nil {
		fmt.Fprintf(&b, "\nrequests on connections idle %.3f s, from %.1f ms before to %.1f ms after the close was seen, one connection each\n", rc.IdleCloseSecs, -rc.FromMs, rc.ToMs)
		row("  method", "sent", "answered", "lost: EOF", "lost: reset", "other", "not sent (closed first)")
		for _, m := range rc.Methods {
			ans := fmt.Sprint(m.Answered)
			if m.Retired > 0 {
				ans += fmt.Sprintf(" (%d Connection: close)", m.Retired)
			}
			row("  "+m.Method, m.Sent, ans, m.EOF, m.Reset, m.Other, m.ClosedFirst)
		}
		tw.Flush()
	}

	if e := r.Early; e != nil {
		fmt.Fprintf(&b, "\nearly response: POST of %d bytes to %s, written whole before reading, %d times\n", e.BodyBytes, e.Path, e.Tries)
		whole := fmt.Sprint(e.Whole)
		if len(e.Statuses) > 0 {
			whole += fmt.Sprintf(" (status %s)", strings.Trim(fmt.Sprint(e.Statuses), "[]"))
		}
		row("  whole answer", "reset", "EOF", "timeout", "other")
		row("  "+whole, e.Reset, e.EOF, e.Timeout, e.Other)
		tw.Flush()
	}

	v := r.Verdict
	fmt.Fprintf(&b, "\nverdict: %s — %s\n", strings.ToUpper(v.Result), v.Reason)
	for _, n := range v.Notes {
		fmt.Fprintf(&b, "  seen: %s\n", n)
	}
	if len(v.FixBackend) > 0 {
		fmt.Fprintf(&b, "fix: keep idle connections open longer on the backend than on the balancer (%s):\n", fmtDur(secs(v.SuggestedSecs)))
		for _, a := range v.FixBackend {
			fmt.Fprintf(&b, "  %s\n", a)
		}
	}
	if v.FixBalancer != "" {
		fmt.Fprintf(&b, "or on the balancer:\n  %s\n", v.FixBalancer)
	}
	fmt.Fprintf(&b, "(probe took %.1f s)\n", r.DurationSecs)
	_, err := io.WriteString(w, b.String())
	return err
}
