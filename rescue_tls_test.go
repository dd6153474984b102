package linger_test

import (
	"crypto/tls"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What Config.Rescue's doc says of TLS, and no more: a TLS connection's
// records never pass HTTP1Request, but a peer that writes a plaintext
// request line into its TLS connection can pass it, and is rescued. That
// is harmless: the waiting TLS Read gets the bytes and rejects them as
// not a record, exactly as it would had the idle close come a moment
// later, so the server reads no request from them.
func TestRescueOfPlaintextUnderTLSIsRejectedByTLS(t *testing.T) {
	requireRescue(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := listen(t, linger.Config{Rescue: linger.HTTP1Request, LingerTimeout: 100 * time.Millisecond})
	cert := selfSigned(t)
	const plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for range 20 {
		client, srv := pair(t, s)
		tlsSrv := tls.Server(srv, &tls.Config{Certificates: []tls.Certificate{cert}})
		tlsCl := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
		handshake := make(chan error, 1)
		go func() { handshake <- tlsSrv.Handshake() }()
		require.NoError(t, tlsCl.Handshake())
		require.NoError(t, <-handshake)
		lc := srv.(*linger.Conn)
		lc.SetIdle(true)
		got := make(chan error, 1)
		go func() {
			_, err := tlsSrv.Read(make([]byte, 4096))
			got <- err
		}()
		waitParked(t, "linger.(*Conn).Read")
		sendQueued(t, client, srv, plain) // plaintext, under the TLS session
		require.True(t, lc.CloseIdle())
		ci := s.Next(t)
		err := <-got
		require.Error(t, err, "TLS reads no request from plaintext bytes")
		if ci.Outcome != linger.Rescued {
			client.Close()
			continue
		}
		assert.False(t, strings.Contains(err.Error(), "use of closed"), "the TLS layer rejected the bytes: %v", err)
		// The owner closes, as net/http does after a TLS error.
		srv.Close()
		client.Close()
		io.Copy(io.Discard, client)
		return
	}
	t.Fatal("CloseIdle never found the Read waiting with the bytes queued")
}
