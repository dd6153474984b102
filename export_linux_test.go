package linger

import "context"

// Watched returns how many lingering closes l's epoll set holds now.
func Watched(l *Listener) int {
	l.lingerer.mu.Lock()
	defer l.lingerer.mu.Unlock()
	if l.lingerer.set == nil {
		return 0
	}
	return len(l.lingerer.set.queue)
}

// WaitNoLingerGoroutine waits, on the Listener's own change signal, until
// no goroutine of l lingers (the epoll set's watcher has exited), or ctx
// ends; it reports which.
func WaitNoLingerGoroutine(ctx context.Context, l *Listener) bool {
	return l.wait(ctx.Done(), func() bool { return l.running == 0 })
}
