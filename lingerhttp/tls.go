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

// ListenAndServeTLS listens on the TCP network address srv.Addr (":https"
// if empty) and calls ServeTLS, as [http.Server.ListenAndServeTLS] does.
func (s *Server) ListenAndServeTLS(certFile, keyFile string) error {
	return s.listenAndServe(":https", func(lln *linger.Listener) error {
		return s.serveLinger(lln, s.tlsServer(certFile, keyFile))
	})
}

// ServeTLS serves TLS connections as [http.Server.ServeTLS] does, with
// linger under TLS: ln, the TCP listener, is wrapped with linger
// (Config.Linger), and http.Server.ServeTLS puts TLS on top, with the
// server's TLSConfig, certFile and keyFile (empty when TLSConfig has the
// certificates), HTTP/2 unless the server turns it off (Protocols in Go
// 1.24 and later, TLSNextProto, GODEBUG=http2server=0), and
// Request.TLS. It returns [http.ErrServerClosed] after Shutdown. Call
// Serve or ServeTLS once.
//
// HTTP/2 connections are retired and drained with GOAWAY (see the package
// documentation). HTTP/1 connections are retired as over TCP. Rescue
// hands back only bytes that start an HTTP/1 request line, so it never
// applies to a TLS connection's records; a peer that writes a plaintext
// request line into a TLS connection can pass that check, and the TLS
// layer then rejects the bytes exactly as it would have without the
// close.
func (s *Server) ServeTLS(ln net.Listener, certFile, keyFile string) error {
	if err := checkListener("ServeTLS", ln); err != nil {
		return err
	}
	return s.serve(ln, s.tlsServer(certFile, keyFile))
}

// tlsServer returns http.Server's ServeTLS as a Serve for serveLinger.
func (s *Server) tlsServer(certFile, keyFile string) func(net.Listener) error {
	return func(ln net.Listener) error { return s.srv.ServeTLS(ln, certFile, keyFile) }
}

// checkListener refuses a nil listener, a linger.Listener (Serve wraps
// the listener itself) and a listener made by crypto/tls, whose type is
// unexported: its package is the only sign. Under it, linger would wrap
// the *tls.Conn, and net/http, seeing no *tls.Conn, would serve no HTTP/2,
// set no Request.TLS and see no client certificate: ServeTLS takes the
// TCP listener instead.
func checkListener(method string, ln net.Listener) error {
	switch ln.(type) {
	case nil:
		return fmt.Errorf("lingerhttp: %s of a nil listener", method)
	case *linger.Listener:
		return fmt.Errorf("lingerhttp: %s of a *linger.Listener", method)
	}
	t := reflect.TypeOf(ln)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.PkgPath() != "crypto/tls" {
		return nil
	}
	return fmt.Errorf("lingerhttp: %s of a TLS listener (%T)", method, ln)
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
func (s *Server) http2IdleTimeout() time.Duration {
	if s.retireAfter > 0 && s.retireAfter < s.cfg.CloseIdleAfter {
		return s.retireAfter
	}
	return s.cfg.CloseIdleAfter
}
