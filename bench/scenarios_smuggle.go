package main

// The smuggle scenario: request smuggling through rescue, behind nginx.
//
// nginx denies /admin itself (location /admin { return 403; }) and proxies
// the rest to the backend, whose public handler answers 401 without
// reading the request body, as an auth check does. net/http then closes
// the connection with the body unread. The attacker's body, as nginx
// frames it, is itself a request whose method is a run of X, followed by
// a DELETE of /admin/users: if the listener hands the closing connection
// back to the server because its queued bytes look like a request line
// (rescue), net/http serves the DELETE, past nginx's 403. The backend
// counts its /admin runs; any is a failure (-check).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// smuggleMode is how nginx talks to the backend; each is a row group.
type smuggleMode struct {
	row    string
	http10 bool
}

var smuggleModes = []smuggleMode{
	// nginx's default proxy_pass: HTTP/1.0, Connection: close. net/http
	// closes after every answer without reading an unread body at all.
	{row: "smuggle-http1.0", http10: true},
	// The keep-alive balancer: HTTP/1.1 and a pool of upstream
	// connections. net/http discards up to 256 KiB of an unread body
	// and keeps the connection; above that it shuts its write side and
	// closes 500 ms later.
	{row: "smuggle-keepalive"},
}

func smuggleRowNames() []string {
	var names []string
	for _, m := range smuggleModes {
		names = append(names, m.row)
	}
	return names
}

// smuggleShape is how the attack's body is sent.
type smuggleShape struct {
	name    string
	pad     int  // bytes of a harmless third request after the DELETE
	chunked bool // the client sends the body chunked
}

var smuggleShapes = []smuggleShape{
	// Above net/http's post-handler discard limit (256 KiB).
	{name: "long", pad: 264 << 10},
	// About 6 KiB: under the limit, so on a keep-alive connection
	// net/http reads it all as the body it is.
	{name: "short"},
	// The short body, chunked by the client; nginx buffers it and
	// forwards it with a Content-Length.
	{name: "chunked", chunked: true},
}

// smuggleMethodLen is the length of the run of X that opens the body:
// longer than what net/http's 4 KiB read buffer takes of it with the
// request's head, and short enough that the rest of the "request line"
// is within the first 8 KiB of the bytes left queued. Wherever
// net/http's reads stopped, the queue then begins with a whole request
// line.
const smuggleMethodLen = 6000

// smuggleBody is the attack's body: a request whose method is a run of
// X, the smuggled DELETE (its query names the shape, so the backend can
// say which shape got through), and, for the long shape, a harmless
// request as padding, after the DELETE so the DELETE arrives within the
// first few KiB whatever the flow control holds back.
func smuggleBody(shape smuggleShape) []byte {
	var b bytes.Buffer
	b.Write(bytes.Repeat([]byte("X"), smuggleMethodLen))
	b.WriteString(" /x HTTP/1.1\r\nHost: a\r\n\r\n")
	fmt.Fprintf(&b, "DELETE /admin/users?shape=%s HTTP/1.1\r\nHost: a\r\n\r\n", shape.name)
	if shape.pad > 0 {
		fmt.Fprintf(&b, "GET /pad HTTP/1.1\r\nHost: a\r\nX-Pad: %s\r\n\r\n", strings.Repeat("p", shape.pad))
	}
	return b.Bytes()
}

// smuggleRequest is the whole attack as the client sends it to nginx.
func smuggleRequest(shape smuggleShape) []byte {
	body := smuggleBody(shape)
	var b bytes.Buffer
	b.WriteString("POST /login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n")
	if !shape.chunked {
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
		b.Write(body)
		return b.Bytes()
	}
	b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	for off := 0; off < len(body); off += 4 << 10 {
		chunk := body[off:min(off+4<<10, len(body))]
		fmt.Fprintf(&b, "%x\r\n", len(chunk))
		b.Write(chunk)
		b.WriteString("\r\n")
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// adminMarker is in every answer of the backend's /admin handler.
const adminMarker = "admin handler ran"

// smuggleCounts is a smuggle row's columns.
type smuggleCounts struct {
	Attempts  int `json:"attempts"`
	Reached   int `json:"reachedBackend"`     // attack POSTs the backend's handler answered
	AdminRuns int `json:"backendAdminRuns"`   // runs of the backend's /admin handler: must be 0
	AdminSeen int `json:"adminResponsesSeen"` // answers from it that reached the attacker
	Direct    int `json:"directAdmin"`        // requests for /admin sent to nginx directly
	Direct403 int `json:"directAdmin403"`     // of those, answered 403 by nginx
}

// smuggleDirect are the direct requests for /admin, each run: nginx must
// answer every one with 403 itself, or the scenario proves nothing.
var smuggleDirect = []string{"GET /admin", "GET /admin/users", "DELETE /admin/users"}

// smuggle runs the attack in both nginx modes, alternating the variants.
func (d *driver) smuggle(s *scenario) error {
	reqs := make([][]byte, len(smuggleShapes))
	for i, s := range smuggleShapes {
		reqs[i] = smuggleRequest(s)
	}
	perRun := max(1, d.sz.smuggleAttempts/d.sz.smuggleRounds)
	for _, mode := range smuggleModes {
		scn := mode.row
		err := d.alternate(d.sz.smuggleRounds, s.backend, func(v variant) error {
			var t tally
			var sc smuggleCounts
			var errorKinds map[string]int
			t0 := time.Now()
			stop, err := d.runReq(scn, s.backend, request{}, v, func(addrs []string) error {
				cfg := proxyConfig{Upstreams: addrs[:1], DenyAdmin: true, HTTP10: mode.http10}
				p, err := startProxyConfig("nginx", filepath.Join(d.tmp, scn+"-"+v.name), cfg)
				if err != nil {
					return err
				}
				// Every shape the same number of times over the
				// rounds: the row's attempts so far pick the first.
				first := 0
				if r := d.rows[scn+"/"+v.name]; r != nil && r.Smuggle != nil {
					first = r.Smuggle.Attempts
				}
				parallel(d.ctx, perRun, perRun, func(i int) {
					shape := (first + i) % len(smuggleShapes)
					seen, outs := smuggleAttempt(d.ctx, p.addr, reqs[shape])
					t.add("attempts", 1)
					t.add("admin seen", seen)
					for _, o := range outs {
						t.add(o, 1)
					}
				})
				cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
				for _, rq := range smuggleDirect {
					method, path, _ := strings.Cut(rq, " ")
					req, _ := http.NewRequestWithContext(d.ctx, method, "http://"+p.addr+path, nil)
					sc.Direct++
					resp, err := cl.Do(req)
					if err != nil {
						t.add("direct /admin: "+classify(err), 1)
						continue
					}
					body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					if resp.StatusCode == http.StatusForbidden {
						sc.Direct403++
					}
					if bytes.Contains(body, []byte(adminMarker)) {
						t.add("admin seen", 1)
					}
				}
				p.stop()
				errorKinds = p.errorKinds()
				return nil
			})
			d.logf("%s %s: %.2f s; backend handler runs %v", scn, v.name, time.Since(t0).Seconds(), stop.Smuggle)
			r := d.row(scn, v.name)
			if r.Smuggle == nil {
				r.Smuggle = &smuggleCounts{}
			}
			sc.Attempts = t.get("attempts")
			sc.AdminSeen = t.get("admin seen")
			for key, n := range stop.Smuggle {
				switch {
				case strings.HasPrefix(key, "admin "):
					sc.AdminRuns += n
					r.Extra["backend /admin runs, "+strings.TrimPrefix(key, "admin ")] += float64(n)
				case key == "POST /login":
					sc.Reached += n
				case key == "X… /x":
					r.Extra["smuggled X… requests served"] += float64(n)
				}
			}
			r.Smuggle.add(sc)
			for k, n := range t.n {
				if strings.HasPrefix(k, "answer ") || strings.HasPrefix(k, "follow-up ") || strings.HasPrefix(k, "direct ") {
					r.Extra[k] += float64(n)
				}
			}
			for kind, n := range errorKinds {
				r.Extra[kind] += float64(n)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", scn, err)
		}
	}
	return nil
}

func (s *smuggleCounts) add(o smuggleCounts) {
	s.Attempts += o.Attempts
	s.Reached += o.Reached
	s.AdminRuns += o.AdminRuns
	s.AdminSeen += o.AdminSeen
	s.Direct += o.Direct
	s.Direct403 += o.Direct403
}

// smuggleAttempt sends one attack to nginx at addr and reads what comes
// back on that connection: nginx's answer and, if nginx keeps the
// connection, its answer to a follow-up GET, where an upstream
// connection out of step would hand over the smuggled DELETE's answer.
// It returns the answers that came from the /admin handler, and every
// answer's outcome ("answer 401", "follow-up 401", "answer eof", ...).
func smuggleAttempt(ctx context.Context, addr string, req []byte) (adminSeen int, outs []string) {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, []string{"answer " + classify(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return 0, []string{"answer " + classify(err)}
	}
	br := bufio.NewReader(c)
	for i, what := range []string{"answer", "follow-up"} {
		if i > 0 {
			if _, err := c.Write([]byte("GET /x HTTP/1.1\r\nHost: bench\r\n\r\n")); err != nil {
				return adminSeen, append(outs, what+" "+classify(err))
			}
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return adminSeen, append(outs, what+" "+classify(err))
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if bytes.Contains(body, []byte(adminMarker)) {
			adminSeen++
		}
		if err != nil {
			return adminSeen, append(outs, what+" "+classify(err))
		}
		outs = append(outs, fmt.Sprintf("%s %d", what, resp.StatusCode))
		if resp.Close {
			break
		}
	}
	return adminSeen, outs
}

// smuggleHandler is the backend's handler: /admin… counts its runs (nginx
// must never let one through) and says so in its answer; everything else
// counts too and answers 401 without reading the body, as an auth check
// does.
type smuggleHandler struct {
	mu sync.Mutex
	n  map[string]int
}

var unauthorized = []byte("unauthorized\n")

func (b *smuggleHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/admin") {
		shape := r.URL.Query().Get("shape")
		if shape == "" {
			shape = "direct"
		}
		b.add("admin " + shape)
		fmt.Fprintf(w, "%s: %s %s\n", adminMarker, r.Method, r.URL.Path)
		return
	}
	method := r.Method
	if len(method) > 16 {
		method = method[:1] + "…" // the smuggled run of X
	}
	b.add(method + " " + r.URL.Path)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusUnauthorized)
	w.Write(unauthorized)
}

func (b *smuggleHandler) add(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == nil {
		b.n = make(map[string]int)
	}
	b.n[key]++
}

// counts returns the handler's runs by key: "admin <shape>" ("admin
// direct" for a request without one), else "<method> <path>".
func (b *smuggleHandler) counts() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[string]int, len(b.n))
	for k, n := range b.n {
		m[k] = n
	}
	return m
}
