//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"net"
	"syscall"
)

// peek looks at the socket's receive queue without taking from it or
// waiting (recv with MSG_PEEK|MSG_DONTWAIT).
func peek(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return peekNothing
	}
	st := peekNothing
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
			st = peekNothing
		case rerr != nil:
			st = peekError
		case n > 0:
			st = peekData
		default:
			st = peekEOF
		}
		return true // never wait
	})
	if err != nil {
		return peekError
	}
	return st
}
