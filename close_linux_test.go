//go:build linux

package linger_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A listener closed while clients keep connecting, as a balancer that is
// not told of a deploy does: every client whose connect succeeded is
// served, the others are refused (their SYN got no answer, the retry found
// the port closed). Without Close's handshake stop, a connection that
// completes between Close's last accept and the close of the socket is
// reset with its request (inet_csk_listen_stop).
func TestCloseWhileClientsConnect(t *testing.T) {
	const (
		listeners  = 8   // closed at once, for more handshakes in flight
		dialers    = 8   // per listener
		maxDials   = 300 // per dialer: the loop ends even if Close never comes
		closeAfter = 100 // connections served before Close, per listener
	)
	var served, refused, reset, other atomic.Int64
	var wg sync.WaitGroup
	for range listeners {
		s := listen(t, linger.Config{})
		var n atomic.Int64
		closeOnce := sync.OnceFunc(func() { s.Close() })
		wg.Add(1)
		go func() { // the server: Accept until it fails, as net/http does
			defer wg.Done()
			for {
				c, err := s.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					buf := make([]byte, 5)
					if _, err := io.ReadFull(c, buf); err == nil {
						c.Write([]byte("pong\n"))
					}
				}()
			}
		}()
		for range dialers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range maxDials {
					c, err := net.DialTimeout("tcp", s.Addr().String(), 10*time.Second)
					if err != nil {
						if errors.Is(err, syscall.ECONNREFUSED) {
							refused.Add(1)
						} else {
							other.Add(1)
							t.Errorf("dial: %v", err)
						}
						return
					}
					c.Write([]byte("ping\n"))
					got, err := io.ReadAll(c)
					c.Close()
					switch {
					case testnet.IsReset(err):
						reset.Add(1)
					case err != nil || !bytes.Equal(got, []byte("pong\n")):
						other.Add(1)
						t.Errorf("client: got %q, %v", got, err)
					default:
						served.Add(1)
						if n.Add(1) == closeAfter {
							closeOnce()
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("served %d, refused %d, reset %d, other %d", served.Load(), refused.Load(), reset.Load(), other.Load())
	assert.Zero(t, reset.Load(), "connections reset with their request at the listener's close")
	assert.GreaterOrEqual(t, served.Load(), int64(listeners*closeAfter), "every listener served until its Close")
	assert.Equal(t, int64(listeners*dialers), refused.Load()+other.Load(), "every dialer ends refused once its listener is closed")
}

// isMPTCP reports whether ln's socket is MPTCP.
func isMPTCP(t *testing.T, ln net.Listener) bool {
	rc, err := ln.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	proto := 0
	rc.Control(func(fd uintptr) { proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) })
	return proto == unix.IPPROTO_MPTCP
}

// An MPTCP listener, which Go ≥ 1.24 creates by default, refuses the
// socket filter Close stops new handshakes with. Wrap says so at once, in
// one line, not first at Close (during a deploy); Close still reports the
// refusal. Listen makes plain TCP listeners, where Go would make MPTCP
// ones: nothing to report.
func TestMPTCPListener(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen func() (net.Listener, error)
	}{
		{"GODEBUG=multipathtcp=1", func() (net.Listener, error) {
			t.Setenv("GODEBUG", "multipathtcp=1") // what go 1.24+ in go.mod does
			return net.Listen("tcp", "127.0.0.1:0")
		}},
		{"SetMultipathTCP(true)", func() (net.Listener, error) {
			var lc net.ListenConfig
			lc.SetMultipathTCP(true)
			return lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tc.listen()
			require.NoError(t, err)
			if !isMPTCP(t, ln) {
				ln.Close()
				t.Skip("the kernel gave a plain TCP socket: no MPTCP here")
			}
			var logged bytes.Buffer
			l := linger.Wrap(ln, linger.Config{ErrorLog: log.New(&logged, "", 0)})
			atWrap := logged.String()
			assert.Contains(t, atWrap, "MPTCP", "Wrap reports the MPTCP listener")
			assert.Contains(t, atWrap, ln.Addr().String())
			assert.Equal(t, 1, strings.Count(atWrap, "\n"), "one line")
			require.NoError(t, l.Close())
			atClose := strings.TrimPrefix(logged.String(), atWrap)
			assert.Contains(t, atClose, "cannot stop new handshakes", "Close reports the refused filter")
			assert.Equal(t, 1, strings.Count(atClose, "\n"), "one line")
		})
	}
	t.Run("Listen", func(t *testing.T) {
		t.Setenv("GODEBUG", "multipathtcp=1")
		var logged bytes.Buffer
		l, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{ErrorLog: log.New(&logged, "", 0)})
		require.NoError(t, err)
		require.NoError(t, l.Close())
		assert.Empty(t, logged.String(), "Listen's listener is plain TCP: Close stops handshakes")
	})
}

// Close's handshake stop must not outlive it: the filter belongs to the
// socket, and a socket held elsewhere too (systemd socket activation, a
// restart's successor that calls Close instead of Handoff) would go on
// dropping every new connection there.
func TestCloseLeavesASharedSocketAccepting(t *testing.T) {
	tl, err := testnet.ListenTCP("127.0.0.1:0")
	require.NoError(t, err)
	f, err := tl.(*net.TCPListener).File() // the other holder
	require.NoError(t, err)
	other, err := net.FileListener(f)
	require.NoError(t, err)
	f.Close()
	defer other.Close()

	l := linger.Wrap(tl, linger.Config{})
	require.NoError(t, l.Close())

	accepted := make(chan error, 1)
	go func() {
		c, err := other.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	// A dropped SYN is retried after 1 s; 3 s gives the retry time to be
	// dropped too.
	c, err := net.DialTimeout("tcp", tl.Addr().String(), 3*time.Second)
	require.NoError(t, err, "the other holder's socket answers new connections")
	c.Close()
	require.NoError(t, <-accepted)
}
