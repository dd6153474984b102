package main

// The TLS scenarios: the idle race with Go's HTTP/2 client, the backend
// terminating TLS itself (http.Server.ServeTLS over the variant's
// listener, lingerhttp's ServeTLS).

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"

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
	body := bytes.Repeat([]byte("p"), 64)
	return d.idleRaceClients(s, idleRaceLoad{
		scheme: "https",
		dur:    d.sz.tlsIdleFor,
		transport: func(dial dialFunc) *http.Transport {
			return &http.Transport{
				DialContext:       dial,
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
				ForceAttemptHTTP2: true,
				MaxConnsPerHost:   1,
			}
		},
		send: func(cl *http.Client, url string, t *tally) {
			conns := 0
			ctx := httptrace.WithClientTrace(d.ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }})
			req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
			out, proto := doRequestProto(cl, req)
			t.add(out, 1)
			if out == outOK && proto != 2 {
				t.add("not HTTP/2", 1)
			}
			if conns > 1 {
				t.add("client retries", 1)
			}
		},
		notes: []string{"client retries", "not HTTP/2"},
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
