package linger

import (
	"fmt"
	"log"
	"math"
	"time"
)

// Defaults used for the zero fields of [Config].
const (
	// DefaultLingerTimeout is Apache httpd's lingering-close bound
	// (MAX_SECS_TO_LINGER, 2 s). Go's net/http sleeps 500 ms and Envoy's
	// delayed_close_timeout is 1 s: both are shorter than one retransmission
	// of a lost FIN on a lossy long-haul path (the initial RTO is 1 s,
	// RFC 6298 §2.1). nginx waits longer (lingering_timeout 5 s,
	// lingering_time 30 s), but [Listener.Shutdown] waits for every
	// lingering close, so a deploy would wait that long for a silent peer.
	// A peer that answers our FIN at all answers within one RTT, so the
	// bound only matters for peers that never will.
	DefaultLingerTimeout = 2 * time.Second

	// DefaultLingerBytes bounds what one lingering close discards. It is
	// larger than what a well-behaved peer can have committed when we
	// close: Linux's largest autotuned send buffer (tcp_wmem max, 4 MiB)
	// plus our largest receive buffer (tcp_rmem max, 6 MiB by default), so
	// a client whose upload was rejected can finish the write it already
	// started and then read our response. A peer that streams past it is
	// hostile or broken and gets closed (outcome [Overflow]).
	DefaultLingerBytes = 16 << 20
)

// minMaxLingering is MaxLingering's default where each lingering close is
// a goroutine of its own (every platform but Linux), and its least default
// on Linux (see Config.MaxLingering).
const minMaxLingering = 4096

// Go's own keep-alive defaults for accepted connections (net.ListenConfig
// with KeepAlive zero), the defaults of Config's KeepAlive fields.
const (
	defaultKeepAliveIdle     = 15 * time.Second
	defaultKeepAliveInterval = 15 * time.Second
	defaultKeepAliveCount    = 9
)

// Config tunes a [Listener]. The zero Config is the recommended production
// setting; each field's comment gives its default and what zero means.
// Invalid values are rejected by [Listen] with an error naming the field
// and its value, and by [Wrap] with a panic carrying the same error.
type Config struct {
	// LingerTimeout bounds a lingering close: how long, from the owner's
	// Close, the connection waits for the peer's FIN after our half-close
	// before it is closed anyway (outcome [Timeout]). Zero means
	// [DefaultLingerTimeout]; negative is invalid.
	LingerTimeout time.Duration

	// LingerBytes bounds how many bytes a lingering close reads and
	// discards before it gives up (outcome [Overflow]). Zero means
	// [DefaultLingerBytes]; negative is invalid.
	LingerBytes int64

	// MaxLingering bounds how many connections of this listener linger at
	// once; a Close beyond it closes at once (outcome [Shed]) rather than
	// let a flood of closes exhaust descriptors or memory. A lingering
	// connection holds one file descriptor and its kernel socket, and on
	// Linux no read buffer (the drain discards with MSG_TRUNC). Negative
	// is invalid. Zero means:
	//   - on Linux, half the process's descriptor limit (the soft
	//     RLIMIT_NOFILE when the Listener is made, which Go raises to the
	//     hard limit at start-up), at least 4096 and at most 2^20 (Linux's
	//     largest descriptor limit by default, fs.nr_open): 10,000 with a
	//     limit of 20,000, 524,288 with the common 1,048,576. A Listener's
	//     lingering TCP closes past the first 64 share one epoll set and
	//     one goroutine there, about 500 bytes of Go memory each (measured
	//     with 9,000 lingering), so descriptors are the bound that
	//     matters, and half of them stay for open connections and
	//     everything else;
	//   - elsewhere, 4096: each lingering close is a goroutine of its own,
	//     about 3 KB of Go memory with its stack.
	MaxLingering int

	// KeepAliveIdle, KeepAliveInterval and KeepAliveCount set TCP
	// keep-alive on every accepted TCP connection (see
	// [net.KeepAliveConfig]). Zero means Go's defaults: 15 s, 15 s and 9
	// probes. A negative KeepAliveIdle turns keep-alive off, as in
	// [net.ListenConfig]; other negative values are invalid.
	KeepAliveIdle     time.Duration
	KeepAliveInterval time.Duration
	KeepAliveCount    int

	// UserTimeout sets TCP_USER_TIMEOUT (Linux only; RFC 5482): how long
	// sent data may stay unacknowledged before the kernel drops the
	// connection, so a vanished peer does not hold a connection, or a
	// lingering close's queued response, for the ~15 minutes of default
	// retransmissions. Zero means KeepAliveIdle + KeepAliveInterval ×
	// KeepAliveCount (the pairing recommended so the two mechanisms agree
	// on when a peer is dead; 150 s with the defaults), or no user timeout
	// when keep-alive is off. Negative leaves the kernel's default. The
	// kernel takes milliseconds in a C int: more than 2^31-1 ms (about
	// 24.8 days) is invalid.
	UserTimeout time.Duration

	// AbortiveClose makes every Close abortive: SO_LINGER 0, so the kernel
	// discards queued data and sends RST at once, with no lingering close
	// (outcome [Aborted]). This is the opposite of what linger is for; it
	// exists for servers that must free resources at any price. Calling
	// [Conn.SetLinger](0) does the same for one connection.
	AbortiveClose bool

	// Rescue, if not nil, turns rescue on for [Conn.CloseIdle]: when a
	// server closes an idle connection from another goroutine while the
	// next request already waits in the socket, that request is handed to
	// the server's waiting Read instead of being lost to the close
	// (outcome [Rescued]). Close never rescues, and a connection is never
	// returned by Accept twice. A rescue needs the owner to have marked
	// the connection idle ([Conn.SetIdle]); see CloseIdle for every
	// condition. Package lingerhttp does both for net/http.
	//
	// Rescue is an extra check on the queued bytes, never the evidence: it
	// sees up to 8 KiB of them, without consuming them, and reports
	// whether they start a message the owner will read from scratch. Use
	// [HTTP1Request] for HTTP/1 servers. TLS records and the HTTP/2
	// preface do not pass it, so what a TLS client sends is never
	// rescued; a peer that writes a plaintext request line into its TLS
	// connection passes it, and the waiting TLS Read then rejects those
	// bytes as it would have without the close.
	Rescue func(head []byte) bool

	// OnClose, if not nil, is called once for each accepted connection when
	// its close has finished (after any lingering), from the goroutine that
	// finished it. On Linux that is, for every lingering TCP close, the
	// one goroutine that watches all of the Listener's lingering closes:
	// while OnClose runs, no other lingering close of the Listener sees
	// its peer's FIN or its deadline, so it must return quickly (count,
	// log, send on a buffered channel; never wait for I/O or for another
	// connection). It may close other connections.
	OnClose func(CloseInfo)

	// ErrorLog receives, one line each, what the Listener cannot do as
	// configured. If nil, they go to the log package's standard logger.
	// Each is reported once per Listener:
	//   - a socket option the kernel rejects: it is skipped, never fatal to
	//     Accept;
	//   - a wrapped listener whose connections cannot half-close: they close
	//     without lingering (outcome [Plain]); put other listener wrappers
	//     (x/net/netutil.LimitListener, go-proxyproto) above linger;
	//   - a wrapped listener that returns TLS connections: the server above
	//     sees *linger.Conn, not the *tls.Conn, so net/http serves no HTTP/2
	//     (clients that negotiated h2 fail), sets no Request.TLS and sees no
	//     client certificate, and the lingering close waits for the peer's
	//     close_notify rather than its FIN. Put TLS above linger:
	//     tls.NewListener(linger.Wrap(tcpListener, cfg), tlsConfig),
	//     [net/http.Server.ServeTLS] over the Listener, or lingerhttp's
	//     ServeTLS;
	//   - an MPTCP listener, at [Wrap], and the handshake stop it refuses,
	//     at Close (see [Listener.Close]);
	//   - a lingering close the kernel refuses to watch (Linux; it is
	//     closed at once, outcome [Shed]).
	ErrorLog *log.Logger
}

// maxDefaultLingering caps the default MaxLingering where the descriptor
// limit is huge: Linux's largest possible RLIMIT_NOFILE by default
// (fs.nr_open, 2^20).
const maxDefaultLingering = 1 << 20

// maxUserTimeout is the largest TCP_USER_TIMEOUT, a C int of milliseconds.
const maxUserTimeout = math.MaxInt32 * time.Millisecond

// Validate reports the first invalid field of c by name, or nil. [Listen]
// returns the same error, and [Wrap] panics with it; a package that embeds
// a Config in its own, as lingerhttp does, checks it when it is given.
func (c Config) Validate() error { return c.validate() }

// validate reports the first invalid field by name, with its value. What
// a valid value is, and what zero means, is in each field's doc comment.
func (c *Config) validate() error {
	switch {
	case c.LingerTimeout < 0:
		return fmt.Errorf("linger: Config.LingerTimeout is negative (%v)", c.LingerTimeout)
	case c.LingerBytes < 0:
		return fmt.Errorf("linger: Config.LingerBytes is negative (%d)", c.LingerBytes)
	case c.MaxLingering < 0:
		return fmt.Errorf("linger: Config.MaxLingering is negative (%d)", c.MaxLingering)
	case c.KeepAliveInterval < 0:
		return fmt.Errorf("linger: Config.KeepAliveInterval is negative (%v)", c.KeepAliveInterval)
	case c.KeepAliveCount < 0:
		return fmt.Errorf("linger: Config.KeepAliveCount is negative (%d)", c.KeepAliveCount)
	case c.UserTimeout > maxUserTimeout:
		return fmt.Errorf("linger: Config.UserTimeout is too large (%v)", c.UserTimeout)
	}
	return nil
}

// withDefaults returns c with its zero fields replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.LingerTimeout == 0 {
		c.LingerTimeout = DefaultLingerTimeout
	}
	if c.LingerBytes == 0 {
		c.LingerBytes = DefaultLingerBytes
	}
	if c.MaxLingering == 0 {
		c.MaxLingering = defaultMaxLingering()
	}
	if c.KeepAliveIdle == 0 {
		c.KeepAliveIdle = defaultKeepAliveIdle
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = defaultKeepAliveInterval
	}
	if c.KeepAliveCount == 0 {
		c.KeepAliveCount = defaultKeepAliveCount
	}
	if c.UserTimeout == 0 {
		if c.KeepAliveIdle > 0 {
			c.UserTimeout = c.KeepAliveIdle + c.KeepAliveInterval*time.Duration(c.KeepAliveCount)
		} else {
			c.UserTimeout = -1
		}
	}
	return c
}

// socketOptions are the keep-alive and TCP_USER_TIMEOUT options Accept
// gives a TCP connection, in the kernel's units: keep-alive's seconds
// rounded up, as [net.TCPConn.SetKeepAliveConfig] rounds them, and
// TCP_USER_TIMEOUT's milliseconds (userTimeout < 0: left alone).
type socketOptions struct {
	keepAlive             bool
	idle, interval, count int
	userTimeout           int
}

// socketOptions returns the options of c, with its defaults applied.
func (c *Config) socketOptions() socketOptions {
	o := socketOptions{userTimeout: -1}
	if c.KeepAliveIdle > 0 {
		o.keepAlive = true
		o.idle = int((c.KeepAliveIdle + time.Second - 1) / time.Second)
		o.interval = int((c.KeepAliveInterval + time.Second - 1) / time.Second)
		o.count = c.KeepAliveCount
	}
	if c.UserTimeout > 0 {
		o.userTimeout = int(c.UserTimeout.Milliseconds())
	}
	return o
}
