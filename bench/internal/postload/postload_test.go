package postload

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Served requests count as OK; a wrong body and a refused connect are
// failures, the refused one counted apart.
func TestLoad(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello\n"))
	}))
	t.Cleanup(srv.Close)
	cl := &http.Client{Timeout: 10 * time.Second}

	l := Start(cl, srv.URL, 2, 5, []byte("ping"), []byte("hello\n"))
	require.Eventually(t, func() bool { return l.OK() == 10 }, 10*time.Second, time.Millisecond)
	refused, failures := l.Stop()
	assert.Zero(t, refused)
	assert.Empty(t, failures)

	l = Start(cl, srv.URL, 1, 3, []byte("ping"), []byte("bye\n"))
	l.wg.Wait() // its three requests are done
	refused, failures = l.Stop()
	assert.Zero(t, refused)
	assert.Zero(t, l.OK())
	assert.Equal(t, []string{`status 200, body "hello\n"`}, failures, "one message for the three")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connects are refused
	l = Start(cl, "http://"+addr+"/", 1, 1, nil, nil)
	l.wg.Wait() // its one request is done
	refused, failures = l.Stop()
	assert.Equal(t, int64(1), refused)
	assert.Len(t, failures, 1)
}
