package main

// The TLS scenarios: the idle race with Go's HTTP/2 client, the backend
// terminating TLS itself (http.Server.ServeTLS over the variant's
// listener, lingerhttp's ServeTLS).

import (
	"bytes"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"github.com/linger-go/linger/internal/testnet"
)

// backendTLS is the backends' TLS configuration: a self-signed
// certificate, made once per process. Clients skip verification; what is
// measured is how connections end, not who the backend is.
var backendTLS = sync.OnceValue(func() *tls.Config {
	cert, _, err := testnet.Certificate("lingerbench backend", net.ParseIP(backendIP))
	if err != nil {
		panic(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
})

// tlsIdleRace is idle-race over TLS with Go's HTTP/2 client: one
// connection per client, the next request sent at the server's idle
// timeout ± jitter. net/http's HTTP/2 server ends an idle connection with
// GOAWAY, so a request that crosses it was not taken and is retried on a
// new connection (RFC 9113 §6.8): the requests are POSTs Go's client can
// replay (GetBody set), as browsers and proxies replay them. The row
// counts those retries, and the backend's RSTs.
func (d *driver) tlsIdleRace(s *scenario) error {
	scn := s.name
	body := bytes.Repeat([]byte("p"), 64)
	return d.alternate(d.sz.idleRounds, s.backend, func(v variant) error {
		return d.run(scn, s.backend, v, func(addrs []string) error {
			var t tally
			var dials countingDialer
			url := "https://" + addrs[0] + "/"
			deadline := time.Now().Add(d.sz.tlsIdleFor)
			maxPerClient := int(d.sz.tlsIdleFor/idleRaceTimeout) + 1
			parallel(d.ctx, d.sz.idleClients, d.sz.idleClients, func(int) {
				tr := &http.Transport{
					DialContext:       dials.DialContext,
					TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
					ForceAttemptHTTP2: true,
					MaxConnsPerHost:   1,
				}
				// The client closes first, so the backend's counters
				// see the scenario's closes, not the run's end.
				defer tr.CloseIdleConnections()
				cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
				for i := 0; i < maxPerClient && time.Now().Before(deadline) && d.ctx.Err() == nil; i++ {
					if i > 0 {
						jitter := time.Duration(rand.Int64N(int64(2*idleRaceJitter))) - idleRaceJitter
						sleepCtx(d.ctx, idleRaceTimeout+jitter)
					}
					conns := 0
					ctx := httptrace.WithClientTrace(d.ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }})
					req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
					t.add("requests", 1)
					out, proto := doRequestProto(cl, req)
					t.add(out, 1)
					if out == outOK && proto != 2 {
						t.add("not HTTP/2", 1)
					}
					if conns > 1 {
						t.add("client retries", 1)
					}
				}
			})
			r := d.row(scn, v.name)
			r.Requests += t.get("requests")
			r.OK += t.get(outOK)
			r.EOF += t.get(outEOF)
			r.Reset += t.get(outReset)
			r.Other += t.get(outOther) + t.get("502")
			r.Extra["dials"] += float64(dials.n.Load())
			for _, k := range []string{"client retries", "not HTTP/2"} {
				if n := t.get(k); n > 0 {
					r.Extra[k] += float64(n)
				}
			}
			return nil
		})
	})
}

// doRequestProto is doRequest that also returns the response's protocol
// major version.
func doRequestProto(cl *http.Client, req *http.Request) (string, int) {
	resp, err := cl.Do(req)
	if err != nil {
		return classify(err), 0
	}
	return readResponse(resp), resp.ProtoMajor
}
