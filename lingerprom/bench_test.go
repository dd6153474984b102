package lingerprom_test

// The collector's cost on the connection path, as a ratio to no collector
// in the same run:
//
//	go test -run '^$' -bench . -benchtime 5000x

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerprom"
	"github.com/prometheus/client_golang/prometheus"
)

// acceptAndClose serves ln by closing every connection it accepts, until
// ln is closed (at cleanup, before listen's Shutdown).
func acceptAndClose(b *testing.B, ln *linger.Listener) string {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// BenchmarkAcceptClose is a connection's whole life with nothing said
// (dial, accept, close, the client reads EOF and closes), on two loopback
// listeners in turn: a bare one, and one whose Collector is fed by OnClose,
// registered, and scraped every millisecond (Prometheus scrapes every 15 s
// by default), so the scrapes' atomic loads meet the connections' atomic
// adds as often as they can. Every iteration dials each listener once, in
// alternating order, so warm-up and drift hit both alike; collector/bare is
// the ratio of their times per connection.
func BenchmarkAcceptClose(b *testing.B) {
	bare := acceptAndClose(b, listen(b, linger.Config{}))
	m := lingerprom.NewCollector(lingerprom.Opts{ConstLabels: prometheus.Labels{"listener": "bench"}})
	wl := listen(b, linger.Config{OnClose: m.OnClose(nil)})
	m.Watch(wl)
	watched := acceptAndClose(b, wl)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	stop := make(chan struct{})
	scrapes := make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				scrapes <- n
				return
			case <-tick.C:
				if _, err := reg.Gather(); err != nil {
					panic(err)
				}
				n++
			}
		}
	}()

	var buf [1]byte
	conn := func(addr string) time.Duration {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := c.Read(buf[:]); n != 0 || err != io.EOF {
			b.Fatalf("client read %d, %v; want EOF", n, err)
		}
		c.Close()
		return time.Since(start)
	}
	var tBare, tWatched time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			tBare += conn(bare)
			tWatched += conn(watched)
		} else {
			tWatched += conn(watched)
			tBare += conn(bare)
		}
	}
	b.StopTimer()
	close(stop)
	n := <-scrapes

	b.ReportMetric(float64(tBare.Nanoseconds())/float64(b.N), "bare-ns/conn")
	b.ReportMetric(float64(tWatched.Nanoseconds())/float64(b.N), "collector-ns/conn")
	b.ReportMetric(float64(tWatched)/float64(tBare), "collector/bare")
	b.ReportMetric(float64(n), "scrapes")
}
