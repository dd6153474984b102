//go:build !linux

package linger_test

import (
	"net"
	"syscall"
	"testing"
)

func keepAliveOn(*testing.T, net.Conn) (on, ok bool) { return false, false }

func queued(syscall.RawConn) int { return 0 }
