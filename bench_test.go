package linger_test

// Each benchmark runs behind a plain listener ("raw") and behind
// linger.Wrap ("linger") in one run, so the cost of the wrapper reads off
// as the ratio of the two lines:
//
//	go test -run '^$' -bench . -benchtime=2000x

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var benchModes = []struct {
	name string
	wrap bool
}{{"raw", false}, {"linger", true}}

// benchListen listens on 127.0.0.1, wrapped or not. At cleanup a wrapped
// listener is shut down, which waits for every lingering close.
func benchListen(tb testing.TB, wrap bool) net.Listener {
	tb.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	tb.Cleanup(func() { raw.Close() })
	if !wrap {
		return raw
	}
	ln := linger.Wrap(raw, linger.Config{})
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(tb, ln.Shutdown(ctx), "Shutdown")
	})
	return ln
}

// benchPair returns an established loopback connection: srv accepted from
// a listener wrapped or not, cli the client's end.
func benchPair(tb testing.TB, wrap bool) (srv, cli net.Conn) {
	tb.Helper()
	ln := benchListen(tb, wrap)
	cli, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(tb, err)
	tb.Cleanup(func() { cli.Close() })
	srv, err = ln.Accept()
	require.NoError(tb, err)
	tb.Cleanup(func() { srv.Close() })
	if wrap {
		require.IsType(tb, (*linger.Conn)(nil), srv)
	}
	return srv, cli
}

// BenchmarkAcceptClose is a connection's whole life with nothing said: the
// client dials, the server accepts and closes, the client reads EOF and
// closes. Behind linger the close half-closes and waits for the client's
// FIN in the background.
func BenchmarkAcceptClose(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			ln := benchListen(b, m.wrap)
			served := make(chan struct{})
			go func() {
				defer close(served)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			addr := ln.Addr().String()
			var buf [1]byte
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := c.Read(buf[:]); n != 0 || err != io.EOF {
					b.Fatalf("client read %d, %v; want EOF", n, err)
				}
				c.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
			ln.Close()
			<-served
		})
	}
}

// BenchmarkHTTPKeepAlive is net/http request and response on one
// keep-alive connection, the path every byte of a busy server takes.
func BenchmarkHTTPKeepAlive(b *testing.B) {
	hello := []byte("hello, world\n")
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			ln := benchListen(b, m.wrap)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write(hello)
			})}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			client := &http.Client{Transport: tr}
			url := "http://" + ln.Addr().String() + "/"
			buf := make([]byte, 64)

			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.ReadFull(resp.Body, buf[:len(hello)])
				resp.Body.Close()
				if err != nil || n != len(hello) {
					b.Fatalf("body: %d bytes, %v", n, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")

			tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(b, srv.Shutdown(ctx))
			require.ErrorIs(b, <-served, http.ErrServerClosed)
		})
	}
}

// feed writes to c until it fails (it is closed); drain reads from c until
// it fails. Both run in the background until stop returns.
func feed(c net.Conn) (stop func()) {
	return background(c, func() error {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
	})
}

func drain(c net.Conn) (stop func()) {
	return background(c, func() error {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return err
			}
		}
	})
}

// background runs loop until stop closes c and waits for it.
func background(c net.Conn, loop func() error) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		loop()
	}()
	return func() {
		c.Close()
		wg.Wait()
	}
}

// BenchmarkConnRead reads 1 KiB at a time from an established connection
// that the client keeps full.
func BenchmarkConnRead(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			srv, cli := benchPair(b, m.wrap)
			stop := feed(cli)
			buf := make([]byte, 1024)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := io.ReadFull(srv, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			stop()
		})
	}
}

// BenchmarkConnWrite writes 1 KiB at a time to an established connection
// that the client keeps draining.
func BenchmarkConnWrite(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			srv, cli := benchPair(b, m.wrap)
			stop := drain(cli)
			buf := make([]byte, 1024)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := srv.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			srv.Close() // the client reads EOF, so the lingering close ends
			stop()
		})
	}
}

// TestReadWriteAllocs: the wrapper's Read and Write allocate nothing.
func TestReadWriteAllocs(t *testing.T) {
	srv, cli := benchPair(t, true)
	buf := make([]byte, 1024)

	stopFeed := feed(cli)
	reads := testing.AllocsPerRun(1000, func() {
		if _, err := srv.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	stopFeed()
	assert.Zero(t, reads, "allocations per Conn.Read")

	srv2, cli2 := benchPair(t, true)
	stopDrain := drain(cli2)
	writes := testing.AllocsPerRun(1000, func() {
		if _, err := srv2.Write(buf); err != nil {
			t.Fatal(err)
		}
	})
	srv2.Close()
	stopDrain()
	assert.Zero(t, writes, "allocations per Conn.Write")
}
