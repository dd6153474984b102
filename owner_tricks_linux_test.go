//go:build linux

package linger_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// What an owner can do to a connection through the public API, behind
// linger's back, on every linger path: the close still ends, once, within
// its bound, nothing panics, and Shutdown returns (issue 24).
func TestOwnerTricksThroughThePublicAPI(t *testing.T) {
	const bound = 300 * time.Millisecond
	tcp := func(c net.Conn) *net.TCPConn { return tcpConn(c.(*linger.Conn).NetConn()) }
	for _, trick := range []struct {
		name string
		// before runs before the owner's Close, after right after it;
		// either may return a cleanup.
		before, after func(t *testing.T, srv net.Conn) func()
	}{
		{name: "NetConn closed before Close", before: func(t *testing.T, srv net.Conn) func() {
			require.NoError(t, tcp(srv).Close())
			return nil
		}},
		{name: "NetConn closed under the linger", after: func(t *testing.T, srv net.Conn) func() {
			tcp(srv).Close()
			return nil
		}},
		{name: "a File held through the linger", before: func(t *testing.T, srv net.Conn) func() {
			f, err := tcp(srv).File()
			require.NoError(t, err)
			return func() { f.Close() }
		}},
		{name: "File taken, NetConn closed under the linger", before: func(t *testing.T, srv net.Conn) func() {
			f, err := tcp(srv).File()
			require.NoError(t, err)
			return func() { f.Close() }
		}, after: func(t *testing.T, srv net.Conn) func() {
			tcp(srv).Close()
			return nil
		}},
		{name: "shut down for writing through SyscallConn", before: func(t *testing.T, srv net.Conn) func() {
			rc, err := srv.(*linger.Conn).SyscallConn()
			require.NoError(t, err)
			require.NoError(t, rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_WR) }))
			return nil
		}},
		{name: "SO_LINGER 0 through SyscallConn", before: func(t *testing.T, srv net.Conn) func() {
			rc, err := srv.(*linger.Conn).SyscallConn()
			require.NoError(t, err)
			require.NoError(t, rc.Control(func(fd uintptr) {
				unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			}))
			return nil
		}},
	} {
		for _, p := range lingerPaths {
			t.Run(trick.name+"/"+p.name, func(t *testing.T) {
				s := p.listen(t, linger.Config{LingerTimeout: bound})
				for _, clientCloses := range []bool{true, false} {
					client, srv := pair(t, s)
					if trick.before != nil {
						if done := trick.before(t, srv); done != nil {
							defer done()
						}
					}
					srv.Close()
					if trick.after != nil {
						if done := trick.after(t, srv); done != nil {
							defer done()
						}
					}
					if clientCloses {
						client.SetReadDeadline(time.Now().Add(5 * time.Second))
						io.Copy(io.Discard, client) // FIN, RST or the deadline
						client.Close()
					}
					start := time.Now()
					ci := s.Next(t)
					assert.Less(t, time.Since(start), bound+2*time.Second, "%v: the close ended within its bound", ci.Outcome)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				require.NoError(t, s.Shutdown(ctx))
				st := s.Stats()
				assert.EqualValues(t, 2, st.Closed(), "each close reported once: %+v", st)
				assert.Zero(t, st.Open+st.Lingering)
			})
		}
	}
}
