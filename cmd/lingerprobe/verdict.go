package main

// The verdict: does the backend close idle connections before the balancer,
// and what to change.

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Verdict results.
const (
	resultClean   = "clean"   // the balancer closes idle connections first
	resultRaces   = "races"   // the backend closes them first, or too close to it
	resultUnknown = "unknown" // -max-idle ended the wait before -lb-idle
)

// raceMargin is how much longer than the balancer's the backend's idle
// timeout must be: the two timers start a round trip apart, and AWS asks
// for the backend's to be "larger" than the ALB's
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout).
const raceMargin = time.Second

// suggestedMargin is what the advice adds to the balancer's idle timeout.
const suggestedMargin = 5 * time.Second

// judge compares what was measured with the balancer's idle timeout.
func judge(o *options, rep *report) verdict {
	v := verdict{}
	lbName := balancers[o.lb].name
	lbIdle := o.lbIdle
	idle := rep.Idle
	switch {
	case idle.ConnectionClose:
		v.Result = resultClean
		v.Reason = "the backend answered with \"Connection: close\": it keeps no connection alive, so the balancer reuses none and nothing races (each request pays a new connection)"
	case idle.Closed:
		closes := secs(idle.MinSecs)
		if closes < lbIdle+raceMargin {
			v.Result = resultRaces
			v.Reason = fmt.Sprintf("the backend closes idle keep-alive connections after %s (%s), before the %s's %s idle timeout: a request the balancer sends on such a connection as it closes is lost (a 502 the backend never logs)",
				fmtSecs(idle.MinSecs), idle.End, lbName, fmtDur(lbIdle))
		} else {
			v.Result = resultClean
			v.Reason = fmt.Sprintf("the backend keeps idle connections for %s, longer than the %s's %s idle timeout: the balancer closes first",
				fmtSecs(idle.MinSecs), lbName, fmtDur(lbIdle))
		}
	case o.maxIdle >= lbIdle+raceMargin:
		v.Result = resultClean
		v.Reason = fmt.Sprintf("the backend kept idle connections open for all of the %s the probe waited, longer than the %s's %s idle timeout: the balancer closes first",
			fmtDur(o.maxIdle), lbName, fmtDur(lbIdle))
	default:
		v.Result = resultUnknown
		v.Reason = fmt.Sprintf("the backend kept idle connections open for all of the %s the probe waited, which is not longer than the %s's %s idle timeout: run again with -max-idle above %s",
			fmtDur(o.maxIdle), lbName, fmtDur(lbIdle), fmtDur(lbIdle+raceMargin))
	}
	v.Backend = guessBackend(idle)
	if v.Result == resultRaces {
		v.SuggestedSecs = (lbIdle.Truncate(time.Second) + suggestedMargin).Seconds()
		v.FixBackend, v.FixBalancer = advice(o, v.Backend, time.Duration(v.SuggestedSecs)*time.Second, secs(idle.MinSecs))
	}
	v.Notes = notes(rep)
	return v
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// guessBackend names the backend's software from its headers, or "".
func guessBackend(idle idleReport) string {
	srv := strings.ToLower(idle.Server)
	switch {
	case strings.Contains(srv, "nginx"), strings.Contains(srv, "openresty"):
		return "nginx"
	case strings.Contains(srv, "apache"):
		return "apache"
	case strings.Contains(strings.ToLower(idle.PoweredBy), "express"):
		return "node"
	case srv == "" && idle.KeepAliveHeader != "" && idle.AdvertisedSecs > 0:
		// Node's http server sends "Keep-Alive: timeout=N" and no Server
		// header; Go's sends neither.
		return "node"
	}
	return ""
}

// advice is the settings that make the balancer close first: the backend's
// idle timeout raised to suggested (one line per server, the guessed
// backend's first), or the balancer's lowered below the backend's (closes).
func advice(o *options, backend string, suggested, closes time.Duration) (onBackend []string, onBalancer string) {
	s := int(suggested.Seconds())
	lines := map[string]string{
		"node":   fmt.Sprintf("Node.js: server.keepAliveTimeout = %d000; server.headersTimeout = %d000;", s, s+1),
		"go":     fmt.Sprintf("Go: http.Server{IdleTimeout: %d * time.Second}, or lingerhttp, which retires idle connections with \"Connection: close\" instead of closing them", s),
		"nginx":  fmt.Sprintf("nginx: keepalive_timeout %ds;", s),
		"apache": fmt.Sprintf("Apache httpd: KeepAliveTimeout %d", s),
	}
	order := []string{"node", "go", "nginx", "apache"}
	if backend != "" {
		order = append([]string{backend}, order...)
	}
	seen := map[string]bool{}
	for _, k := range order {
		if !seen[k] {
			seen[k] = true
			onBackend = append(onBackend, lines[k])
		}
	}
	below := fmtDur(max(closes-raceMargin, time.Second).Truncate(time.Second))
	switch o.lb {
	case "alb":
		onBalancer = fmt.Sprintf("ALB: idle_timeout.timeout_seconds %s or less", strings.TrimSuffix(below, " s"))
	case "nginx":
		onBalancer = fmt.Sprintf("nginx: keepalive_timeout %s or less in the upstream block", strings.ReplaceAll(below, " ", ""))
	case "haproxy":
		onBalancer = fmt.Sprintf("HAProxy: drop idle server connections well before %s (global pool-purge-delay) and retry what still meets a close (retry-on conn-failure empty-response)", fmtDur(closes.Truncate(time.Second)))
	}
	return onBackend, onBalancer
}

// notes are what else the measurements showed.
func notes(rep *report) []string {
	var n []string
	idle := rep.Idle
	if strings.Contains(idle.End, endRST) {
		n = append(n, "the backend ends idle connections with a RST, not a FIN: the balancer may count it as an error even when it sent nothing")
	}
	if idle.UnaskedBytes > 0 {
		n = append(n, fmt.Sprintf("the backend sent %d bytes nobody asked for on an idle connection before closing it (a 408?)", idle.UnaskedBytes))
	}
	if idle.Closed && idle.AdvertisedSecs > 0 && math.Abs(idle.AdvertisedSecs-idle.TimeoutSecs) >= 0.5 {
		// Node's http server times an idle socket out a second after the
		// keepAliveTimeout it advertises (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER
		// in lib/_http_server.js, server.keepAliveTimeoutBuffer in later
		// versions), so that clients honouring the header close first;
		// balancers do not read the header.
		n = append(n, fmt.Sprintf("the backend advertises \"Keep-Alive: timeout=%g\" but closed idle connections after %s; balancers go by their own timeout, not the header", idle.AdvertisedSecs, fmtSecs(idle.TimeoutSecs)))
	}
	if m := rep.MaxRequests; m != nil && m.Served < m.Bound && m.End != "Connection: close" && m.End != "" {
		n = append(n, fmt.Sprintf("the backend ended a connection after %d requests without \"Connection: close\" (%s): that races the balancer too", m.Served, m.End))
	}
	if r := rep.Race; r != nil {
		for _, m := range r.Methods {
			if lost := m.EOF + m.Reset; lost > 0 {
				n = append(n, fmt.Sprintf("%d of %d %ss sent as the backend closed the connection got no answer (%d EOF, %d reset), sent %+.1f to %+.1f ms from the close seen",
					lost, m.Sent, m.Method, m.EOF, m.Reset, m.FailedFromMs, m.FailedToMs))
			}
			if m.Retired > 0 {
				n = append(n, fmt.Sprintf("%d %s answers carried \"Connection: close\": the backend retires idle connections instead of closing them", m.Retired, m.Method))
			}
		}
	}
	if e := rep.Early; e != nil {
		if e.Reset > 0 {
			n = append(n, fmt.Sprintf("%d of %d clients that sent a %d-byte POST to %s whole before reading got a reset instead of the answer: the backend closes with the body unread (RFC 9112 §9.6 asks for a lingering close)",
				e.Reset, e.Tries, e.BodyBytes, e.Path))
		}
		if e.EOF > 0 {
			n = append(n, fmt.Sprintf("%d of %d POSTs of %d bytes to %s ended without a whole answer", e.EOF, e.Tries, e.BodyBytes, e.Path))
		}
	}
	return n
}

// fmtSecs formats seconds as "5.00 s".
func fmtSecs(s float64) string { return fmt.Sprintf("%.2f s", s) }

// fmtDur formats d as whole seconds when it is one, as "60 s".
func fmtDur(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d s", int64(d/time.Second))
	}
	return fmtSecs(d.Seconds())
}
