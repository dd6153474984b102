//go:build !linux

package linger_test

import (
	"net"
	"syscall"
	"testing"
)

func keepAliveOn(*testing.T, net.Conn) (on, ok bool) { return false, false }

func queued(syscall.RawConn) int { return 0 }

// waitQueued needs SIOCINQ, as CloseInfo.Unread does: Linux only.
func waitQueued(t *testing.T, _ net.Conn, _ int) {
	t.Skip("the receive queue's length is Linux's (SIOCINQ)")
}
