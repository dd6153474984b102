package main

// One probe connection: dialing (plain or TLS), hand-written HTTP/1.1
// requests, reading answers, and how a connection ended.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// How a connection ended, as the client sees it.
const (
	endFIN     = "FIN"     // the read returned EOF: the backend closed gracefully
	endRST     = "RST"     // ECONNRESET (or EPIPE on a write): the backend reset it
	endTimeout = "timeout" // our own deadline
	endOther   = "other"
)

// classify says how err ended a connection.
func classify(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return endRST
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return endFIN
	case errors.Is(err, os.ErrDeadlineExceeded):
		return endTimeout
	}
	return endOther
}

// conn is a client connection to the backend.
type conn struct {
	net.Conn              // what requests are written to: TCP, or TLS over it
	tcp      *net.TCPConn // the socket under it, for peerClosed
	br       *bufio.Reader
	tls      bool
	dialed   time.Duration // how long the TCP handshake took: about one round trip
}

// dial connects to the backend, with TLS for https.
func (p *prober) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: p.o.timeout}
	start := time.Now()
	nc, err := d.DialContext(ctx, "tcp", p.o.addr)
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, dialed: time.Since(start)}
	c.tcp, _ = nc.(*net.TCPConn)
	if p.o.target.Scheme == "https" {
		tc := tls.Client(nc, &tls.Config{
			ServerName:         p.o.target.Hostname(),
			InsecureSkipVerify: p.o.insecure,
			NextProtos:         []string{"http/1.1"},
		})
		hctx, cancel := context.WithTimeout(ctx, p.o.timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, err
		}
		c.Conn, c.tls = tc, true
	}
	c.br = bufio.NewReader(c.Conn)
	return c, nil
}

// request is a hand-written HTTP/1.1 request for path with the given body
// (none when nil); a request without a body is a GET, one with a body a POST.
func (p *prober) request(path string, body []byte) []byte {
	method := "GET"
	if body != nil {
		method = "POST"
	}
	var b strings.Builder
	// "Connection: keep-alive" is implied in HTTP/1.1, but Apache httpd
	// sends its "Keep-Alive: timeout=N, max=M" only to a client that says
	// it, as Node's agent and browsers do.
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lingerprobe\r\nAccept: */*\r\nConnection: keep-alive\r\n", method, path, p.o.target.Host)
	if body != nil {
		fmt.Fprintf(&b, "Content-Type: text/plain\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), body...)
}

// answer is what one response said about the connection.
type answer struct {
	status    int
	close     bool   // "Connection: close" (or HTTP/1.0 without keep-alive)
	keepAlive string // the Keep-Alive header, if any
	server    string
	poweredBy string
}

// exchange writes req, reads the whole response to method and returns it.
// On an error it says whether the request was written whole.
func (c *conn) exchange(req []byte, method string, timeout time.Duration) (answer, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(req); err != nil {
		// Read what the backend said anyway: a reset while we write may
		// follow an answer that is already here.
		if a, rerr := c.read(method); rerr == nil {
			return a, nil
		}
		return answer{}, err
	}
	return c.read(method)
}

// read reads one whole response to method.
func (c *conn) read(method string) (answer, error) {
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return answer{}, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return answer{}, err
	}
	return answer{
		status:    resp.StatusCode,
		close:     resp.Close,
		keepAlive: resp.Header.Get("Keep-Alive"),
		server:    resp.Header.Get("Server"),
		poweredBy: resp.Header.Get("X-Powered-By"),
	}, nil
}

// keepAliveTimeout is the timeout=N parameter of a Keep-Alive header
// (RFC 2068 §19.7.1.1; not in RFC 9112, but sent by Node, Apache and
// others), or 0.
func keepAliveTimeout(h string) time.Duration {
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "timeout") {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return 0
}

// looksClosed reports whether the backend has already closed or reset the
// connection, or sent bytes nobody asked for (a 408 before its close), as a
// balancer checks before it reuses an idle connection. Where the socket
// cannot be peeked at, it reports false.
func (c *conn) looksClosed() bool {
	if c.tcp == nil {
		return false
	}
	st := peek(c.tcp)
	if st == peekData && c.tls {
		// A TLS record: close_notify, or a message crypto/tls takes in
		// itself (a session ticket). A read of a millisecond tells: it
		// ends in EOF after close_notify, in our deadline otherwise
		// (crypto/tls keeps a timed-out read's state, and bufio hands the
		// error out once).
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := c.br.Peek(1)
		c.SetReadDeadline(time.Time{})
		return !errors.Is(err, os.ErrDeadlineExceeded)
	}
	return st != peekNothing
}

// peek results.
const (
	peekNothing = iota // open, nothing to read (or peeking is not supported)
	peekData           // bytes are waiting
	peekEOF            // the backend's FIN has arrived
	peekError          // a reset, or another error
)
