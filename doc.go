// Package linger is a [net.Listener] middleware whose connections close
// without TCP resets.
//
// # The problem
//
// When a server closes a connection while the peer's next bytes are unread
// in the socket, or arrive just after, Linux answers with a RST instead of a
// FIN. Behind a load balancer that is a 502 for a request the application
// never saw; for a client whose upload was rejected, the RST can destroy the
// response it had not read yet. Keep-alive servers hit it at every idle
// timeout that races the balancer's next request, and at every deploy.
//
// # The cure
//
// RFC 9112 §9.6 describes the lingering close that nginx and Apache
// implement: shut down the write side so the FIN follows the last response,
// read and discard until the peer's FIN or a bound, then close. [Wrap] puts
// it under any server:
//
//	ln, err := linger.Listen("tcp", ":8080", linger.Config{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	log.Fatal(http.Serve(ln, handler))
//
// [Conn.Close] returns at once and lingers in the background, bounded by
// [Config.LingerTimeout], [Config.LingerBytes] and [Config.MaxLingering].
// On Linux, while more than 64 of a Listener's TCP closes linger at once,
// the rest wait together, as nginx's do, in one epoll set watched by one
// goroutine, which exists only while something lingers there: such a
// lingering connection costs its descriptor and about 500 bytes, not a
// goroutine. The first 64, and elsewhere every close, linger in
// goroutines of their own, which cost the kernel less per close.
// Every close ends with an [Outcome], counted in [Listener.Stats] and
// reported to [Config.OnClose]: Pending and Crossed tell that a request met
// the close, which is the evidence for tuning idle timeouts.
// [Listener.Shutdown] waits for the lingering closes, so a deploy ends with
// FINs, not resets.
//
// Put linger directly on the TCP listener and everything else on top: for
// TLS, tls.NewListener(linger.Wrap(ln, cfg), tlsConfig), or
// [net/http.Server.ServeTLS] over the linger.Listener. The other order
// hides the *tls.Conn from the server (net/http then serves no HTTP/2 and
// sets no Request.TLS); Accept reports it once to [Config.ErrorLog].
//
// Accepted TCP connections also get keep-alive and, on Linux,
// TCP_USER_TIMEOUT (see [Config]). Connections that cannot half-close
// (pipes, say) are closed plainly (outcome [Plain]).
//
// [Listener.Close] does not reset the connections the kernel has completed
// but the server has not accepted yet: on Linux it takes them from the
// accept queue, and Accept returns them before it reports the listener
// closed.
//
// # Restarts in place
//
// A service restarted in place (one backend behind a proxy, a systemd
// unit) loses nothing only if its listening socket never closes: the old
// process passes it to its successor (github.com/cloudflare/tableflip), or
// systemd holds it (socket activation). Then the old process must stop
// accepting without taking the accept queue, which is the successor's:
// call [Listener.Handoff] instead of Close, then Shutdown. Package
// lingerhttp's Server.Handoff does that and drains the old process's
// connections with "Connection: close".
//
// # Rescue
//
// With [Config.Rescue] set (use [HTTP1Request] for net/http), a server that
// closes an idle connection with [Conn.CloseIdle] while the next request
// already waits in its socket has that request handed to its waiting Read
// instead, and serves it. Only on the server's own word: it must have
// marked the connection idle with [Conn.SetIdle], and Close never rescues,
// so the bytes a server leaves unread when it closes on purpose (a
// rejected request, an unread body, a hijacked stream) are never served.
// Package lingerhttp wires this up for net/http.
//
// # Invalid arguments
//
// A function that returns an error reports an invalid argument as that
// error ([Listen]). A constructor that returns no error ([Wrap]) panics at
// once with the same error value, as [regexp.MustCompile] does, rather
// than fail later with a nil dereference. Either way the error names the
// argument or the Config field and its value, in one short line
// ("linger: Config.LingerBytes is negative (-1)", "linger: Wrap of a nil
// listener"); what is valid is said in the doc comment of what it names.
//
// # What it cannot do
//
// A request that is already on the wire when our FIN leaves still fails: the
// lingering close turns the RST into a clean FIN, but the proxy in front
// sees the connection end without a response. Avoiding that race takes the
// protocol's help (an HTTP/1.1 "Connection: close" response) or a backend
// idle timeout longer than the balancer's. Package
// github.com/linger-go/linger/lingerhttp does both for net/http servers, and
// drains deploys.
package linger
