//go:build !linux

package linger_test

import (
	"net"
	"testing"
)

func keepAliveOn(*testing.T, net.Conn) (on, ok bool) { return false, false }
