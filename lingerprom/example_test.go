package lingerprom_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
	"github.com/linger-go/linger/lingerprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// A listener's metrics, served for Prometheus to scrape. The collector is
// made first, because its histograms are fed by the listener's OnClose.
func ExampleCollector() {
	m := lingerprom.NewCollector(lingerprom.Opts{ConstLabels: prometheus.Labels{"listener": "public"}})
	ln, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{OnClose: m.OnClose(nil)})
	if err != nil {
		log.Fatal(err)
	}
	m.Watch(ln)
	reg := prometheus.NewRegistry() // or prometheus.MustRegister(m)
	reg.MustRegister(m)
	// In a service: http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).
	metrics := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer metrics.Close()

	// The server closes an idle connection; the client's next request
	// crosses the close on the wire.
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	server.Close()
	client.Read(make([]byte, 1))
	fmt.Fprint(client, "GET / HTTP/1.1\r\n")
	client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ln.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}

	printMetrics(metrics.URL, `linger_closes_total{listener="public",outcome="c`, "linger_close_idle_seconds_count")
	// Output:
	// linger_close_idle_seconds_count{listener="public"} 1
	// linger_closes_total{listener="public",outcome="clean"} 0
	// linger_closes_total{listener="public",outcome="crossed"} 1
}

// Your own OnClose goes on working: the collector's calls it after it has
// observed the close.
func ExampleCollector_OnClose() {
	m := lingerprom.NewCollector(lingerprom.Opts{})
	cfg := linger.Config{
		OnClose: func(ci linger.CloseInfo) {
			if ci.Outcome == linger.Crossed || ci.Outcome == linger.Pending {
				log.Printf("a request was lost to a close after %v idle", ci.Idle)
			}
		},
	}
	cfg.OnClose = m.OnClose(cfg.OnClose)
	ln, err := linger.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	m.Watch(ln)
	prometheus.MustRegister(m)
	defer prometheus.Unregister(m)
	ln.Close()
	// Output:
}

// A lingerhttp server's metrics: its listener's and its own (retired
// connections, lost requests, the suggested idle timeout). The listener's
// appear once Serve has begun.
func ExampleServerCollector() {
	m := lingerprom.NewServerCollector(lingerprom.Opts{ConstLabels: prometheus.Labels{"server": "api"}})
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	srv := &http.Server{Handler: mux, IdleTimeout: time.Second}
	ls := lingerhttp.New(srv, lingerhttp.Config{
		Linger:    linger.Config{OnClose: m.OnClose(nil)},
		DrainIdle: 100 * time.Millisecond,
	})
	m.Watch(ls)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ls.Serve(ln) }()

	printMetrics("http://"+ln.Addr().String()+"/metrics", "lingerhttp_", "linger_accepted")
	http.DefaultClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ls.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	<-served
	// Output:
	// linger_accepted_connections_total{server="api"} 1
	// lingerhttp_longest_lost_idle_seconds{server="api"} 0
	// lingerhttp_longest_reuse_gap_seconds{server="api"} 0
	// lingerhttp_lost_requests_total{server="api"} 0
	// lingerhttp_retired_connections_total{server="api"} 0
	// lingerhttp_suggested_idle_timeout_seconds{server="api"} 0
}

// printMetrics scrapes url as Prometheus does and prints the samples whose
// line starts with one of prefixes.
func printMetrics(url string, prefixes ...string) {
	resp, err := http.Get(url)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		for _, p := range prefixes {
			if strings.HasPrefix(sc.Text(), p) {
				fmt.Println(sc.Text())
			}
		}
	}
	io.Copy(io.Discard, resp.Body)
}
