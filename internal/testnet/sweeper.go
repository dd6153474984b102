package testnet

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/linger-go/linger"
)

// IdleSweeper is rescue wired the way linger's documentation shows it for
// a plain http.Server: ConnState marks connections idle or busy
// (linger.Conn.SetIdle, idle at net/http's StateNew and StateIdle), and
// Sweep closes with CloseIdle, from its own goroutine, every connection
// idle for longer than a bound, in place of net/http's idle timer. The
// zero IdleSweeper is ready to use.
type IdleSweeper struct {
	mu    sync.Mutex
	since map[*linger.Conn]time.Time
}

// ConnState is the server's http.Server.ConnState, or is called from it.
func (w *IdleSweeper) ConnState(c net.Conn, st http.ConnState) {
	lc := linger.ConnOf(c)
	if lc == nil {
		return
	}
	idle := st == http.StateNew || st == http.StateIdle
	lc.SetIdle(idle)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.since == nil {
		w.since = make(map[*linger.Conn]time.Time)
	}
	if idle {
		w.since[lc] = time.Now()
	} else {
		delete(w.since, lc)
	}
}

// Sweep closes, every tick, the connections idle for after or longer,
// until stop is closed.
func (w *IdleSweeper) Sweep(after, tick time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			w.closeIdle(now, after)
		case <-stop:
			return
		}
	}
}

// closeIdle closes the connections idle for after or longer at now.
func (w *IdleSweeper) closeIdle(now time.Time, after time.Duration) {
	var idle []*linger.Conn
	w.mu.Lock()
	for c, since := range w.since {
		if now.Sub(since) >= after {
			idle = append(idle, c)
			delete(w.since, c)
		}
	}
	w.mu.Unlock()
	for _, c := range idle {
		c.CloseIdle()
	}
}
