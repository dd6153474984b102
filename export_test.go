package linger

import "syscall"

// ListenerSocket returns the socket l wraps, for tests to read its options.
func ListenerSocket(l *Listener) syscall.Conn { return l.ln.(syscall.Conn) }
