//go:build linux

package linger_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	fdConns       = 10_000
	fdConcurrency = 64
	fdIOTimeout   = 10 * time.Second
)

// TestNoDescriptorLeaks runs 10,000 connections through linger.Wrap, a
// third of each kind of close (clean, pending, crossed), and checks that
// once Shutdown returns and the clients have closed, the process holds
// exactly the descriptors it held before: every lingering close closed its
// socket, whatever ended it. Once on each linger path of this platform.
func TestNoDescriptorLeaks(t *testing.T) {
	for _, p := range lingerPaths {
		t.Run(p.name, func(t *testing.T) { testNoDescriptorLeaks(t, p.closePath) })
	}
}

func testNoDescriptorLeaks(t *testing.T, p closePath) {
	n := fdConns
	if testing.Short() {
		n = 1_000
	}
	// Each connection in flight holds a client and a server descriptor,
	// and a lingering one keeps the server's a little longer.
	limit := openFilesLimit(t)
	require.Greater(t, limit, int64(8*fdConcurrency+256), "RLIMIT_NOFILE is too low for %d connections at a time", fdConcurrency)

	// Warm up: the runtime's poller opens its descriptors (epoll, eventfd)
	// on first use and keeps them.
	warm, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	warm.Close()

	before := countFDs(t)

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	ln := p.wrap(raw, linger.Config{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), fdIOTimeout)
		defer cancel()
		ln.Shutdown(ctx)
	})

	// Each connection's kind is told by its first byte, so the server
	// need not match connections to clients.
	const (
		kindClean   = 'c' // server closes at once; client reads EOF, closes
		kindPending = 'p' // client sends 1+100 bytes, server reads 1, replies, closes
		kindCrossed = 'x' // server closes; client reads EOF, then sends 100 bytes, closes
	)
	var serverErrs atomic.Int64
	var firstServerErr firstError
	var serving sync.WaitGroup
	serving.Add(1)
	go func() {
		defer serving.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Shutdown below
			}
			serving.Add(1)
			go func() {
				defer serving.Done()
				defer c.Close()
				err := c.SetDeadline(time.Now().Add(fdIOTimeout))
				var kind [1]byte
				if err == nil {
					_, err = io.ReadFull(c, kind[:])
				}
				if err == nil && kind[0] == kindPending {
					_, err = io.WriteString(c, "ok")
				}
				if err != nil {
					firstServerErr.set(err)
					serverErrs.Add(1)
				}
			}()
		}
	}()

	client := func(kind byte) error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), fdIOTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(fdIOTimeout)); err != nil {
			return err
		}
		switch kind {
		case kindClean:
			if _, err := c.Write([]byte{kind}); err != nil {
				return err
			}
			return expectReply(c, "")
		case kindPending:
			msg := make([]byte, 1+rstUnread)
			msg[0] = kind
			if _, err := c.Write(msg); err != nil {
				return err
			}
			return expectReply(c, "ok")
		default:
			if _, err := c.Write([]byte{kind}); err != nil {
				return err
			}
			if err := expectReply(c, ""); err != nil {
				return err
			}
			_, err := c.Write(make([]byte, rstUnread))
			return err
		}
	}
	kinds := []byte{kindClean, kindPending, kindCrossed}
	var clientErrs atomic.Int64
	var firstClientErr firstError
	jobs := make(chan byte)
	var clients sync.WaitGroup
	for range fdConcurrency {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for kind := range jobs {
				if err := client(kind); err != nil {
					firstClientErr.set(fmt.Errorf("%c: %w", kind, err))
					clientErrs.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	for i := range n {
		jobs <- kinds[i%len(kinds)]
	}
	close(jobs)
	clients.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), fdIOTimeout)
	defer cancel()
	require.NoError(t, ln.Shutdown(ctx), "Shutdown: lingering closes did not finish")
	serving.Wait()
	t.Logf("%d connections in %v", n, time.Since(start).Round(time.Millisecond))

	after := countFDs(t)
	assert.Equal(t, before, after, "open descriptors before and after %d connections", n)
	assert.Zero(t, clientErrs.Load(), "client errors; first: %v", firstClientErr.get())
	assert.Zero(t, serverErrs.Load(), "server errors; first: %v", firstServerErr.get())

	s := ln.Stats()
	perKind := func(k int) int64 { return int64((n - k + len(kinds) - 1) / len(kinds)) }
	assert.Equal(t, int64(n), s.Accepted, "accepted")
	assert.Equal(t, int64(n), s.Closed(), "closes finished; stats %+v", s)
	assert.Zero(t, s.Open, "open")
	assert.Zero(t, s.Lingering, "lingering")
	assert.Equal(t, perKind(0), s.Outcomes[linger.Clean], "clean closes; stats %+v", s)
	assert.Equal(t, perKind(1), s.Outcomes[linger.Pending], "pending closes; stats %+v", s)
	assert.Equal(t, perKind(2), s.Outcomes[linger.Crossed], "crossed closes; stats %+v", s)
}

// countFDs counts this process's open descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/fd")
	require.NoError(t, err)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	require.NoError(t, err)
	return len(names) // includes f itself, before and after alike
}

// openFilesLimit returns the soft RLIMIT_NOFILE, from /proc/self/limits
// (the runtime raises it to the hard limit at start-up).
func openFilesLimit(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/limits")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			require.NotEmpty(t, f, "%q", line)
			if f[0] == "unlimited" {
				return 1 << 62
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			require.NoError(t, err, "%q", line)
			return n
		}
	}
	t.Fatal("no Max open files in /proc/self/limits")
	return 0
}
