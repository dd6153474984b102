package main

// The gRPC scenario: grpc-go servers closing connections by each of the
// ways gRPC closes them (compat.RunGRPC), with real grpc-go clients. Unlike
// the other scenarios, the clients run in the backend's process, on the
// loopback of the backend's namespace: RunGRPC owns both ends. The
// namespace's counters then count the RSTs of both ends.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/bench/compat"
)

// grpcPaths are the close paths run, each its own row: grpc-<path>.
var grpcPaths = []compat.ClosePath{compat.PathIdle, compat.PathAge, compat.PathGracefulStop, compat.PathAgeGrace}

// grpcNote heads the notes of every grpc row.
const grpcNote = "RSTs: both ends, same namespace"

func grpcRowNames() []string {
	var names []string
	for _, p := range grpcPaths {
		names = append(names, "grpc-"+string(p))
	}
	return names
}

// grpcRequest asks the backend to run one close path.
type grpcRequest struct {
	Path       string `json:"path"`
	DurationMs int    `json:"durationMs"`
}

// grpcResult is a compat.PathResult, as the backend sends it.
type grpcResult struct {
	RPCs, Unary, Streams int64
	Failed               int64
	ByCode               map[string]int64
	Resets               int64 // failures whose error says "connection reset by peer"
	Errors               []string
	ServerConns          int64
	Restarts             int64
	ElapsedMs            float64
}

// grpc runs every close path, alternating the variants. OK: the RPC
// succeeded; ECONNRESET: it failed with "connection reset by peer" in its
// error; other: it failed otherwise (the codes are in the notes).
func (d *driver) grpc() error {
	for _, path := range grpcPaths {
		scn := "grpc-" + string(path)
		err := d.alternate(d.sz.grpcRounds, func(v variant) error {
			if !v.applies("grpc") {
				return nil
			}
			resp, err := d.backend.call(request{Op: "grpc", Variant: v.name,
				GRPC: &grpcRequest{Path: string(path), DurationMs: int(d.sz.grpcFor / time.Millisecond)}})
			if err != nil {
				return err
			}
			g := resp.GRPC
			if g == nil {
				return errors.New("backend sent no gRPC result")
			}
			r := d.row(scn, v.name)
			r.Note = grpcNote
			r.Runs++
			r.Requests += int(g.RPCs)
			r.OK += int(g.RPCs - g.Failed)
			r.Reset += int(g.Resets)
			r.Other += int(g.Failed - g.Resets)
			for code, n := range g.ByCode {
				r.Extra[code] += float64(n)
			}
			r.Extra["server conns"] += float64(g.ServerConns)
			if g.Restarts > 0 {
				r.Extra["restarts"] += float64(g.Restarts)
			}
			for _, e := range g.Errors {
				if len(r.Errors) < 5 && !slices.Contains(r.Errors, e) {
					r.Errors = append(r.Errors, e)
				}
			}
			if resp.Counters != nil && r.Counters != nil {
				*r.Counters = r.Counters.add(*resp.Counters)
			}
			if resp.Stats != nil {
				if r.Stats == nil {
					r.Stats = &linger.Stats{}
				}
				addStats(r.Stats, *resp.Stats)
			}
			d.logf("%s %s: %d RPCs, %d failed %v, %.0f ms; counters %+v stats %+v; errors %q",
				scn, v.name, g.RPCs, g.Failed, g.ByCode, g.ElapsedMs, resp.Counters, resp.Stats, g.Errors)
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// runGRPC is the backend's side: it runs one close path with compat.RunGRPC
// (server and clients on this namespace's loopback) and reports the RPCs,
// the listener's outcomes and how the namespace's counters moved.
func runGRPC(req request, countRSTs bool) (response, error) {
	var resp response
	v, ok := variantNamed(req.Variant)
	switch {
	case !ok:
		return resp, fmt.Errorf("unknown variant %q", req.Variant)
	case v.wrap == nil || !v.applies("grpc"):
		return resp, fmt.Errorf("variant %s does not run grpc", v.name)
	case req.GRPC == nil:
		return resp, errors.New("grpc: no path")
	}
	path := compat.ClosePath(req.GRPC.Path)
	if !slices.Contains(compat.ClosePaths, path) {
		return resp, fmt.Errorf("grpc: unknown close path %q", path)
	}
	var before tcpCounters
	if countRSTs {
		var err error
		if before, err = readCounters(); err != nil {
			return resp, err
		}
	}
	var lns []net.Listener
	wrap := func(ln net.Listener) net.Listener {
		w := v.wrap(ln, nil)
		lns = append(lns, w)
		return w
	}
	res := compat.RunGRPC(context.Background(), wrap, compat.GRPCOptions{
		Paths:    []compat.ClosePath{path},
		Duration: time.Duration(req.GRPC.DurationMs) * time.Millisecond,
	})
	if len(res.Paths) != 1 {
		return resp, errors.New("grpc: RunGRPC ran no path")
	}
	p := res.Paths[0]
	if p.Err != nil {
		return resp, fmt.Errorf("grpc %s: %w", path, p.Err)
	}
	// RunGRPC has called the listener's Shutdown: every close is done.
	for _, ln := range lns {
		if s, ok := ln.(statser); ok {
			if resp.Stats == nil {
				resp.Stats = &linger.Stats{}
			}
			addStats(resp.Stats, s.Stats())
		}
	}
	if countRSTs {
		// The clients closed first; a RST for a segment still in flight
		// leaves within microseconds on loopback.
		time.Sleep(20 * time.Millisecond)
		c, err := readCounters()
		if err != nil {
			return resp, err
		}
		d := c.sub(before)
		resp.Counters = &d
	}
	resp.GRPC = &grpcResult{
		RPCs: p.RPCs, Unary: p.Unary, Streams: p.Streams,
		Failed: p.Failed, ByCode: p.ByCode, Resets: p.Resets, Errors: p.Errors,
		ServerConns: p.ServerConns, Restarts: p.Restarts,
		ElapsedMs: float64(p.Elapsed) / float64(time.Millisecond),
	}
	return resp, nil
}
