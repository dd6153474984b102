package lingerhttp

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
)

// The response side: marking responses that end their connection.

// handler marks responses that end their connection. Whether to mark is
// decided when the response header is written, so a request that was in
// flight when Shutdown began is answered with "Connection: close" too.
func (s *Server) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		retire, drainKeeps := s.requestBegins(r)
		dw := &drainWriter{ResponseWriter: w, s: s, retire: retire, drainKeeps: drainKeeps}
		if r.ProtoMajor == 1 && !r.Close {
			dw.keepAlive = s.keepAlive
		}
		next.ServeHTTP(dw, r)
		dw.mark() // net/http writes the header of a handler that wrote nothing
		// A request without a body: net/http's background read ran
		// during the handler, and any socket read from now until the
		// next request is the next request's (a body left unread would
		// be read, and discarded, from now on instead).
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok && r.ProtoMajor == 1 && r.Body == http.NoBody {
			if hc := connOf(c); hc != nil {
				hc.served.Store(true)
			}
		}
	})
}

// drainWriter adds "Connection: close" to a response when it is written,
// if the connection is retired or the server is draining (but not on an
// HTTP/2 connection the drain keeps); otherwise, on HTTP/1, the idle
// bound the Server keeps, as "Keep-Alive: timeout=N" (RFC 2068 §19.7.1.1,
// as Apache httpd and Node.js send it): clients that honour it, Node's
// http.Agent and fetch among them, stop reusing a connection before it,
// so its reuse races nothing. It passes on Flush, Hijack and
// ReadFrom (sendfile), and unwraps for [http.ResponseController].
type drainWriter struct {
	http.ResponseWriter
	s          *Server
	retire     bool
	drainKeeps bool
	keepAlive  string // the Keep-Alive header of a response that keeps the connection
	marked     bool
}

func (w *drainWriter) mark() {
	if w.marked {
		return
	}
	w.marked = true
	// Header() only when there may be something to add: once a handler
	// has called it, net/http copies the header map when it writes the
	// header (response.WriteHeader, calledHeader).
	switch {
	case w.retire || (w.s.draining.Load() && !w.drainKeeps):
		w.Header().Set("Connection", "close")
	case w.keepAlive != "":
		h := w.Header()
		if h.Get("Keep-Alive") == "" && !strings.Contains(strings.ToLower(h.Get("Connection")), "close") {
			h.Set("Keep-Alive", w.keepAlive)
		}
	}
}

func (w *drainWriter) WriteHeader(code int) {
	if code >= 200 { // 1xx responses do not commit the header
		w.mark()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(b []byte) (int, error) {
	w.mark()
	return w.ResponseWriter.Write(b)
}

func (w *drainWriter) WriteString(s string) (int, error) {
	w.mark()
	return io.WriteString(w.ResponseWriter, s)
}

func (w *drainWriter) ReadFrom(r io.Reader) (int64, error) {
	w.mark()
	return io.Copy(w.ResponseWriter, r)
}

func (w *drainWriter) Flush() {
	w.mark()
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *drainWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestBegins reports whether r's response retires its connection, and
// whether a drain keeps its connection open: an HTTP/2 connection accepted
// during the drain serves on until the drain's GOAWAY (see Shutdown). An
// HTTP/2 request marks its connection HTTP/2, for unencrypted HTTP/2,
// which has no ALPN to tell it earlier.
func (s *Server) requestBegins(r *http.Request) (retire, drainKeeps bool) {
	c, ok := r.Context().Value(connKey{}).(net.Conn)
	if !ok {
		return false, false
	}
	hc := connOf(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked(c, hc)
	if st == nil {
		return false, false
	}
	if r.ProtoMajor == 2 && !st.h2 {
		st.h2 = true
		s.changed.Broadcast()
	}
	return st.retire, st.h2 && st.drainBorn
}
