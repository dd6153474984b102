package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Wherever net/http's reads of the body stopped within its 4 KiB buffer,
// the rest parses as a request (a method of X) and then the DELETE: the
// attack does not depend on where the backend stopped.
func TestSmuggleBodyParsesFromAnyOffset(t *testing.T) {
	for _, shape := range smuggleShapes {
		body := smuggleBody(shape)
		for _, off := range []int{0, 1, 100, 2000, 4000, 4096} {
			br := bufio.NewReader(bytes.NewReader(body[off:]))
			first, err := http.ReadRequest(br)
			require.NoError(t, err, "%s from %d", shape.name, off)
			assert.Equal(t, strings.Repeat("X", smuggleMethodLen-off), first.Method)
			assert.Equal(t, "/x", first.URL.Path)
			second, err := http.ReadRequest(br)
			require.NoError(t, err, "%s from %d", shape.name, off)
			assert.Equal(t, "DELETE", second.Method)
			assert.Equal(t, "/admin/users?shape="+shape.name, second.URL.RequestURI())
			// The request line the X run opens ends within 8 KiB.
			assert.Less(t, bytes.Index(body[off:], []byte("\r\n")), 8<<10)
		}
		if shape.pad > 0 {
			assert.Greater(t, len(body), 256<<10, "%s: above net/http's post-handler discard limit", shape.name)
		} else {
			assert.Less(t, len(body), 256<<10, shape.name)
		}
	}
}

// The request as the client sends it carries exactly the body, chunked
// or with a Content-Length.
func TestSmuggleRequestFraming(t *testing.T) {
	for _, shape := range smuggleShapes {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(smuggleRequest(shape))))
		require.NoError(t, err, shape.name)
		assert.Equal(t, "/login", req.URL.Path)
		if shape.chunked {
			assert.Equal(t, []string{"chunked"}, req.TransferEncoding)
		} else {
			assert.Equal(t, int64(len(smuggleBody(shape))), req.ContentLength)
		}
		got, err := io.ReadAll(req.Body)
		require.NoError(t, err)
		assert.Equal(t, smuggleBody(shape), got, shape.name)
	}
	// The chunks are well-formed for a strict reader too.
	raw := smuggleRequest(smuggleShape{name: "c", chunked: true})
	_, chunks, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(chunks)))
	require.NoError(t, err)
	assert.Equal(t, smuggleBody(smuggleShape{name: "c"}), got)
}

// The backend's handler counts /admin runs by shape and answers
// everything else 401 without reading the body.
func TestSmuggleBackend(t *testing.T) {
	b := &smuggleHandler{}
	do := func(method, target string, body io.Reader) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		b.ServeHTTP(w, httptest.NewRequest(method, target, body))
		return w
	}
	body := &countingReader{r: strings.NewReader("secret")}
	w := do("POST", "/login", body)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Zero(t, body.n, "the public handler reads no body")

	assert.Equal(t, http.StatusUnauthorized, do(strings.Repeat("X", 100), "/x", nil).Code)
	w = do("DELETE", "/admin/users?shape=long", nil)
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), adminMarker)
	do("GET", "/admin", nil)
	assert.Equal(t, map[string]int{"POST /login": 1, "X… /x": 1, "admin long": 1, "admin direct": 1}, b.counts())
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
