package lingerprom_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
	"github.com/linger-go/linger/lingerprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServerCollectorCountsRetiredAndLost(t *testing.T) {
	m := lingerprom.NewServerCollector(lingerprom.Opts{ConstLabels: prometheus.Labels{"server": "api"}})
	var advised atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})}
	ls := lingerhttp.New(srv, lingerhttp.Config{
		RetireAfter:    time.Nanosecond,        // every reused connection is retired
		CloseIdleAfter: 100 * time.Millisecond, // an idle connection is closed soon
		Linger:         linger.Config{OnClose: m.OnClose(nil)},
		OnAdvice:       func(lingerhttp.Advice) { advised.Add(1) },
	})
	m.Watch(ls)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(m))
	url := serveMetrics(t, reg)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- ls.Serve(ln) }()
	stopped := false
	shutdown := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, ls.Shutdown(ctx))
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	}
	t.Cleanup(shutdown)

	// A request crosses the server's close of an idle connection: lost.
	a := dialHTTP(t, ln.Addr().String())
	assert.False(t, a.get(t).Close)
	_, err = a.br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the idle connection is closed at CloseIdleAfter")
	const late = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	_, err = io.WriteString(a, late)
	require.NoError(t, err)
	a.Close()

	// A reused connection is retired: its response says Connection: close.
	b := dialHTTP(t, ln.Addr().String())
	assert.False(t, b.get(t).Close, "the first request is no reuse")
	assert.True(t, b.get(t).Close, "retired")
	_, err = b.br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	b.Close()

	shutdown() // every close has finished: the numbers are final
	adv := ls.Advice()
	require.EqualValues(t, 1, adv.Retired)
	require.EqualValues(t, 1, adv.Lost)
	g := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'g', -1, 64) }
	err = testutil.ScrapeAndCompare(url, strings.NewReader(fmt.Sprintf(`
# HELP lingerhttp_retired_connections_total Connections retired after more than RetireAfter idle: their next response carried "Connection: close".
# TYPE lingerhttp_retired_connections_total counter
lingerhttp_retired_connections_total{server="api"} 1
# HELP lingerhttp_lost_requests_total Requests that met a close: they crossed the server's FIN on the wire (outcome crossed) or were waiting unread and could not be rescued (outcome pending).
# TYPE lingerhttp_lost_requests_total counter
lingerhttp_lost_requests_total{server="api"} 1
# HELP lingerhttp_longest_reuse_gap_seconds The longest idle gap after which a peer sent another request on a connection.
# TYPE lingerhttp_longest_reuse_gap_seconds gauge
lingerhttp_longest_reuse_gap_seconds{server="api"} %s
# HELP lingerhttp_longest_lost_idle_seconds The longest idle time before a close that lost a request.
# TYPE lingerhttp_longest_lost_idle_seconds gauge
lingerhttp_longest_lost_idle_seconds{server="api"} %s
# HELP lingerhttp_suggested_idle_timeout_seconds The idle timeout that would have avoided the lost requests: longer than every gap seen, plus a margin.
# TYPE lingerhttp_suggested_idle_timeout_seconds gauge
lingerhttp_suggested_idle_timeout_seconds{server="api"} %s
# HELP linger_accepted_connections_total Connections taken from the kernel's accept queue (see linger.Stats.Accepted).
# TYPE linger_accepted_connections_total counter
linger_accepted_connections_total{server="api"} 2
# HELP linger_discarded_bytes_total Bytes read and dropped by lingering closes.
# TYPE linger_discarded_bytes_total counter
linger_discarded_bytes_total{server="api"} %d
`, g(adv.LongestReuse), g(adv.LongestLostIdle), g(adv.Suggested), len(late))),
		"lingerhttp_retired_connections_total", "lingerhttp_lost_requests_total", "lingerhttp_longest_reuse_gap_seconds",
		"lingerhttp_longest_lost_idle_seconds", "lingerhttp_suggested_idle_timeout_seconds",
		"linger_accepted_connections_total", "linger_discarded_bytes_total")
	assert.NoError(t, err)
	assert.GreaterOrEqual(t, adv.LongestLostIdle, 100*time.Millisecond, "lost after CloseIdleAfter idle")

	st := ls.Listener().Stats()
	assert.EqualValues(t, 1, st.Outcomes[linger.Crossed])
	assert.EqualValues(t, 1, st.Outcomes[linger.Clean])
	want := map[string]float64{}
	for o := range linger.NumOutcomes {
		want[o.String()] = float64(st.Outcomes[o])
	}
	assert.Equal(t, want, scrapedOutcomes(t, reg), "linger_closes_total is Stats.Outcomes")
	assert.EqualValues(t, 1, advised.Load(), "lingerhttp still learns from every close: OnAdvice once")
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems, "promlint")
}

// scrapedOutcomes returns linger_closes_total by outcome, as reg gathers it.
func scrapedOutcomes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "linger_closes_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}

func TestServerCollectorBeforeServe(t *testing.T) {
	m := lingerprom.NewServerCollector(lingerprom.Opts{})
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(m))
	families, err := reg.Gather()
	require.NoError(t, err)
	assert.Empty(t, families, "no server watched: no data")

	m.Watch(lingerhttp.New(&http.Server{}, lingerhttp.Config{}))
	families, err = reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	assert.ElementsMatch(t, []string{
		"lingerhttp_retired_connections_total", "lingerhttp_lost_requests_total", "lingerhttp_longest_reuse_gap_seconds",
		"lingerhttp_longest_lost_idle_seconds", "lingerhttp_suggested_idle_timeout_seconds",
	}, names, "before Serve: lingerhttp's own metrics, no listener yet")
}
