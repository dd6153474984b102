package main

// What the clients have in common: dialing, classifying how a connection
// ended, and bounded parallel loops.

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linger-go/linger/internal/testnet"
)

var dialer = &net.Dialer{Timeout: 5 * time.Second}

// Outcomes as the client sees them.
const (
	outOK    = "ok"
	outEOF   = "eof"   // the connection ended with a FIN and no (whole) answer
	outReset = "reset" // ECONNRESET, or EPIPE: the peer's RST arrived
	outOther = "other" // anything else: a timeout, a refused connection
)

// classify says how err ended a connection.
func classify(err error) string {
	switch {
	case err == nil:
		return outOK
	case testnet.IsReset(err):
		return outReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		strings.Contains(err.Error(), "server closed idle connection"),
		strings.Contains(err.Error(), "EOF"):
		return outEOF
	}
	return outOther
}

// tally counts outcomes from many goroutines: "requests", the outcomes
// (outOK, ...) and "502", and what else a scenario notes.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(key string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = make(map[string]int)
	}
	t.n[key] += n
}

func (t *tally) get(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n[key]
}

// parallel calls fn(i) for i in [0, n) from workers goroutines, and stops
// handing out work when ctx ends.
func parallel(ctx context.Context, n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// countingDialer counts the connections it makes.
type countingDialer struct{ n atomic.Int64 }

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c.n.Add(1)
	return dialer.DialContext(ctx, network, addr)
}
