package lingerprom_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const closesHelp = `# HELP linger_closes_total Finished closes of accepted connections, by outcome (see linger.Outcome); outcome="rescued" counts requests an idle close handed back instead of closing.
# TYPE linger_closes_total counter
`

// closesText is the exposition of linger_closes_total with the given
// counts (every other outcome 0) and label listener="public".
func closesText(counts map[linger.Outcome]int) string {
	var b strings.Builder
	b.WriteString(closesHelp)
	for o := range linger.NumOutcomes {
		fmt.Fprintf(&b, "linger_closes_total{listener=%q,outcome=%q} %d\n", "public", o, counts[o])
	}
	return b.String()
}

func TestCollectorCountsKnownCloses(t *testing.T) {
	m := lingerprom.NewCollector(lingerprom.Opts{ConstLabels: prometheus.Labels{"listener": "public"}})
	closes := make(chan linger.CloseInfo, 8)
	ln := listen(t, linger.Config{OnClose: m.OnClose(func(ci linger.CloseInfo) { closes <- ci })})
	m.Watch(ln)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(m))
	url := serveMetrics(t, reg)

	// A clean close, one that a request crosses on the wire (the request's
	// 14 bytes are discarded), and one connection still open.
	client, srv := pair(t, ln)
	assert.Equal(t, linger.Clean, closeWith(t, client, srv, "", closes).Outcome, "the chained OnClose saw it")
	client, srv = pair(t, ln)
	assert.Equal(t, linger.Crossed, closeWith(t, client, srv, "GET / HTTP/1.1", closes).Outcome)
	pair(t, ln)

	err := testutil.ScrapeAndCompare(url, strings.NewReader(`
# HELP linger_accepted_connections_total Connections taken from the kernel's accept queue (see linger.Stats.Accepted).
# TYPE linger_accepted_connections_total counter
linger_accepted_connections_total{listener="public"} 3
# HELP linger_open_connections Accepted connections not yet closed by their owner.
# TYPE linger_open_connections gauge
linger_open_connections{listener="public"} 1
# HELP linger_lingering_connections Connections closed by their owner whose lingering close is under way.
# TYPE linger_lingering_connections gauge
linger_lingering_connections{listener="public"} 0
# HELP linger_discarded_bytes_total Bytes read and dropped by lingering closes.
# TYPE linger_discarded_bytes_total counter
linger_discarded_bytes_total{listener="public"} 14
`+closesText(map[linger.Outcome]int{linger.Clean: 1, linger.Crossed: 1})),
		"linger_accepted_connections_total", "linger_open_connections", "linger_lingering_connections",
		"linger_discarded_bytes_total", "linger_closes_total")
	assert.NoError(t, err)

	// Both closes fed both histograms.
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, name := range []string{"linger_close_duration_seconds", "linger_close_idle_seconds"} {
		h := histogram(t, families, name, "public")
		assert.EqualValues(t, 2, h.GetSampleCount(), name)
		assert.Positive(t, h.GetSampleSum(), name)
	}
}

// histogram finds the histogram name of listener in families.
func histogram(t *testing.T, families []*dto.MetricFamily, name, listener string) *dto.Histogram {
	t.Helper()
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "listener" && l.GetValue() == listener {
					return m.GetHistogram()
				}
			}
		}
	}
	t.Fatalf("no %s{listener=%q}", name, listener)
	return nil
}

func TestCollectorsForSeveralListenersLintClean(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, name := range []string{"public", "admin"} {
		m := lingerprom.NewCollector(lingerprom.Opts{ConstLabels: prometheus.Labels{"listener": name}})
		closes := make(chan linger.CloseInfo, 1)
		ln := listen(t, linger.Config{OnClose: m.OnClose(func(ci linger.CloseInfo) { closes <- ci })})
		m.Watch(ln)
		require.NoError(t, reg.Register(m), "a second collector with other ConstLabels registers")
		client, srv := pair(t, ln)
		closeWith(t, client, srv, "", closes)

		problems, err := testutil.CollectAndLint(m)
		require.NoError(t, err)
		assert.Empty(t, problems, "promlint")
	}
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems, "promlint over both")

	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
		perListener := map[string][]string{}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			perListener[labels["listener"]] = append(perListener[labels["listener"]], labels["outcome"])
		}
		assert.Len(t, perListener, 2, "%s: one series set per listener", f.GetName())
		if f.GetName() == "linger_closes_total" {
			var want []string
			for o := range linger.NumOutcomes {
				want = append(want, o.String())
			}
			slices.Sort(want)
			for l, got := range perListener {
				slices.Sort(got)
				assert.Equal(t, want, got, "listener %s: every outcome, rescued too", l)
			}
		}
	}
	assert.ElementsMatch(t, []string{
		"linger_accepted_connections_total", "linger_closes_total", "linger_open_connections",
		"linger_lingering_connections", "linger_discarded_bytes_total",
		"linger_close_duration_seconds", "linger_close_idle_seconds",
	}, names)
}

func TestCollectorShowsOnlyWhatIsConnected(t *testing.T) {
	m := lingerprom.NewCollector(lingerprom.Opts{})
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(m))
	count := func() int {
		families, err := reg.Gather()
		require.NoError(t, err)
		return len(families)
	}
	assert.Zero(t, count(), "no listener, no OnClose: no data, rather than zeros that read as all is well")
	onClose := m.OnClose(nil)
	assert.Equal(t, 2, count(), "OnClose wired: the histograms, empty")
	ln := listen(t, linger.Config{OnClose: onClose})
	m.Watch(ln)
	assert.Equal(t, 7, count(), "and the listener's counters and gauges")
}

func TestOnCloseFillsTheBuckets(t *testing.T) {
	m := lingerprom.NewCollector(lingerprom.Opts{
		ConstLabels:  prometheus.Labels{"listener": "public"},
		CloseBuckets: []float64{0.001, 0.5, 2.5},
		IdleBuckets:  []float64{1, 60, 90},
	})
	onClose := m.OnClose(nil)
	onClose(linger.CloseInfo{Outcome: linger.Clean, Linger: 250 * time.Millisecond, Idle: 500 * time.Millisecond})
	onClose(linger.CloseInfo{Outcome: linger.Crossed, Linger: 2500 * time.Millisecond, Idle: 64 * time.Second})
	err := testutil.CollectAndCompare(m, strings.NewReader(`
# HELP linger_close_duration_seconds How long closes took, from the owner's Close until the socket was closed (the lingering close).
# TYPE linger_close_duration_seconds histogram
linger_close_duration_seconds_bucket{listener="public",le="0.001"} 0
linger_close_duration_seconds_bucket{listener="public",le="0.5"} 1
linger_close_duration_seconds_bucket{listener="public",le="2.5"} 2
linger_close_duration_seconds_bucket{listener="public",le="+Inf"} 2
linger_close_duration_seconds_sum{listener="public"} 2.75
linger_close_duration_seconds_count{listener="public"} 2
# HELP linger_close_idle_seconds How long connections had been idle (no byte read or written) when their owner closed them.
# TYPE linger_close_idle_seconds histogram
linger_close_idle_seconds_bucket{listener="public",le="1"} 1
linger_close_idle_seconds_bucket{listener="public",le="60"} 1
linger_close_idle_seconds_bucket{listener="public",le="90"} 2
linger_close_idle_seconds_bucket{listener="public",le="+Inf"} 2
linger_close_idle_seconds_sum{listener="public"} 64.5
linger_close_idle_seconds_count{listener="public"} 2
`))
	assert.NoError(t, err)
}

// The default buckets set a lingering close that timed out (the default
// bound, 2 s) apart from one the peer answered.
func TestDefaultBucketsSeparateLingerTimeouts(t *testing.T) {
	m := lingerprom.NewCollector(lingerprom.Opts{ConstLabels: prometheus.Labels{"listener": "public"}})
	m.OnClose(nil)(linger.CloseInfo{Outcome: linger.Timeout, Linger: linger.DefaultLingerTimeout + 3*time.Millisecond})
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(m))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, b := range histogram(t, families, "linger_close_duration_seconds", "public").GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 2.5 {
			want = 1
		}
		assert.Equal(t, want, b.GetCumulativeCount(), "bucket le=%v", b.GetUpperBound())
	}
}
