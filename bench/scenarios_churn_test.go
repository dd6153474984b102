package main

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/linger-go/linger"
)

// churn's client makes a connection per request and counts a request OK
// only when the whole hello came back, through a lingering close too;
// a server that answers something else is not OK.
func TestChurnLoad(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		var served net.Listener = ln
		if wrap {
			served = linger.Wrap(ln, linger.Config{})
		}
		srv := helloServer()
		go srv.Serve(served)
		d := &driver{ctx: context.Background()}
		var tl tally
		lat := d.churnLoad(ln.Addr().String(), 200, 4, &tl)
		assert.Len(t, lat, 200, "wrapped %v", wrap)
		assert.Equal(t, 200, tl.get("requests"))
		assert.Equal(t, 200, tl.get(outOK))
		require.NoError(t, srv.Shutdown(context.Background()))
		if l, ok := served.(*linger.Listener); ok {
			require.NoError(t, l.Shutdown(context.Background()))
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("goodbye\n")) }), ErrorLog: quiet}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	var tl tally
	lat := (&driver{ctx: context.Background()}).churnLoad(ln.Addr().String(), 10, 2, &tl)
	assert.Empty(t, lat)
	assert.Equal(t, 0, tl.get(outOK))
	assert.Equal(t, 10, tl.get(outEOF))
}

func TestMedian(t *testing.T) {
	assert.Equal(t, 0.0, median(nil))
	assert.Equal(t, 2.0, median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
	xs := []float64{3, 1, 2}
	median(xs)
	assert.Equal(t, []float64{3, 1, 2}, xs, "the input is left in its order")
}
