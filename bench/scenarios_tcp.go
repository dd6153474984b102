package main

// The raw TCP scenarios: unread-close and sweep.

import (
	"bufio"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/linger-go/linger/internal/netns"
)

// unreadRequest is a request line followed by 64 KiB of headers: the
// server reads the line (into a 4 KiB buffer) and leaves the rest.
var unreadRequest = []byte("GET /unread HTTP/1.1\r\nHost: backend\r\n" +
	strings.Repeat("X-Pad: "+strings.Repeat("p", 120)+"\r\n", 64<<10/129))

// unreadClose: the server reads a request line, answers and closes with
// request bytes unread. OK: the whole answer was read; EOF / ECONNRESET:
// how the connection ended.
func (d *driver) unreadClose(s *scenario) error {
	scn := s.name
	return d.alternate(d.sz.unreadRounds, s.backend, func(v variant) error {
		return d.run(scn, s.backend, v, func(addrs []string) error {
			var t tally
			n := d.sz.unreadConns
			parallel(d.ctx, n, 16, func(int) {
				t.add("requests", 1)
				c, err := dialer.DialContext(d.ctx, "tcp", addrs[0])
				if err != nil {
					t.add(outOther, 1)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				_, werr := c.Write(unreadRequest)
				got, rerr := io.ReadAll(c)
				if string(got) == unreadCloseReply {
					t.add(outOK, 1)
				}
				end := outEOF
				if rerr != nil {
					end = classify(rerr)
				} else if werr != nil {
					end = classify(werr)
				}
				t.add(end, 1)
			})
			r := d.row(scn, v.name)
			r.addOutcomes(&t)
			return nil
		})
	})
}

// The sweep's offsets: when the client sends, relative to the server's
// close.
const (
	sweepFrom = -5 * time.Millisecond
	sweepTo   = 5 * time.Millisecond
	sweepStep = 500 * time.Microsecond
)

func sweepOffsets() []time.Duration {
	var offs []time.Duration
	for o := sweepFrom; o <= sweepTo; o += sweepStep {
		offs = append(offs, o)
	}
	return offs
}

// sweep: a server closes an idle connection sweepCloseAfter after its
// answer; the client sends a small request at that instant plus an offset.
// OK: served; EOF: the connection ended with a FIN, request lost; reset.
// The offsets go in batches, in random order, so the backend's RSTs can be
// counted per offset.
func (d *driver) sweep(s *scenario) error {
	scn := s.name
	return d.alternate(d.sz.sweepRounds, s.backend, func(v variant) error {
		return d.run(scn, s.backend, v, func(addrs []string) error {
			offs := sweepOffsets()
			rand.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
			r := d.row(scn, v.name)
			var seen netns.Counters
			for _, off := range offs {
				outs := make([]string, d.sz.sweepTries)
				parallel(d.ctx, len(outs), 4, func(i int) {
					outs[i] = sweepTry(addrs[0], off)
				})
				p := d.res.sweepPoint(v.name, off)
				for _, out := range outs {
					if out == "" {
						continue // not run: interrupted
					}
					r.Requests++
					p.Tries++
					switch out {
					case outOK:
						r.OK++
						p.Served++
					case outEOF:
						r.EOF++
						p.EOF++
					case outReset:
						r.Reset++
						p.Reset++
					default:
						r.Other++
						p.Other++
					}
				}
				if d.counted {
					// A late request's RST leaves as it arrives, before
					// the client has read the FIN that came first.
					time.Sleep(10 * time.Millisecond)
					resp, err := d.backend.call(request{Op: "counters"})
					if err != nil {
						return err
					}
					if p.RSTs == nil {
						p.RSTs = new(int64)
					}
					*p.RSTs += resp.Counters.OutRsts - seen.OutRsts
					seen = *resp.Counters
				}
			}
			return nil
		})
	})
}

func sweepTry(addr string, offset time.Duration) string {
	c, err := dialer.Dial("tcp", addr)
	if err != nil {
		return outOther
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return outOther
	}
	if line, err := br.ReadString('\n'); err != nil || line != "ok\n" {
		return outOther
	}
	// The server set its deadline as it sent "ok"; the answer took a
	// few microseconds on the veth.
	time.Sleep(sweepCloseAfter + offset)
	_, werr := c.Write([]byte("req\n"))
	line, rerr := br.ReadString('\n')
	switch {
	case rerr == nil && line == "served\n":
		return outOK
	case werr != nil:
		return classify(werr)
	case rerr != nil:
		return classify(rerr)
	}
	return outOther
}
