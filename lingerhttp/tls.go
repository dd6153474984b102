package lingerhttp

// TLS and HTTP/2: linger goes under TLS, so that net/http sees the
// *tls.Conn. net/http runs its TLS path (the handshake, ALPN, HTTP/2,
// Request.TLS) only for a *tls.Conn (net/http/server.go, conn.serve): over
// a *linger.Conn wrapping one it would answer HTTP/1.1 inside a connection
// the client negotiated as h2.

import (
	"crypto/tls"
	"fmt"
	"net"
	"reflect"
	"time"

	"github.com/linger-go/linger"
)

// ListenAndServeTLS listens on the TCP network address addr and calls
// ServeTLS.
func (s *Server) ListenAndServeTLS(addr, certFile, keyFile string) error {
	lln, err := linger.Listen("tcp", addr, s.cfg.Listener)
	if err != nil {
		return err
	}
	s.tls.Store(true)
	return s.serveLinger(lln, func(lln net.Listener) error { return s.srv.ServeTLS(lln, certFile, keyFile) })
}

// ServeTLS serves TLS connections as [http.Server.ServeTLS] does, with
// linger under TLS: ln, the TCP listener, is wrapped with linger
// (Config.Listener), and http.Server.ServeTLS puts TLS on top, with the
// server's TLSConfig, certFile and keyFile (empty when TLSConfig has the
// certificates), HTTP/2 unless the server turns it off (Protocols in Go
// 1.24 and later, TLSNextProto, GODEBUG=http2server=0), and
// Request.TLS. It returns [http.ErrServerClosed] after Shutdown. Call
// Serve or ServeTLS once.
//
// HTTP/2 connections are retired and drained with GOAWAY (see the package
// documentation). HTTP/1 connections are retired as over TCP; rescue never
// applies to them, since the queued bytes are TLS records.
func (s *Server) ServeTLS(ln net.Listener, certFile, keyFile string) error {
	if err := checkNotTLS("ServeTLS", ln); err != nil {
		return err
	}
	s.tls.Store(true)
	return s.serve(ln, func(lln net.Listener) error { return s.srv.ServeTLS(lln, certFile, keyFile) })
}

// closeNotifyMax is the most a TLS client's close_notify takes on the
// wire: one alert record, 24 bytes in TLS 1.3 (5 of header, 2 of alert, 1
// of content type, 16 of AEAD tag), 31 in TLS 1.2 with AES-GCM (8 more of
// explicit nonce). Clients answer our close_notify with theirs (Go's
// Transport does when it closes the connection), after our close: linger
// counts it as crossed. On HTTP/2 it can also come just before our close
// and stay unread, as net/http's HTTP/2 server stops reading once it has
// decided to close: pending (the tls-idle-race benchmark's pending closes
// discarded 24 bytes each). No request fits: the shortest HTTP/1 request
// line with its blank line is 18 bytes, 40 with TLS 1.3's overhead; an
// HTTP/2 HEADERS frame alone has 9 bytes of header.
const closeNotifyMax = 32

// checkNotTLS refuses a listener made by crypto/tls, whose type is
// unexported: its package is the only sign.
func checkNotTLS(method string, ln net.Listener) error {
	t := reflect.TypeOf(ln)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.PkgPath() != "crypto/tls" {
		return nil
	}
	return fmt.Errorf("lingerhttp: %s was given a TLS listener (%T): linger would wrap the *tls.Conn, and net/http, seeing *linger.Conn, would serve no HTTP/2 (h2 clients fail), set no Request.TLS and see no client certificate; give ServeTLS the TCP listener instead, with the certificate in the server's TLSConfig or in certFile and keyFile", method, ln)
}

// negotiatedHTTP2 reports whether c is a TLS connection whose ALPN chose
// h2. Called once the handshake is done (from StateActive on).
func negotiatedHTTP2(c net.Conn) bool {
	cs, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	return ok && cs.ConnectionState().NegotiatedProtocol == "h2"
}

// http2IdleTimeout is the idle time after which net/http's HTTP/2 server
// sends GOAWAY: RetireAfter, as net/http would use the IdleTimeout, but at
// most CloseIdleAfter, so that no HTTP/2 connection stays open forever
// where HTTP/1 ones would be closed. A GOAWAY on an idle connection races
// no request: one the client sent meanwhile has a stream above the
// GOAWAY's last stream, which the server ignores and the client retries
// on a new connection (RFC 9113 §6.8).
func http2IdleTimeout(cfg Config) time.Duration {
	if cfg.RetireAfter > 0 && cfg.RetireAfter < cfg.CloseIdleAfter {
		return cfg.RetireAfter
	}
	return cfg.CloseIdleAfter
}
