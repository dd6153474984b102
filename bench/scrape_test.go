package main

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDeployScrapeReadsStats(t *testing.T) {
	inner, err := testnet.ListenTCP("127.0.0.1:0")
	require.NoError(t, err)
	closes := make(chan linger.CloseInfo, 1)
	ln := linger.Wrap(inner, linger.Config{OnClose: func(ci linger.CloseInfo) { closes <- ci }})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, ln.Shutdown(ctx))
	})
	s := newDeployScraper(ln)
	require.NotNil(t, s)
	assert.Nil(t, newDeployScraper(inner), "raw: nothing to scrape")

	s.before()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	srv, err := ln.Accept()
	require.NoError(t, err)
	srv.Close()
	_, err = io.ReadAll(c) // the server's FIN
	require.NoError(t, err)
	c.Close()
	<-closes
	s.after()

	got := s.got
	assert.Empty(t, got.Mismatch)
	assert.Equal(t, int64(0), got.Before["clean"])
	assert.Equal(t, int64(1), got.After["clean"])
	assert.Equal(t, got.Stats, got.After)
	assert.Len(t, got.After, int(linger.NumOutcomes))
	assert.Contains(t, got.note(), "clean 0 → 1")
	assert.Contains(t, got.note(), "= its Stats")

	sum := (*deployScrape)(nil).add(got).add(got)
	assert.Equal(t, int64(2), sum.After["clean"])
	r := &results{Rows: []*row{{Scenario: "shutdown", Variant: "linger", Scrape: sum}}}
	assert.Empty(t, r.checkFailures())
	sum.Mismatch = []string{"after the deploy: clean scraped 1, Stats 2"}
	assert.Contains(t, sum.note(), "NOT its Stats")
	assertFailures(t, r.checkFailures(),
		"shutdown/linger: the deploy's Prometheus scrape was not the listener's Stats",
	)
}
