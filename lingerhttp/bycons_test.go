package lingerhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What the rescue recipe for plain net/http left to its user, lingerhttp
// does by construction (issue 21).

// A hijacked connection (a websocket) left open does not hold Shutdown,
// as http.Server.Shutdown does not wait for one; its close still lingers.
func TestShutdownLeavesHijackedConnections(t *testing.T) {
	hijacked := make(chan net.Conn, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		hijacked <- c
	})}
	addr, s := slowServerWith(t, srv, Config{DrainIdle: 10 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	hc := <-hijacked
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx), "Shutdown returns with the websocket open")
	_, err = hc.Write([]byte("still open"))
	assert.NoError(t, err)
	hc.Close()
}
