//go:build !linux

package linger

import (
	"syscall"
	"time"
)

// lingerer: elsewhere every lingering close runs in a goroutine of its own
// (Conn.linger); the shared epoll set is Linux's (lingerer_linux.go).
type lingerer struct{}

func (*lingerer) take(*Conn, CloseInfo, time.Duration, syscall.RawConn) bool { return false }

func (*lingerer) cut() {}

func (*lingerer) listenerClosed() {}

// defaultMaxLingering: a goroutine per lingering close costs kilobytes, so
// the bound stays minMaxLingering.
func defaultMaxLingering() int { return minMaxLingering }
