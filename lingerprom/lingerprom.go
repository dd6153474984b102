// Package lingerprom exports a [linger.Listener]'s counters and a
// [lingerhttp.Server]'s advice as Prometheus metrics, so that an idle
// timeout racing the load balancer shows on a graph and can be alerted on.
//
// It is a module of its own, so that the linger module depends on nothing
// but golang.org/x/sys; services that read expvar instead use
// [linger.StatsVar], which needs no dependency.
//
// A [Collector] exports one linger.Listener, a [ServerCollector] one
// lingerhttp.Server (its listener's metrics and its own). Each is made
// before the listener or server it watches, because its histograms are fed
// by the listener's [linger.Config.OnClose]:
//
//	m := lingerprom.NewCollector(lingerprom.Opts{ConstLabels: prometheus.Labels{"listener": "public"}})
//	ln, err := linger.Listen("tcp", ":8080", linger.Config{OnClose: m.OnClose(nil)})
//	if err != nil {
//		log.Fatal(err)
//	}
//	m.Watch(ln)
//	prometheus.MustRegister(m)
//
// The counters and gauges are read from the listener's own atomic counters
// ([linger.Listener.Stats]) when Prometheus scrapes, so they cost nothing
// on the connection path; the histograms cost one observation per finished
// close. Several listeners are told apart by ConstLabels: one collector
// each, with different values.
//
// # Metrics
//
// Every metric carries the collector's ConstLabels.
//
//	linger_accepted_connections_total          counter    connections taken from the kernel (see linger.Stats.Accepted)
//	linger_closes_total{outcome}               counter    finished closes by outcome: every linger.Outcome by name
//	                                                      ("clean", "crossed", ...); "rescued" counts requests handed
//	                                                      back by an idle close instead of closing
//	linger_open_connections                    gauge      accepted, not yet closed by their owner
//	linger_lingering_connections               gauge      closed by their owner, lingering close under way
//	linger_discarded_bytes_total               counter    bytes read and dropped by lingering closes
//	linger_close_duration_seconds              histogram  from the owner's Close until the socket closed (CloseInfo.Linger)
//	linger_close_idle_seconds                  histogram  idle time of the connection when its owner closed it (CloseInfo.Idle)
//
// A ServerCollector adds lingerhttp's ([lingerhttp.Advice]):
//
//	lingerhttp_retired_connections_total       counter    connections whose next response carried "Connection: close"
//	lingerhttp_lost_requests_total             counter    requests that met a close (crossed or pending)
//	lingerhttp_longest_reuse_gap_seconds       gauge      longest idle gap after which a peer reused a connection
//	lingerhttp_longest_lost_idle_seconds       gauge      longest idle time before a close that lost a request
//	lingerhttp_suggested_idle_timeout_seconds  gauge      the idle timeout that would have avoided the losses
//
// A metric appears once its source is connected: the counters and gauges
// once the collector watches a listener (for a ServerCollector, once Serve
// has begun), the histograms once OnClose has been called. A
// collector that was never connected shows no data rather than zeros that
// would read as "nothing went wrong".
//
// # Does my idle timeout race my balancer?
//
// Requests lost to closes, per second. Crossed closes are the race itself:
// a request was on the wire when the backend closed an idle connection, so
// the balancer keeps idle upstream connections longer than the backend
// does (lower the balancer's idle timeout, or let lingerhttp retire
// connections). Pending closes are requests that had already arrived, and
// also bodies a handler left unread. A TLS client's close_notify, which
// healthy TLS connections end with, counts as clean, not as either:
//
//	sum by (instance) (rate(linger_closes_total{outcome=~"crossed|pending"}[5m]))
//
// The repository's README (section Monitoring) has the deploy query and
// what to alert on.
package lingerprom

import (
	"sync/atomic"

	"github.com/linger-go/linger"
	"github.com/prometheus/client_golang/prometheus"
)

// Opts configures a collector. The zero Opts is ready to use.
type Opts struct {
	// ConstLabels are added to every metric: set them to tell several
	// listeners apart, such as {"listener": "public"}. Nil means none.
	ConstLabels prometheus.Labels

	// CloseBuckets are the upper bounds, in seconds, of the close-duration
	// histogram's buckets. Nil means 0.1 ms to 5 s: a lingering close that
	// the peer answers takes about one round trip, and one that the peer
	// never answers takes [linger.Config.LingerTimeout] (2 s by default,
	// so those fall between the 2 s and 2.5 s bounds).
	CloseBuckets []float64

	// IdleBuckets are the upper bounds, in seconds, of the idle-at-close
	// histogram's buckets. Nil means 10 ms to 5 min, with bounds at the
	// idle timeouts that race each other: 1 s, 5 s, 15 s, 60 s (nginx's
	// upstream keepalive_timeout, AWS ALB's idle timeout), 75 s (nginx's
	// client keepalive_timeout) and 90 s (Go's http.Transport and
	// lingerhttp's CloseIdleAfter).
	IdleBuckets []float64
}

var (
	defaultCloseBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5}
	defaultIdleBuckets  = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 75, 90, 120, 300}
)

// listenerMetrics are the metrics of one linger.Listener, shared by
// Collector and ServerCollector.
type listenerMetrics struct {
	accepted, closes, open, lingering, discarded *prometheus.Desc

	closeDuration, closeIdle prometheus.Histogram
	observed                 atomic.Bool // OnClose was called: the histograms are fed
}

func newListenerMetrics(o Opts) *listenerMetrics {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, o.ConstLabels)
	}
	closeBuckets, idleBuckets := o.CloseBuckets, o.IdleBuckets
	if closeBuckets == nil {
		closeBuckets = defaultCloseBuckets
	}
	if idleBuckets == nil {
		idleBuckets = defaultIdleBuckets
	}
	return &listenerMetrics{
		accepted: desc("linger_accepted_connections_total", "Connections taken from the kernel's accept queue (see linger.Stats.Accepted)."),
		closes: desc("linger_closes_total",
			`Finished closes of accepted connections, by outcome (see linger.Outcome); outcome="rescued" counts requests an idle close handed back instead of closing.`,
			"outcome"),
		open:      desc("linger_open_connections", "Accepted connections not yet closed by their owner."),
		lingering: desc("linger_lingering_connections", "Connections closed by their owner whose lingering close is under way."),
		discarded: desc("linger_discarded_bytes_total", "Bytes read and dropped by lingering closes."),
		closeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "linger_close_duration_seconds",
			Help:        "How long closes took, from the owner's Close until the socket was closed (the lingering close).",
			ConstLabels: o.ConstLabels,
			Buckets:     closeBuckets,
		}),
		closeIdle: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "linger_close_idle_seconds",
			Help:        "How long connections had been idle (no byte read or written) when their owner closed them.",
			ConstLabels: o.ConstLabels,
			Buckets:     idleBuckets,
		}),
	}
}

func (m *listenerMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.accepted
	ch <- m.closes
	ch <- m.open
	ch <- m.lingering
	ch <- m.discarded
	m.closeDuration.Describe(ch)
	m.closeIdle.Describe(ch)
}

// collect sends the counters of l, if not nil, and the histograms, if fed.
func (m *listenerMetrics) collect(ch chan<- prometheus.Metric, l *linger.Listener) {
	if l != nil {
		st := l.Stats()
		ch <- prometheus.MustNewConstMetric(m.accepted, prometheus.CounterValue, float64(st.Accepted))
		for o := range linger.NumOutcomes {
			ch <- prometheus.MustNewConstMetric(m.closes, prometheus.CounterValue, float64(st.Outcomes[o]), o.String())
		}
		ch <- prometheus.MustNewConstMetric(m.open, prometheus.GaugeValue, float64(st.Open))
		ch <- prometheus.MustNewConstMetric(m.lingering, prometheus.GaugeValue, float64(st.Lingering))
		ch <- prometheus.MustNewConstMetric(m.discarded, prometheus.CounterValue, float64(st.Discarded))
	}
	if m.observed.Load() {
		m.closeDuration.Collect(ch)
		m.closeIdle.Collect(ch)
	}
}

func (m *listenerMetrics) observe(ci linger.CloseInfo) {
	m.observed.Store(true)
	m.closeDuration.Observe(ci.Linger.Seconds())
	m.closeIdle.Observe(ci.Idle.Seconds())
}

func (m *listenerMetrics) onClose(next func(linger.CloseInfo)) func(linger.CloseInfo) {
	m.observed.Store(true)
	return func(ci linger.CloseInfo) {
		m.observe(ci)
		if next != nil {
			next(ci)
		}
	}
}

// Collector is a [prometheus.Collector] of one [linger.Listener]'s
// metrics (see the package documentation for the list). Make it with
// NewCollector, pass OnClose to the listener's Config, Watch the listener,
// and register it. Its methods may be called concurrently.
type Collector struct {
	m  *listenerMetrics
	ln atomic.Pointer[linger.Listener]
}

// NewCollector returns a Collector that watches no listener yet. It
// panics if a bucket list in o is not increasing, as
// [prometheus.NewHistogram] does.
func NewCollector(o Opts) *Collector {
	return &Collector{m: newListenerMetrics(o)}
}

// Watch makes c export l's counters, read from l at every scrape. A later
// call replaces l (Prometheus reads a counter that goes down as a reset).
func (c *Collector) Watch(l *linger.Listener) { c.ln.Store(l) }

// OnClose returns a function for [linger.Config.OnClose] that feeds c's
// close-duration and idle-at-close histograms, then calls next, the
// OnClose you had or your own, if it is not nil:
//
//	cfg.OnClose = c.OnClose(cfg.OnClose)
//
// Each close costs one observation per histogram (atomic additions).
func (c *Collector) OnClose(next func(linger.CloseInfo)) func(linger.CloseInfo) {
	return c.m.onClose(next)
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { c.m.describe(ch) }

// Collect implements [prometheus.Collector]: it reads the watched
// listener's [linger.Listener.Stats].
func (c *Collector) Collect(ch chan<- prometheus.Metric) { c.m.collect(ch, c.ln.Load()) }
