package linger

import "syscall"

// LingerInGoroutines makes l linger one goroutine per close, the path of
// platforms without the shared epoll set, so tests and benchmarks can
// compare the two in one run. Call it before l accepts.
func LingerInGoroutines(l *Listener) { l.goroutineLinger = true }

// ListenerSocket returns the socket l wraps, for tests to read its options.
func ListenerSocket(l *Listener) syscall.Conn { return l.ln.(syscall.Conn) }
