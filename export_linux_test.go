package linger

import (
	"context"
	"os"
)

// Watched returns how many lingering closes l has handed to its epoll set
// and not yet ended.
func Watched(l *Listener) int { return int(l.lingerer.watched.Load()) }

// WaitNoLingerGoroutine waits, on the Listener's own change signal, until
// no goroutine of l lingers (the epoll set's watcher has exited), or ctx
// ends; it reports which.
func WaitNoLingerGoroutine(ctx context.Context, l *Listener) bool {
	return l.changed.Wait(ctx.Done(), func() bool { return l.running == 0 })
}

// LingerSetFile returns the epoll set's descriptor as Go holds it, or nil
// if l has no set now.
func LingerSetFile(l *Listener) *os.File {
	l.lingerer.mu.Lock()
	defer l.lingerer.mu.Unlock()
	if l.lingerer.set == nil {
		return nil
	}
	return l.lingerer.set.f
}

// HandOverGoFD makes l's lingering closes always go to the epoll set
// (LingerInSet) by Go's own descriptor, not a dup: the form take chooses
// when closes are queued ahead of this one. It counts one close as
// queued, for good: a close that is never taken, so queued never drops
// below one. Nothing else reads queued (the set's goroutine subtracts
// what it takes, and exits when its own queue is empty, whatever queued
// says), so the bias changes only that choice. Call it before l accepts.
func HandOverGoFD(l *Listener) {
	LingerInSet(l)
	l.lingerer.queued.Add(1)
}

// LingerInSet makes every lingering TCP close of l go to its epoll set,
// not only those past the first MaxLingerGoroutines. Call it before l
// accepts.
func LingerInSet(l *Listener) { l.lingerer.setOnly.Store(true) }

// MaxLingerGoroutines is how many closes linger in goroutines of their
// own before the next goes to the epoll set.
const MaxLingerGoroutines = maxLingerGoroutines

// GoFD reports whether c, closed, lingers in l's epoll set by Go's own
// descriptor (not a dup).
func GoFD(c *Conn) bool { return c.load().has(flagGoFD) }

// SetIdleLife is how long an emptied epoll set waits for the next close.
const SetIdleLife = setIdleLife
