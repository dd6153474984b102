//go:build linux

package linger

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Once the filter is on, a new connect gets no answer (its SYN is
// dropped), while a connection that had completed its handshake is still
// taken from the accept queue.
func TestRefuseNewConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	before, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer before.Close()
	rc, err := ln.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	require.NoError(t, refuseNewConnections(rc))

	_, err = net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "a new connect is not answered: %v", err)
	queued := acceptQueued(rc)
	assert.Len(t, queued, 1, "the connection completed before the filter is still accepted")
	for _, c := range queued {
		c.Close()
	}
}

// A server whose accept loop is between two Accept calls when Shutdown
// runs (net/http's Serve is, while it registers the connection it just
// got) still gets the rest of what Close took from the accept queue:
// Shutdown closes that backlog only when no Accept has run since Close.
func TestShutdownLeavesTheBacklogToARunningAcceptLoop(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0", Config{})
	require.NoError(t, err)
	const n = 3
	clients := make([]net.Conn, n)
	for i := range clients {
		c, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("ping\n"))
		require.NoError(t, err)
		clients[i] = c
	}
	require.NoError(t, l.Close())
	serve := func(c net.Conn) {
		buf := make([]byte, 5)
		_, err := io.ReadFull(c, buf)
		assert.NoError(t, err)
		c.Write([]byte("pong\n"))
		c.Close()
	}
	first, err := l.Accept()
	require.NoError(t, err, "the first queued connection")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Shutdown(ctx) }()
	// Shutdown has decided about the backlog once it waits for the
	// connections (a condition, not a duration).
	for deadline := time.Now().Add(5 * time.Second); ; runtime.Gosched() {
		l.mu.Lock()
		waiting := l.changed.Waiting()
		l.mu.Unlock()
		if waiting {
			break
		}
		require.True(t, time.Now().Before(deadline), "Shutdown never waited")
	}
	serve(first)
	for range n - 1 {
		c, err := l.Accept()
		require.NoError(t, err, "Shutdown left the backlog to the accept loop")
		serve(c)
	}
	for i, c := range clients {
		got, err := io.ReadAll(c)
		assert.NoError(t, err)
		assert.Equal(t, "pong\n", string(got), "client %d was served", i)
		c.Close() // ends our lingering close
	}
	require.NoError(t, <-done)
}
