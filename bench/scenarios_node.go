package main

// node-keepalive: Node.js's own keep-alive clients against a Go backend
// with a 1 s idle timeout (issue 23). Node's http.Agent and its built-in
// fetch (undici) keep a connection after a response and reuse it for the
// next request; when that comes just as the server's idle timeout closes
// the connection, the request is lost ("socket hang up", "fetch failed").
// Both honour the server's Keep-Alive: timeout=N header, which net/http
// does not send and lingerhttp does.

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// nodeClient is bench/node/client.mjs; the driver writes it to its
// temporary directory and runs it there, so the binary runs from any
// directory.
//
//go:embed node/client.mjs
var nodeClient []byte

// nodeKinds are Node's clients, one row each.
var nodeKinds = []string{"agent", "fetch"}

func nodeRowNames() []string {
	var names []string
	for _, k := range nodeKinds {
		names = append(names, "node-keepalive-"+k)
	}
	return names
}

const (
	nodeIdleTimeout = time.Second
	// nodeJitter: the lanes send their next request this much before to
	// this much after nodeIdleTimeout, in whole ms, spread evenly.
	nodeJitter = 12 * time.Millisecond
)

var nodeKeepAliveBackend = &backend{name: "node-keepalive", variants: []string{"raw", "linger", "lingerhttp", "raw+keepalive-hdr", "lingerhttp-no-hdr"},
	server: nodeServer}

// connRequests is the context key of a connection's request counter.
type connRequests struct{}

// nodeServer answers every request with a short body and, in
// X-Conn-Request, the request's number on its connection, so the client
// can count the requests sent on a reused connection.
func nodeServer() *http.Server {
	hello := []byte("hello\n")
	return &http.Server{
		IdleTimeout: nodeIdleTimeout,
		ErrorLog:    quiet,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connRequests{}, new(atomic.Int64))
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n, ok := r.Context().Value(connRequests{}).(*atomic.Int64); ok {
				w.Header().Set("X-Conn-Request", strconv.FormatInt(n.Add(1), 10))
			}
			w.Write(hello)
		}),
	}
}

// withKeepAliveTimeout makes srv's responses carry Keep-Alive:
// timeout=N, N its IdleTimeout in whole seconds, as Apache httpd and
// Node's own server send it: the raw+keepalive-hdr variant, net/http with
// the hint added by hand.
func withKeepAliveTimeout(srv *http.Server) {
	h := srv.Handler
	hint := "timeout=" + strconv.Itoa(max(int(srv.IdleTimeout/time.Second), 1))
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", hint)
		h.ServeHTTP(w, r)
	})
}

// withoutKeepAliveTimeout masks lingerhttp's Keep-Alive: timeout=N (it
// adds one only to a response without a Keep-Alive header) with one that
// names no timeout, which Node's clients ignore (they read only
// "timeout="): the lingerhttp-no-hdr variant, lingerhttp's retiring
// alone.
func withoutKeepAliveTimeout(srv *http.Server) {
	h := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", "max=1000")
		h.ServeHTTP(w, r)
	})
}

// nodePath finds Node.js (Debian's nodejs package installs /usr/bin/node).
func nodePath() string {
	for _, name := range []string{"node", "nodejs"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// nodeMissing says why the Node scenario cannot run, or "".
func nodeMissing() string {
	if nodePath() == "" {
		return "node is not installed (bench/run installs Debian's nodejs with apt-get as root)"
	}
	return ""
}

// nodeVersion is `node --version`, or "".
func nodeVersion() string {
	p := nodePath()
	if p == "" {
		return ""
	}
	return commandLine(p, "--version")
}

// nodeConfig is client.mjs's argument.
type nodeConfig struct {
	URL       string   `json:"url"`
	Kinds     []string `json:"kinds"`
	Lanes     int      `json:"lanes"`
	PerLane   int      `json:"perLane"`
	IdleMs    int      `json:"idleMs"`
	JitterMs  int      `json:"jitterMs"`
	TimeoutMs int      `json:"timeoutMs"`
}

// nodeResult is one kind's counts from client.mjs.
type nodeResult struct {
	Kind      string         `json:"kind"`
	Requests  int            `json:"requests"` // swept requests (not the lanes' first)
	OK        int            `json:"ok"`
	Reused    int            `json:"reused"` // of the OK, sent on a reused connection
	Failures  map[string]int `json:"failures"`
	Offsets   map[string]int `json:"failedOffsets"` // failures by the gap's offset from the idle timeout, ms
	KeepAlive map[string]int `json:"keepAlive"`     // the Keep-Alive headers seen
	PerLane   bool           `json:"perLaneDispatcher"`
}

// nodeKeepAlive runs Node's clients against each variant: d.sz.nodeLanes
// lanes of one kind at a time, each lane one connection sending
// d.sz.nodePerLane requests after an idle gap of 1 s ± 12 ms.
func (d *driver) nodeKeepAlive(s *scenario) error {
	script := filepath.Join(d.tmp, "node-client.mjs")
	if err := os.WriteFile(script, nodeClient, 0o644); err != nil {
		return err
	}
	if v := nodeVersion(); v != "" && d.res.Node == "" {
		d.res.Node = v
	}
	cfg := nodeConfig{
		Kinds: nodeKinds, Lanes: d.sz.nodeLanes, PerLane: d.sz.nodePerLane,
		IdleMs: int(nodeIdleTimeout / time.Millisecond), JitterMs: int(nodeJitter / time.Millisecond),
	}
	// Each lane's gaps, its requests and their time out, with room.
	budget := time.Duration(cfg.PerLane+1)*(nodeIdleTimeout+nodeJitter+50*time.Millisecond) + 10*time.Second
	cfg.TimeoutMs = int(budget / time.Millisecond)
	return d.alternate(d.sz.nodeRounds, s.backend, func(v variant) error {
		for _, kind := range nodeKinds {
			if err := d.nodeRun(s, v, kind, cfg, script, budget); err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
		}
		return nil
	})
}

// nodeRun runs one kind of Node client against a backend of its own, so
// the row gets the backend's counters for that kind alone.
func (d *driver) nodeRun(s *scenario, v variant, kind string, cfg nodeConfig, script string, budget time.Duration) error {
	cfg.Kinds = []string{kind}
	return d.run("node-keepalive-"+kind, s.backend, v, func(addrs []string) error {
		cfg.URL = "http://" + addrs[0] + "/"
		arg, _ := json.Marshal(cfg)
		ctx, cancel := context.WithTimeout(d.ctx, budget+15*time.Second)
		defer cancel()
		// The driver runs in the clients' namespace; node, its
		// child, does too, as the proxies do.
		cmd := exec.CommandContext(ctx, nodePath(), script, string(arg))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("node: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
		var out struct {
			Node    string       `json:"node"`
			Results []nodeResult `json:"results"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
			return fmt.Errorf("node said %q: %w", stdout.String(), err)
		}
		for _, nr := range out.Results {
			d.addNodeResult(s, v.name, nr)
		}
		return nil
	})
}

// addNodeResult adds one kind's counts to its row: requests, OK, failures
// (as other, named in the notes with how Node reported them and at which
// offsets), and the share sent on a reused connection.
func (d *driver) addNodeResult(s *scenario, variant string, nr nodeResult) {
	name := "node-keepalive-" + nr.Kind
	if !slices.Contains(s.rowNames(), name) {
		return
	}
	r := d.row(name, variant)
	r.Requests += nr.Requests
	r.OK += nr.OK
	for how, n := range nr.Failures {
		if strings.Contains(how, "ECONNRESET") {
			r.Reset += n
		} else {
			r.Other += n
		}
		r.Extra[how] += float64(n)
	}
	r.Extra["reused"] += float64(nr.Reused)
	for ka, n := range nr.KeepAlive {
		r.Extra["Keep-Alive "+ka] += float64(n)
	}
	if !nr.PerLane {
		r.Extra["lanes share fetch's global pool"] = 1
	}
	if len(nr.Offsets) > 0 {
		var offs []int
		for k := range nr.Offsets {
			if o, err := strconv.Atoi(k); err == nil {
				offs = append(offs, o)
			}
		}
		sort.Ints(offs)
		var parts []string
		for _, o := range offs {
			parts = append(parts, fmt.Sprintf("%+d×%d", o, nr.Offsets[strconv.Itoa(o)]))
		}
		if r.Note != "" {
			r.Note += "; "
		}
		r.Note += "failed at gap offsets ms " + strings.Join(parts, " ")
	}
	d.logf("%s %s: %d requests, %d ok, %d reused, failures %v at offsets %v, Keep-Alive %v", name, variant, nr.Requests, nr.OK, nr.Reused, nr.Failures, nr.Offsets, nr.KeepAlive)
}
