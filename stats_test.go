package linger_test

import (
	"encoding/json"
	"expvar"
	"go/build"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// published is this test binary's one expvar name (expvar.Publish panics
// on a name used twice, and -count reruns tests); each test Sets its own
// key in it.
var published = sync.OnceValue(func() *expvar.Map { return expvar.NewMap("lingertest") })

// debugVars fetches /debug/vars over loopback, as an operator's scraper
// does, and returns this test's entry.
func debugVars(t *testing.T) map[string]any {
	t.Helper()
	srv := httptest.NewServer(expvar.Handler())
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(srv.URL + "/debug/vars")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var vars map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &vars), "/debug/vars is JSON")
	var ours map[string]map[string]any
	require.NoError(t, json.Unmarshal(vars["lingertest"], &ours), "lingertest is JSON: %s", vars["lingertest"])
	got, ok := ours[t.Name()]
	require.True(t, ok, "%s published: %s", t.Name(), vars["lingertest"])
	return got
}

func TestStatsVarInDebugVars(t *testing.T) {
	s := listen(t, linger.Config{})
	published().Set(t.Name(), linger.StatsVar(s.Stats))

	// A close whose FIN the client answers (clean), one that a request
	// crosses on the wire (crossed, 3 bytes discarded), one still open.
	for _, late := range []string{"", "GET"} {
		client, srv := pair(t, s)
		require.NoError(t, srv.Close())
		_, err := client.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF, "our FIN")
		if late != "" {
			_, err = io.WriteString(client, late)
			require.NoError(t, err)
		}
		client.Close()
		s.Next(t)
	}
	pair(t, s)

	got := debugVars(t)
	st := s.Stats()
	require.EqualValues(t, 1, st.Outcomes[linger.Clean])
	require.EqualValues(t, 1, st.Outcomes[linger.Crossed])
	assert.EqualValues(t, 3, st.Accepted)
	assert.EqualValues(t, 3, got["Accepted"])
	assert.EqualValues(t, 1, got["Open"])
	assert.EqualValues(t, 0, got["Lingering"])
	assert.EqualValues(t, 3, got["Discarded"])
	outcomes, ok := got["Outcomes"].(map[string]any)
	require.True(t, ok, "Outcomes is an object: %v", got)
	assert.Len(t, outcomes, int(linger.NumOutcomes), "every outcome, zeros too")
	for o := range linger.NumOutcomes {
		assert.EqualValues(t, st.Outcomes[o], outcomes[o.String()], "outcome %v", o)
	}
}

func TestStatsVarString(t *testing.T) {
	var st linger.Stats
	for o := range linger.NumOutcomes {
		st.Outcomes[o] = int64(o) * 10
	}
	st.Accepted, st.Open, st.Lingering, st.Discarded = 1, 2, 3, 1<<40
	v := linger.StatsVar(func() linger.Stats { return st })
	var _ expvar.Var = v
	assert.Equal(t, `{"Accepted": 1, "Open": 2, "Lingering": 3, "Discarded": 1099511627776, "Outcomes": `+
		`{"clean": 0, "pending": 10, "crossed": 20, "timeout": 30, "overflow": 40, "reset": 50, "shed": 60, "aborted": 70, "rescued": 80, "plain": 90}}`,
		v.String())
	assert.True(t, json.Valid([]byte(v.String())))
}

// StatsVar's doc promises that importing linger does not register
// /debug/vars on http.DefaultServeMux, as importing expvar does.
func TestLibraryImportsNeitherExpvarNorNetHTTP(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	require.NoError(t, err)
	assert.NotContains(t, pkg.Imports, "expvar")
	assert.NotContains(t, pkg.Imports, "net/http")
}
