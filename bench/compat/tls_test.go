package compat_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tlsConfigs returns a server config with a fresh self-signed certificate
// and a client config that trusts it.
func tlsConfigs(t *testing.T) (srv, client *tls.Config) {
	t.Helper()
	cert, pool, err := selfSigned()
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{cert}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// TestTLSCloseNotify: tls.NewListener(linger.Wrap(ln)), the order
// crypto/tls documents (TLS over a net.Listener). The server's
// tls.Conn.Close sends close_notify, then closes the *linger.Conn, which
// lingers. The client's TLS read ends in io.EOF, which crypto/tls returns
// only for a close_notify (a bare FIN is io.ErrUnexpectedEOF), and the TCP
// stream under it ends in a FIN, even when the client's request was left
// unread. The raw control shows that close resetting the stream.
func TestTLSCloseNotify(t *testing.T) {
	// run serves one connection through inner and returns how the
	// client's TLS read and then its TCP read ended.
	run := func(t *testing.T, inner net.Listener, unread bool) (tlsErr, tcpErr error) {
		srvCfg, cliCfg := tlsConfigs(t)
		ln := tls.NewListener(inner, srvCfg)
		rawClient := dial(t, ln)
		client := tls.Client(rawClient, cliCfg)
		srv := accept(t, ln).(*tls.Conn)
		hs := make(chan error, 1)
		go func() { hs <- client.Handshake() }()
		require.NoError(t, srv.Handshake())
		require.NoError(t, <-hs)

		if unread {
			_, err := client.Write(request)
			require.NoError(t, err)
			_, err = io.ReadFull(srv, make([]byte, 1)) // the rest stays unread
			require.NoError(t, err)
		}
		_, err := srv.Write([]byte("bye"))
		require.NoError(t, err)
		require.NoError(t, srv.Close())

		got, tlsErr := io.ReadAll(client)
		assert.Equal(t, "bye", string(got))
		tcpErr = readEnd(rawClient)
		rawClient.Close()
		return tlsErr, tcpErr
	}

	t.Run("raw/unread", func(t *testing.T) {
		tlsErr, tcpErr := run(t, testnet.Listen(t), true)
		assert.NoError(t, tlsErr, "close_notify arrived before the reset")
		assert.True(t, testnet.IsReset(tcpErr), "control: the raw close resets, got %v", tcpErr)
	})
	for _, unread := range []bool{false, true} {
		name := map[bool]string{false: "linger/idle", true: "linger/unread"}[unread]
		t.Run(name, func(t *testing.T) {
			ls := wrapLinger(t, testnet.Listen(t), linger.Config{})
			tlsErr, tcpErr := run(t, ls, unread)
			assert.NoError(t, tlsErr, "client must read close_notify, not a reset or bare FIN")
			assert.NoError(t, tcpErr, "then the TCP stream ends in a FIN, not a reset")
			ci := ls.Next(t)
			if unread {
				assert.Equal(t, linger.Pending, ci.Outcome)
				assert.Positive(t, ci.Discarded)
			} else {
				assert.Equal(t, linger.Clean, ci.Outcome)
			}
		})
	}
}

// TestTLSNetConnChain: the server's tls.Conn.NetConn() is the
// *linger.Conn, whose NetConn() is the socket, so code that looks for the
// socket under TLS (for SyscallConn, or net/http's CloseWrite) finds it.
func TestTLSNetConnChain(t *testing.T) {
	srvCfg, _ := tlsConfigs(t)
	ln := tls.NewListener(wrapLinger(t, testnet.Listen(t), linger.Config{}), srvCfg)
	dial(t, ln)
	srv := accept(t, ln).(*tls.Conn)
	lc, ok := srv.NetConn().(*linger.Conn)
	require.True(t, ok, "tls.Conn.NetConn() is %T, want *linger.Conn", srv.NetConn())
	assert.IsType(t, (*net.TCPConn)(nil), lc.NetConn())
	_, err := lc.SyscallConn()
	assert.NoError(t, err)
}

// TestTLSFailedHandshakeGarbage: a client that sends no TLS at all (a
// plaintext HTTP request to the TLS port). The server's handshake fails
// after one record header and it closes with the rest unread: the raw
// control resets the client, linger lets it read EOF.
func TestTLSFailedHandshakeGarbage(t *testing.T) {
	garbage := bytes.Repeat([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 2500) // 65 kB
	run := func(t *testing.T, inner net.Listener) error {
		srvCfg, _ := tlsConfigs(t)
		ln := tls.NewListener(inner, srvCfg)
		client := dial(t, ln)
		_, err := client.Write(garbage)
		require.NoError(t, err)
		srv := accept(t, ln).(*tls.Conn)
		var rhe tls.RecordHeaderError
		require.ErrorAs(t, srv.Handshake(), &rhe, "the handshake fails on the first record")
		require.NoError(t, srv.Close())
		err = readEnd(client)
		client.Close()
		return err
	}
	t.Run("raw", func(t *testing.T) {
		err := run(t, testnet.Listen(t))
		assert.True(t, testnet.IsReset(err), "control: the raw close resets, got %v", err)
	})
	t.Run("linger", func(t *testing.T) {
		ls := wrapLinger(t, testnet.Listen(t), linger.Config{})
		assert.NoError(t, run(t, ls), "client must read EOF, not a reset")
		ci := ls.Next(t)
		assert.Equal(t, linger.Pending, ci.Outcome)
		assert.Positive(t, ci.Unread)
	})
}

// TestTLSClientCertRejected: the server requires a client certificate and
// the client has none. In TLS 1.3 the client's handshake completes before
// the server has checked its certificate, so the client sends its request;
// the server's handshake fails, it sends a certificate_required alert and
// closes with the request unread. Under linger the client reads the alert
// and then the TCP stream ends in a FIN, not a reset.
func TestTLSClientCertRejected(t *testing.T) {
	srvCfg, cliCfg := tlsConfigs(t)
	srvCfg.ClientAuth = tls.RequireAndVerifyClientCert
	srvCfg.ClientCAs = cliCfg.RootCAs
	srvCfg.MinVersion = tls.VersionTLS13

	ls := wrapLinger(t, testnet.Listen(t), linger.Config{})
	ln := tls.NewListener(ls, srvCfg)
	rawClient := dial(t, ln)
	client := tls.Client(rawClient, cliCfg)
	srv := accept(t, ln).(*tls.Conn)
	done := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		srv.Close()
		done <- err
	}()
	require.NoError(t, client.Handshake(), "TLS 1.3: the client's side completes first")
	_, err := client.Write(request)
	require.NoError(t, err)
	require.ErrorContains(t, <-done, "certificate", "the server rejects the missing certificate")

	_, err = client.Read(make([]byte, 1))
	require.Error(t, err)
	assert.ErrorContains(t, err, "remote error: tls: certificate required", "client reads the server's alert")
	assert.False(t, testnet.IsReset(err))
	assert.NoError(t, readEnd(rawClient), "then the stream ends in a FIN, not a reset")
	rawClient.Close()

	ci := ls.Next(t)
	assert.Contains(t, []linger.Outcome{linger.Pending, linger.Crossed}, ci.Outcome, "the request met the close")
	assert.Positive(t, ci.Discarded)
}

// TestTLSLayering is issue 15 with net/http: TLS under linger,
// linger.Wrap(tls.NewListener(ln, cfg)), hides the *tls.Conn from the
// server, which then never runs its TLS path. A client that negotiated h2
// gets HTTP/1.1 answers and fails ("frame too large", or "client conn
// could not be established"); an HTTP/1.1 client works, but
// Request.TLS is nil. Accept reports the layering once. The right order,
// http.Server.ServeTLS over linger.Wrap(ln), serves h2 with Request.TLS.
func TestTLSLayering(t *testing.T) {
	serve := func(t *testing.T, wrongOrder bool) (url string, pool *x509.CertPool, logged func() string) {
		cert, certPool, err := selfSigned()
		require.NoError(t, err)
		var mu sync.Mutex
		var buf bytes.Buffer
		errLog := log.New(writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(b) }), "", 0)
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.Proto)
				if r.TLS != nil {
					io.WriteString(w, " with Request.TLS")
				}
			}),
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
			ErrorLog:  log.New(io.Discard, "", 0),
		}
		raw := testnet.Listen(t)
		done := make(chan struct{})
		if wrongOrder {
			ls := wrapLinger(t, tls.NewListener(raw, srv.TLSConfig), linger.Config{ErrorLog: errLog})
			go func() { defer close(done); srv.Serve(ls) }()
		} else {
			ls := wrapLinger(t, raw, linger.Config{ErrorLog: errLog})
			go func() { defer close(done); srv.ServeTLS(ls, "", "") }()
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			<-done
		})
		return "https://" + raw.Addr().String() + "/", certPool, func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
	}
	get := func(t *testing.T, url string, pool *x509.CertPool, h2 bool) (string, error) {
		cfg := &tls.Config{RootCAs: pool}
		if !h2 {
			cfg.NextProtos = []string{"http/1.1"}
		}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	t.Run("linger over TLS", func(t *testing.T) {
		url, pool, logged := serve(t, true)
		_, err := get(t, url, pool, true)
		require.Error(t, err, "an h2 client gets HTTP/1.1 answers")
		assert.Contains(t, err.Error(), "http2", "frame too large, or no connection, as the answer races the client's preface")
		body, err := get(t, url, pool, false)
		require.NoError(t, err)
		assert.Equal(t, "HTTP/1.1", body, "HTTP/1.1 works, without Request.TLS")
		assert.Equal(t, 1, strings.Count(logged(), "a TLS connection"), "reported once: %s", logged())
	})
	t.Run("TLS over linger", func(t *testing.T) {
		url, pool, logged := serve(t, false)
		body, err := get(t, url, pool, true)
		require.NoError(t, err)
		assert.Equal(t, "HTTP/2.0 with Request.TLS", body)
		body, err = get(t, url, pool, false)
		require.NoError(t, err)
		assert.Equal(t, "HTTP/1.1 with Request.TLS", body)
		assert.Empty(t, logged())
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
