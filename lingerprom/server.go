package lingerprom

import (
	"sync/atomic"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
	"github.com/prometheus/client_golang/prometheus"
)

// ServerCollector is a [prometheus.Collector] of one [lingerhttp.Server]:
// its listener's metrics, as a [Collector] exports them, and lingerhttp's
// own from [lingerhttp.Server.Advice] (see the package documentation for
// the list). Use it instead of a Collector, not beside one: the listener's
// metrics would be exported twice. Make it with NewServerCollector, pass
// OnClose to the server's Config.Linger, Watch the server, and register
// it. Its methods may be called concurrently.
type ServerCollector struct {
	m   *listenerMetrics
	srv atomic.Pointer[lingerhttp.Server]

	retired, lost, longestReuse, longestLostIdle, suggested *prometheus.Desc
}

// NewServerCollector returns a ServerCollector that watches no server
// yet. It panics if a bucket list in o is not increasing, as
// [prometheus.NewHistogram] does.
func NewServerCollector(o Opts) *ServerCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, nil, o.ConstLabels)
	}
	return &ServerCollector{
		m:               newListenerMetrics(o),
		retired:         desc("lingerhttp_retired_connections_total", `Connections retired after more than RetireAfter idle: their next response carried "Connection: close".`),
		lost:            desc("lingerhttp_lost_requests_total", "Requests that met a close: they crossed the server's FIN on the wire (outcome crossed) or were waiting unread and could not be rescued (outcome pending)."),
		longestReuse:    desc("lingerhttp_longest_reuse_gap_seconds", "The longest idle gap after which a peer sent another request on a connection."),
		longestLostIdle: desc("lingerhttp_longest_lost_idle_seconds", "The longest idle time before a close that lost a request."),
		suggested:       desc("lingerhttp_suggested_idle_timeout_seconds", "The idle timeout that would have avoided the lost requests: longer than every gap seen, plus a margin."),
	}
}

// Watch makes c export s's metrics, read from s at every scrape; its
// listener's appear once [lingerhttp.Server.Serve] has begun. A later call
// replaces s.
func (c *ServerCollector) Watch(s *lingerhttp.Server) { c.srv.Store(s) }

// OnClose returns a function for the server's [lingerhttp.Config]
// Listener.OnClose that feeds c's histograms, then calls next, the
// OnClose you had, if it is not nil:
//
//	cfg.Linger.OnClose = c.OnClose(cfg.Linger.OnClose)
//
// The server still learns its advice from every close: lingerhttp.New
// wraps what it is given.
func (c *ServerCollector) OnClose(next func(linger.CloseInfo)) func(linger.CloseInfo) {
	return c.m.onClose(next)
}

// Describe implements [prometheus.Collector].
func (c *ServerCollector) Describe(ch chan<- *prometheus.Desc) {
	c.m.describe(ch)
	ch <- c.retired
	ch <- c.lost
	ch <- c.longestReuse
	ch <- c.longestLostIdle
	ch <- c.suggested
}

// Collect implements [prometheus.Collector]: it reads the watched server's
// [lingerhttp.Server.Advice] and its listener's [linger.Listener.Stats].
func (c *ServerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.srv.Load()
	if s == nil {
		c.m.collect(ch, nil)
		return
	}
	c.m.collect(ch, s.Listener())
	a := s.Advice()
	ch <- prometheus.MustNewConstMetric(c.retired, prometheus.CounterValue, float64(a.Retired))
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(a.Lost))
	ch <- prometheus.MustNewConstMetric(c.longestReuse, prometheus.GaugeValue, a.LongestReuse.Seconds())
	ch <- prometheus.MustNewConstMetric(c.longestLostIdle, prometheus.GaugeValue, a.LongestLostIdle.Seconds())
	ch <- prometheus.MustNewConstMetric(c.suggested, prometheus.GaugeValue, a.Suggested.Seconds())
}
