package main

// The gRPC scenario: grpc-go servers closing connections by each of the
// ways gRPC closes them, with real grpc-go clients. The backend runs the
// server half (grpcload.Serve) on its address, as it runs the other
// scenarios' servers; the driver runs the client half (grpcload.Drive)
// from the clients' namespace. The backend's namespace's counters then
// count the server's RSTs alone.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/linger-go/linger/bench/internal/grpcload"
)

// grpcPaths are the close paths run, each its own row: grpc-<path>.
var grpcPaths = []grpcload.ClosePath{grpcload.PathIdle, grpcload.PathAge, grpcload.PathGracefulStop, grpcload.PathAgeGrace}

func grpcRowNames() []string {
	var names []string
	for _, p := range grpcPaths {
		names = append(names, "grpc-"+string(p))
	}
	return names
}

// grpcRequest asks the backend to serve one close path.
type grpcRequest struct {
	Path string `json:"path"`
}

// grpcResult is the server's side of a run, as the backend sends it on
// stop: a grpcload.ServeResult.
type grpcResult struct {
	ServerConns int64
	Restarts    int64
}

// grpc runs every close path, alternating the variants. OK: the RPC
// succeeded; ECONNRESET: it failed with "connection reset by peer" in its
// error; other: it failed otherwise (the codes are in the notes).
func (d *driver) grpc(s *scenario) error {
	for _, path := range grpcPaths {
		scn := "grpc-" + string(path)
		err := d.alternate(d.sz.grpcRounds, s.backend, func(v variant) error {
			var p grpcload.PathResult
			req := request{GRPC: &grpcRequest{Path: string(path)}}
			stop, err := d.runReq(scn, s.backend, req, v, func(addrs []string) error {
				if len(addrs) != 1 {
					return fmt.Errorf("backend sent %d addresses", len(addrs))
				}
				p = grpcload.Drive(d.ctx, addrs[0], path, grpcload.Options{Duration: d.sz.grpcFor})
				return p.Err
			})
			if err != nil {
				return err
			}
			g := stop.GRPC
			if g == nil {
				return errors.New("backend sent no gRPC result")
			}
			r := d.row(scn, v.name)
			r.Requests += int(p.RPCs)
			r.OK += int(p.RPCs - p.Failed)
			r.Reset += int(p.Resets)
			r.Other += int(p.Failed - p.Resets)
			for code, n := range p.ByCode {
				r.Extra[code] += float64(n)
			}
			r.Extra["server conns"] += float64(g.ServerConns)
			if g.Restarts > 0 {
				r.Extra["restarts"] += float64(g.Restarts)
			}
			for _, e := range p.Errors {
				if len(r.Errors) < 5 && !slices.Contains(r.Errors, e) {
					r.Errors = append(r.Errors, e)
				}
			}
			d.logf("%s %s: %d RPCs, %d failed %v, %v; errors %q",
				scn, v.name, p.RPCs, p.Failed, p.ByCode, p.Elapsed.Round(time.Millisecond), p.Errors)
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// grpcServer is the backend's side of a grpc run: grpcload.Serve on
// the run's listener until stop.
type grpcServer struct {
	cancel context.CancelFunc
	done   chan grpcload.ServeResult
}

// startGRPC serves one close path on ln (already wrapped by the variant).
func startGRPC(ln net.Listener, req request) (*grpcServer, error) {
	if req.GRPC == nil {
		return nil, errors.New("grpc: no path")
	}
	path := grpcload.ClosePath(req.GRPC.Path)
	if !slices.Contains(grpcload.ClosePaths, path) {
		return nil, fmt.Errorf("grpc: unknown close path %q", path)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &grpcServer{cancel: cancel, done: make(chan grpcload.ServeResult, 1)}
	go func() { g.done <- grpcload.Serve(ctx, ln, path, grpcload.Options{}) }()
	return g, nil
}

// stop ends the serving, once the driver's clients have closed, and waits
// for the teardown: GracefulStop, then the listener's Shutdown, so every
// close is done when it returns.
func (g *grpcServer) stop() (*grpcResult, error) {
	g.cancel()
	s := <-g.done
	return &grpcResult{ServerConns: s.ServerConns, Restarts: s.Restarts}, s.Err
}
