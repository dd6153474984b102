//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import "net"

// peek cannot look at the receive queue here: every connection looks open,
// and a request sent after the backend's close counts as lost.
func peek(c *net.TCPConn) int { return peekNothing }
