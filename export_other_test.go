//go:build !linux

package linger

// HandOverGoFD: elsewhere there is no epoll set; closes linger in
// goroutines as they always do.
func HandOverGoFD(*Listener) {}

// LingerInSet: elsewhere there is no epoll set.
func LingerInSet(*Listener) {}
