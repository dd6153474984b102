// Package postload is the steady keep-alive POST load that the restart
// tests run against a server while they restart it in place: workers that
// POST until told to stop, counting the answers that came whole, the
// connects refused, and every other failure by its message.
package postload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// Load is workers POSTing to one URL until Stop.
type Load struct {
	ok, refused atomic.Int64
	mu          sync.Mutex
	failures    map[string]bool
	done        chan struct{}
	wg          sync.WaitGroup
}

// Start starts workers, each POSTing body to url with cl, one request after
// the other, at most max times. An answer counts as served if its status
// is 200 and, when want is not nil, its body is want.
func Start(cl *http.Client, url string, workers, max int, body, want []byte) *Load {
	l := &Load{failures: make(map[string]bool), done: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go l.worker(cl, url, max, body, want)
	}
	return l
}

func (l *Load) worker(cl *http.Client, url string, max int, body, want []byte) {
	defer l.wg.Done()
	for n := 0; n < max; n++ {
		select {
		case <-l.done:
			return
		default:
		}
		err := post(cl, url, body, want)
		if err == nil {
			l.ok.Add(1)
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			l.refused.Add(1)
		}
		l.mu.Lock()
		l.failures[err.Error()] = true
		l.mu.Unlock()
	}
}

// post sends one request and reads its answer whole; nil means served.
func post(cl *http.Client, url string, body, want []byte) error {
	resp, err := cl.Post(url, "text/plain", bytes.NewReader(body))
	if err != nil {
		return err
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK || want != nil && !bytes.Equal(got, want):
		return fmt.Errorf("status %d, body %.40q", resp.StatusCode, got)
	}
	return nil
}

// OK is how many requests were served so far.
func (l *Load) OK() int64 { return l.ok.Load() }

// Stop stops the workers and waits for their requests in flight. It
// returns how many connects were refused and every failure's message,
// refused connects included, sorted.
func (l *Load) Stop() (refused int64, failures []string) {
	close(l.done)
	l.wg.Wait()
	for f := range l.failures {
		failures = append(failures, f)
	}
	slices.Sort(failures)
	return l.refused.Load(), failures
}
