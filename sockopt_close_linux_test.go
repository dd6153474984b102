//go:build linux

package linger

import (
	"errors"
	"net"
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
