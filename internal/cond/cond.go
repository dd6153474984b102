// Package cond is a condition variable whose Wait a channel can stop,
// which sync.Cond's cannot (golang/go#16620): the "wait until nothing is
// left, or until the context ends" that both linger.Listener.Shutdown and
// lingerhttp.Server.Shutdown need.
package cond

import "sync"

// Cond wakes the goroutines waiting for a condition on state that L
// guards. Its zero value, with L set, is ready to use.
type Cond struct {
	L  sync.Locker
	ch chan struct{} // closed by Broadcast; nil while nobody waits
}

// Broadcast wakes every goroutine in Wait, to check its condition again.
// Call it with L held, after changing the state.
func (c *Cond) Broadcast() {
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// Waiting reports whether a goroutine waits. Call it with L held.
func (c *Cond) Waiting() bool { return c.ch != nil }

// Wait returns true once done, called with L held, reports true, or false
// once stop is closed (a nil stop never is). L is not held on return.
func (c *Cond) Wait(stop <-chan struct{}, done func() bool) bool {
	for {
		c.L.Lock()
		if done() {
			c.L.Unlock()
			return true
		}
		if c.ch == nil {
			c.ch = make(chan struct{})
		}
		ch := c.ch
		c.L.Unlock()
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}
