//go:build go1.24

package lingerhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Unencrypted HTTP/2 (prior knowledge, no ALPN to tell it) is known from
// its preface, before net/http's HTTP/2 server first reports it idle: no
// HTTP/1 idle deadline is put on it once frames arrive (it lives past
// IdleTimeout, up to HTTP/2's own, here RetireAfter), and the sweeper never
// cuts it without GOAWAY, even idle far past the cap.
func TestH2CIsNeverSwept(t *testing.T) {
	const idle = 200 * time.Millisecond
	srv := &http.Server{Handler: http.HandlerFunc(ok), Protocols: new(http.Protocols), IdleTimeout: idle}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	s := New(srv, Config{RetireAfter: time.Hour, CloseIdleAfter: 2 * time.Hour})
	clock := newFakeClock(s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-served
	}()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() (reused bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused },
		}))
		resp, err := cl.Do(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, 2, resp.ProtoMajor)
		return reused
	}
	get()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, st := range s.conns {
			return st.h2 && !st.idleSince.IsZero()
		}
		return false
	}, 5*time.Second, time.Millisecond, "the connection is idle and known as HTTP/2")
	<-time.After(2 * idle) // the scenario: idle past net/http's IdleTimeout
	assert.True(t, get(), "the same connection serves on past IdleTimeout")
	clock.advance(3 * time.Hour)
	s.closeIdle()
	assert.True(t, get(), "the same connection serves on past the cap")
	assert.EqualValues(t, 1, s.Listener().Stats().Accepted)
}
