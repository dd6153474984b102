package cond

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWaitReturnsOnceDone(t *testing.T) {
	var mu sync.Mutex
	c := Cond{L: &mu}
	n := 3
	done := make(chan bool)
	go func() { done <- c.Wait(nil, func() bool { return n == 0 }) }()
	for range 3 {
		mu.Lock()
		n--
		c.Broadcast()
		mu.Unlock()
	}
	assert.True(t, <-done)
}

func TestWaitStops(t *testing.T) {
	var mu sync.Mutex
	c := Cond{L: &mu}
	stop := make(chan struct{})
	done := make(chan bool)
	go func() { done <- c.Wait(stop, func() bool { return false }) }()
	close(stop)
	assert.False(t, <-done)
}

func TestBroadcastWithNobodyWaiting(t *testing.T) {
	var mu sync.Mutex
	c := Cond{L: &mu}
	mu.Lock()
	assert.False(t, c.Waiting())
	c.Broadcast() // no panic, nothing to close
	mu.Unlock()
	assert.True(t, c.Wait(nil, func() bool { return true }))
}
