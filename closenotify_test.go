package linger_test

import (
	"crypto/tls"
	"io"
	"testing"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closePaths are the ways a close lingers: in a goroutine of its own (by
// default while few linger, and always for a connection some listener
// under linger wraps), and on Linux in the Listener's epoll set, by a dup
// or by Go's own descriptor (elsewhere every path is the goroutine's).
var closePaths = []closePath{
	{name: "default"},
	{name: "epoll set", prepare: linger.LingerInSet},
	{name: "Go's descriptor", prepare: linger.HandOverGoFD},
	{name: "goroutine (a wrapped conn)", wrapped: true},
}

// tlsPair dials s with TLS and handshakes, the server's crypto/tls over the
// accepted *linger.Conn, as ServeTLS does.
func tlsPair(t *testing.T, s *testnet.Server, client *tls.Config) (*tls.Conn, *tls.Conn) {
	t.Helper()
	raw, srvConn := pair(t, s)
	cert := selfSigned(t)
	srv := tls.Server(srvConn, &tls.Config{Certificates: []tls.Certificate{cert}})
	cli := tls.Client(raw, client)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	require.NoError(t, cli.Handshake())
	require.NoError(t, <-done)
	return cli, srv
}

// A TLS client answers our close with its close_notify alert, one record,
// before its FIN: that is the healthy end of a TLS connection, so the
// outcome is Clean, not Crossed; one that was already queued, unread, when
// we closed is Clean too, not Pending. A request after our close is still
// Crossed.
func TestTLSCloseNotifyIsClean(t *testing.T) {
	versions := []struct {
		name   string
		cfg    *tls.Config
		notify int64 // close_notify's size on the wire
	}{
		// 5 of header, 2 of alert, 1 of content type, 16 of AEAD tag.
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, 24},
		// 5 of header, 8 of explicit nonce, 2 of alert, 16 of tag.
		{"TLS 1.2 AES-GCM", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, 31},
		// 5 of header, 2 of alert, 16 of tag.
		{"TLS 1.2 ChaCha20", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, 23},
	}
	for _, p := range closePaths {
		t.Run(p.name, func(t *testing.T) {
			for _, v := range versions {
				cfg := v.cfg.Clone()
				cfg.InsecureSkipVerify = true
				t.Run(v.name+"/after our close", func(t *testing.T) {
					s := p.listen(t, linger.Config{})
					cli, srv := tlsPair(t, s, cfg)
					require.NoError(t, srv.Close()) // our close_notify, then the lingering close
					_, err := cli.Read(make([]byte, 1))
					require.ErrorIs(t, err, io.EOF, "the client reads our close_notify")
					require.NoError(t, cli.Close()) // its close_notify, then its FIN
					ci := s.Next(t)
					assert.Equal(t, linger.Clean, ci.Outcome)
					assert.Equal(t, v.notify, ci.Discarded, "the lingering close discarded the close_notify")
					assert.Zero(t, s.Stats().Outcomes[linger.Crossed])
				})
				t.Run(v.name+"/queued before our close", func(t *testing.T) {
					s := p.listen(t, linger.Config{})
					cli, srv := tlsPair(t, s, cfg)
					require.NoError(t, cli.CloseWrite()) // its close_notify alone
					waitQueued(t, srv.NetConn(), int(v.notify))
					require.NoError(t, srv.Close())
					_, err := cli.Read(make([]byte, 1))
					require.ErrorIs(t, err, io.EOF)
					require.NoError(t, cli.Close())
					ci := s.Next(t)
					assert.Equal(t, linger.Clean, ci.Outcome)
					assert.Equal(t, int(v.notify), ci.Unread)
					assert.Equal(t, v.notify, ci.Discarded)
				})
			}
			t.Run("TLS 1.3/a request after our close", func(t *testing.T) {
				s := p.listen(t, linger.Config{})
				cli, srv := tlsPair(t, s, &tls.Config{InsecureSkipVerify: true})
				require.NoError(t, srv.Close())
				_, err := cli.Read(make([]byte, 1))
				require.ErrorIs(t, err, io.EOF)
				_, err = cli.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
				require.NoError(t, err, "TLS 1.3 lets the client write after our close_notify")
				require.NoError(t, cli.Close())
				ci := s.Next(t)
				assert.Equal(t, linger.Crossed, ci.Outcome)
				assert.EqualValues(t, 27+22+24, ci.Discarded, "the request's record and the close_notify")
			})
			t.Run("plaintext/20 bytes after our close", func(t *testing.T) {
				s := p.listen(t, linger.Config{})
				client, srv := pair(t, s)
				_, err := client.Write([]byte("PING\r\n"))
				require.NoError(t, err)
				_, err = srv.Read(make([]byte, 16))
				require.NoError(t, err)
				require.NoError(t, srv.Close())
				_, err = client.Read(make([]byte, 1))
				require.ErrorIs(t, err, io.EOF)
				_, err = client.Write([]byte("GET / HTTP/1.0\r\n\r\n\r\n"))
				require.NoError(t, err)
				require.NoError(t, client.Close())
				ci := s.Next(t)
				assert.Equal(t, linger.Crossed, ci.Outcome, "a plaintext request crossed the close")
				assert.EqualValues(t, 20, ci.Discarded)
			})
		})
	}
}
