package grpcload

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ClosePath is one way a gRPC server closes its connections. Each sends
// GOAWAY first and closes the TCP connection once its streams are done;
// a close that resets instead loses the GOAWAY or the last frames, and the
// client's RPCs on that connection fail with codes.Unavailable.
type ClosePath string

const (
	// PathIdle: keepalive.ServerParameters.MaxConnectionIdle closes
	// connections that had no RPC for that long, racing clients whose
	// next RPC comes just then.
	PathIdle ClosePath = "idle"
	// PathAge: keepalive.ServerParameters.MaxConnectionAge closes busy
	// connections once their streams are done; MaxConnectionAgeGrace is
	// longer than any stream.
	PathAge ClosePath = "age"
	// PathAgeGrace: MaxConnectionAge with a MaxConnectionAgeGrace shorter
	// than the streams, so the grace expires and the server closes
	// connections with streams in flight. Those streams fail whatever the
	// listener; what differs is whether the client's bytes that cross the
	// close draw resets.
	PathAgeGrace ClosePath = "agegrace"
	// PathGracefulStop: grpc.Server.GracefulStop under load, every
	// RestartEvery, while the next server takes over the listening socket
	// (a hot restart), so clients reconnect at once.
	PathGracefulStop ClosePath = "gracefulstop"
)

// ClosePaths lists every ClosePath, in the order Run runs them.
var ClosePaths = []ClosePath{PathIdle, PathAge, PathAgeGrace, PathGracefulStop}

// Options configure [Run], and its halves [Serve] and
// [Drive] (give both the same options). The zero value runs every path
// for 2 s with 8 client connections; each field's comment gives its
// default.
type Options struct {
	// Paths to run, in order. Nil means [ClosePaths]. Run only: its
	// halves take one path each.
	Paths []ClosePath
	// Duration of each path's load. Zero means 2 s.
	Duration time.Duration
	// Conns is the number of client connections (grpc.ClientConn, one TCP
	// connection at a time each). Zero means 8.
	Conns int
	// Workers is the number of concurrent callers per client connection;
	// the idle path has one, so that its connections do go idle. Zero
	// means 4.
	Workers int
	// StreamEvery makes every StreamEvery-th RPC of a caller a
	// bidirectional stream of StreamMessages round trips instead of a
	// unary call. Zero means 4; negative means unary only.
	StreamEvery int
	// StreamMessages per stream. Zero means 4.
	StreamMessages int
	// PayloadBytes per request message and per Chat reply. Zero means
	// 256.
	PayloadBytes int
	// ResponseBytes is the size of each unary reply. Zero means
	// PayloadBytes (a plain echo). Replies larger than the socket buffers
	// are still in the server's send queue when it closes: a close that
	// resets discards them, and the client's next WINDOW_UPDATE to a
	// closed socket draws that reset.
	ResponseBytes int
	// Interval between a caller's RPCs, except on the idle path. Zero
	// means 2 ms; negative means none.
	Interval time.Duration
	// MaxConnectionIdle for the idle path. Zero means 100 ms. Its callers
	// pause between 0.75 and 1.25 times this between RPCs, so about half
	// of their RPCs race an idle close.
	MaxConnectionIdle time.Duration
	// MaxConnectionAge and MaxConnectionAgeGrace for the age path. Zero
	// means 150 ms (grpc adds ±10 % jitter) and 2 s.
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration
	// AgeGraceShort is the agegrace path's MaxConnectionAgeGrace, and
	// AgeGraceStreamMessages the round trips of its streams, every other
	// RPC. Zero means 30 ms and 100 (some 50 ms a stream on loopback under
	// the race detector).
	AgeGraceShort          time.Duration
	AgeGraceStreamMessages int
	// RestartEvery is the gracefulstop path's restart interval. Zero
	// means 250 ms.
	RestartEvery time.Duration
	// RPCTimeout bounds each RPC. Zero means 5 s.
	RPCTimeout time.Duration
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	if o.Paths == nil {
		o.Paths = ClosePaths
	}
	def(&o.Duration, 2*time.Second)
	defInt(&o.Conns, 8)
	defInt(&o.Workers, 4)
	defInt(&o.StreamEvery, 4)
	defInt(&o.StreamMessages, 4)
	defInt(&o.PayloadBytes, 256)
	defInt(&o.ResponseBytes, o.PayloadBytes)
	def(&o.Interval, 2*time.Millisecond)
	def(&o.MaxConnectionIdle, 100*time.Millisecond)
	def(&o.MaxConnectionAge, 150*time.Millisecond)
	def(&o.MaxConnectionAgeGrace, 2*time.Second)
	def(&o.AgeGraceShort, 30*time.Millisecond)
	defInt(&o.AgeGraceStreamMessages, 100)
	def(&o.RestartEvery, 250*time.Millisecond)
	def(&o.RPCTimeout, 5*time.Second)
	return o
}

// Result is what [Run] measured, one PathResult per path run.
type Result struct {
	Paths []PathResult
}

// PathResult counts one close path's RPCs.
type PathResult struct {
	Path ClosePath
	// RPCs started, and of those Unary and Streams.
	RPCs, Unary, Streams int64
	// Failed RPCs, in all and by status code name ("Unavailable").
	Failed int64
	ByCode map[string]int64
	// Resets is how many failures carried "connection reset by peer": the
	// client's transport was torn down by a RST.
	Resets int64
	// Unexpected counts failures with a code other than Unavailable, the
	// code a lost connection yields.
	Unexpected int64
	// Errors holds up to five distinct failure messages, sorted.
	Errors []string
	// ServerConns is how many connections the servers accepted, and
	// Restarts how many times the gracefulstop path stopped a server.
	ServerConns int64
	Restarts    int64
	Elapsed     time.Duration
	// Err is set if the path could not run (listen failed).
	Err error
}

// String summarises the result on one line.
func (p PathResult) String() string {
	keys := make([]string, 0, len(p.ByCode))
	for k := range p.ByCode {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var codes []string
	for _, k := range keys {
		codes = append(codes, fmt.Sprintf("%s=%d", k, p.ByCode[k]))
	}
	return fmt.Sprintf("%s: %d RPCs (%d unary, %d streams), %d failed [%s], %d resets, %d unexpected, %d server conns, %d restarts, %v",
		p.Path, p.RPCs, p.Unary, p.Streams, p.Failed, strings.Join(codes, " "), p.Resets, p.Unexpected, p.ServerConns, p.Restarts, p.Elapsed.Round(time.Millisecond))
}

// Run serves a small echo service (unary Echo and bidirectional
// Chat, on a bytes codec, so no generated code) on wrap(a listener on
// 127.0.0.1:0), drives it with opts.Conns real grpc-go client connections,
// and makes the server close connections by each path in opts.Paths in
// turn. wrap is called once per path, from Run's goroutine, before the
// path's load starts; pass the identity for the raw control and, say,
// func(ln net.Listener) net.Listener { return linger.Wrap(ln, cfg) }. If
// the wrapped listener has a Shutdown(context.Context) error method, as
// [*github.com/linger-go/linger.Listener] does, Run calls it at the end
// of each path, so no lingering close outlives the call.
//
// Each path is [Serve] and [Drive] together: run them apart to put
// the server and the clients on different hosts or network namespaces.
//
// Run stops early, between paths and between RPCs, when ctx ends. It
// counts failed RPCs by status code; counting RSTs on the wire is left to
// the caller.
func Run(ctx context.Context, wrap func(net.Listener) net.Listener, opts Options) Result {
	o := opts.withDefaults()
	var res Result
	for _, p := range o.Paths {
		if ctx.Err() != nil {
			break
		}
		res.Paths = append(res.Paths, runPath(ctx, wrap, o, p))
	}
	return res
}

// runPath runs one close path: the server half on wrap(a loopback
// listener), the client half against it, then the server's teardown.
func runPath(ctx context.Context, wrap func(net.Listener) net.Listener, o Options, path ClosePath) PathResult {
	start := time.Now()
	// Plain TCP, as linger's README says (this module's go 1.26 would
	// listen with MPTCP, which refuses Close's handshake stop).
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	raw, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return PathResult{Path: path, Err: err}
	}
	wrapped := wrap(raw)
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	served := make(chan ServeResult, 1)
	go func() { served <- Serve(serveCtx, wrapped, path, o) }()

	res := Drive(ctx, raw.Addr().String(), path, o)
	// The clients have closed: now the server's teardown.
	stopServing()
	s := <-served
	res.ServerConns, res.Restarts = s.ServerConns, s.Restarts
	if res.Err == nil {
		res.Err = s.Err
	}
	res.Elapsed = time.Since(start)
	return res
}

// ServeResult is what [Serve] saw.
type ServeResult struct {
	Path ClosePath
	// ServerConns is how many connections the servers accepted, and
	// Restarts how many times the gracefulstop path stopped a server.
	ServerConns, Restarts int64
	// Err is set if the path is unknown or the listener's Shutdown failed.
	Err error
}

// serverStopTimeout bounds Serve's teardown: a GracefulStop that
// waits longer for RPCs (clients that never finish) becomes a Stop, and
// the listener's Shutdown gets as long again.
const serverStopTimeout = 10 * time.Second

// Serve is the server half of [Run]: it serves the echo service on
// ln, closing connections by path (the gracefulstop path restarts the
// server every opts.RestartEvery, the next server accepting from ln while
// the old one drains), until ctx ends. Then it tears down: GracefulStop of
// the last server, ln closed, and ln's Shutdown(context.Context) error
// method called if it has one, so when Serve returns every close is
// done. End ctx once the clients ([Drive]) have closed their
// connections, so the server sees their FINs first. ln is served as given:
// wrap it first.
func Serve(ctx context.Context, ln net.Listener, path ClosePath, opts Options) ServeResult {
	o := opts.withDefaults()
	res := ServeResult{Path: path}
	if !slices.Contains(ClosePaths, path) {
		ln.Close()
		res.Err = fmt.Errorf("unknown close path %q", path)
		return res
	}
	counted := &countingListener{Listener: ln}
	h := newHandoff(counted)

	var serveWG sync.WaitGroup
	serve := func() *grpc.Server {
		s := grpc.NewServer(serverOptions(o, path)...)
		s.RegisterService(&echoService, struct{}{})
		v := h.view()
		serveWG.Add(1)
		go func() {
			defer serveWG.Done()
			s.Serve(v)
		}()
		return s
	}
	srv := serve()

	// The gracefulstop path restarts the server on a timer: the next
	// server starts accepting before the old one drains.
	if path == PathGracefulStop {
		t := time.NewTicker(o.RestartEvery)
	restart:
		for {
			select {
			case <-ctx.Done():
				break restart
			case <-t.C:
			}
			old := srv
			srv = serve()
			gracefulStop(old)
			res.Restarts++
		}
		t.Stop()
	} else {
		<-ctx.Done()
	}

	// Teardown: the last server, the shared listener, the lingering
	// closes.
	gracefulStop(srv)
	h.Close()
	serveWG.Wait()
	if s, ok := ln.(interface{ Shutdown(context.Context) error }); ok {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), serverStopTimeout)
		if err := s.Shutdown(sctx); err != nil {
			res.Err = fmt.Errorf("shutdown: %w", err)
		}
		cancel()
	}
	res.ServerConns = counted.n.Load()
	return res
}

// gracefulStop stops s gracefully, or abruptly if its RPCs take longer
// than serverStopTimeout.
func gracefulStop(s *grpc.Server) {
	t := time.AfterFunc(serverStopTimeout, s.Stop)
	s.GracefulStop()
	t.Stop()
}

// Drive is the client half of [Run]: opts.Conns grpc-go client
// connections to addr (host:port of a [Serve] of the same path and
// options) call it for opts.Duration, or until ctx ends, with the pacing
// and the mix of unary calls and streams of path; then Drive closes
// them and returns the RPCs counted by outcome. The result's ServerConns
// and Restarts are the server's, so zero here.
func Drive(ctx context.Context, addr string, path ClosePath, opts Options) PathResult {
	o := opts.withDefaults()
	res := PathResult{Path: path}
	start := time.Now()
	loadCtx, cancelLoad := context.WithTimeout(ctx, o.Duration)
	defer cancelLoad()

	var rec recorder
	clients := make([]*grpc.ClientConn, 0, o.Conns)
	var workers sync.WaitGroup
	for range o.Conns {
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.CallContentSubtype(bytesCodec{}.Name())))
		if err != nil {
			res.Err = err
			break
		}
		clients = append(clients, cc)
		n := o.Workers
		if path == PathIdle {
			n = 1
		}
		for range n {
			workers.Add(1)
			go func() {
				defer workers.Done()
				callLoop(loadCtx, cc, o, path, &rec)
			}()
		}
	}
	workers.Wait()
	for _, cc := range clients {
		cc.Close()
	}
	rec.fill(&res)
	res.Elapsed = time.Since(start)
	return res
}

func serverOptions(o Options, path ClosePath) []grpc.ServerOption {
	switch path {
	case PathIdle:
		return []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: o.MaxConnectionIdle})}
	case PathAge:
		return []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      o.MaxConnectionAge,
			MaxConnectionAgeGrace: o.MaxConnectionAgeGrace,
		})}
	case PathAgeGrace:
		return []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      o.MaxConnectionAge,
			MaxConnectionAgeGrace: o.AgeGraceShort,
		})}
	}
	return nil
}

// maxCallsPerCaller bounds a caller's loop whatever its timing.
const maxCallsPerCaller = 1 << 20

// callLoop issues RPCs on cc until ctx ends.
func callLoop(ctx context.Context, cc *grpc.ClientConn, o Options, path ClosePath, rec *recorder) {
	payload := bytes.Repeat([]byte{'x'}, o.PayloadBytes)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 1; i <= maxCallsPerCaller; i++ {
		// Pace the caller. On the idle path the pause straddles
		// MaxConnectionIdle, so the next RPC often meets the idle close.
		pause := o.Interval
		if path == PathIdle {
			pause = time.Duration(float64(o.MaxConnectionIdle) * (0.75 + 0.5*rand.Float64()))
		}
		if pause > 0 {
			timer.Reset(pause)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.RPCTimeout)
		every, msgs := o.StreamEvery, o.StreamMessages
		if path == PathAgeGrace {
			every, msgs = 2, o.AgeGraceStreamMessages
		}
		stream := every > 0 && i%every == 0
		var err error
		if stream {
			err = chat(rctx, cc, payload, msgs)
		} else {
			err = echo(rctx, cc, payload, o.ResponseBytes)
		}
		cancel()
		rec.add(stream, err)
	}
}

// echo calls Echo with payload, asking for a reply of size bytes: the
// reply is the payload repeated to that size.
func echo(ctx context.Context, cc *grpc.ClientConn, payload []byte, size int) error {
	var out []byte
	md := metadata.Pairs(replySizeKey, strconv.Itoa(size))
	if err := cc.Invoke(metadata.NewOutgoingContext(ctx, md), "/linger.compat.Echo/Echo", &payload, &out); err != nil {
		return err
	}
	if !bytes.Equal(out, echoReply(payload, size)) {
		return status.Error(codes.DataLoss, "echo: reply differs from request")
	}
	return nil
}

// replySizeKey is the metadata key of Echo's reply size.
const replySizeKey = "reply-size"

// maxReply bounds Echo's reply size (grpc's default receive limit is 4 MiB).
const maxReply = 4<<20 - 64

// echoReply is payload repeated to size bytes.
func echoReply(payload []byte, size int) []byte {
	if size == len(payload) || len(payload) == 0 {
		return payload
	}
	return bytes.Repeat(payload, size/len(payload)+1)[:size]
}

func chat(ctx context.Context, cc *grpc.ClientConn, payload []byte, n int) error {
	s, err := cc.NewStream(ctx, &echoService.Streams[0], "/linger.compat.Echo/Chat")
	if err != nil {
		return err
	}
	for range n {
		if err := s.SendMsg(&payload); err != nil {
			if err == io.EOF { // the stream ended; RecvMsg has its status
				return s.RecvMsg(new([]byte))
			}
			return err
		}
		var out []byte
		if err := s.RecvMsg(&out); err != nil {
			return err
		}
		if !bytes.Equal(out, payload) {
			return status.Error(codes.DataLoss, "chat: reply differs from request")
		}
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	if err := s.RecvMsg(new([]byte)); err != io.EOF {
		if err == nil {
			return status.Error(codes.DataLoss, "chat: unexpected message after CloseSend")
		}
		return err
	}
	return nil
}

// recorder counts RPC outcomes from many callers.
type recorder struct {
	unary, streams, failed, resets, unexpected atomic.Int64
	byCode                                     [codes.Unauthenticated + 1]atomic.Int64

	mu     sync.Mutex
	errors map[string]struct{}
}

func (r *recorder) add(stream bool, err error) {
	if stream {
		r.streams.Add(1)
	} else {
		r.unary.Add(1)
	}
	if err == nil {
		return
	}
	r.failed.Add(1)
	code := status.Code(err)
	if int(code) < len(r.byCode) {
		r.byCode[code].Add(1)
	}
	if code != codes.Unavailable {
		r.unexpected.Add(1)
	}
	msg := err.Error()
	if strings.Contains(msg, "connection reset by peer") {
		r.resets.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errors == nil {
		r.errors = make(map[string]struct{})
	}
	if len(r.errors) < 5 {
		r.errors[msg] = struct{}{}
	}
}

func (r *recorder) fill(p *PathResult) {
	p.Unary, p.Streams = r.unary.Load(), r.streams.Load()
	p.RPCs = p.Unary + p.Streams
	p.Failed, p.Resets, p.Unexpected = r.failed.Load(), r.resets.Load(), r.unexpected.Load()
	p.ByCode = make(map[string]int64)
	for c := range r.byCode {
		if n := r.byCode[c].Load(); n > 0 {
			p.ByCode[codes.Code(c).String()] = n
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for m := range r.errors {
		p.Errors = append(p.Errors, m)
	}
	sort.Strings(p.Errors)
}

// countingListener counts accepted connections and hands them on
// unchanged, so no optional method of the connection is hidden.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// echoService is a hand-written gRPC service: unary Echo returns its
// request and the bidirectional Chat echoes every message until the
// client half-closes. Messages are raw bytes (see bytesCodec).
var echoService = grpc.ServiceDesc{
	ServiceName: "linger.compat.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			size := len(in)
			if v := metadata.ValueFromIncomingContext(ctx, replySizeKey); len(v) == 1 {
				n, err := strconv.Atoi(v[0])
				if err != nil || n < 0 || n > maxReply {
					return nil, status.Errorf(codes.InvalidArgument, "echo: bad %s %q", replySizeKey, v[0])
				}
				size = n
			}
			out := echoReply(in, size)
			return &out, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName: "Chat",
		Handler: func(_ any, s grpc.ServerStream) error {
			for range maxCallsPerCaller {
				var m []byte
				if err := s.RecvMsg(&m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if err := s.SendMsg(&m); err != nil {
					return err
				}
			}
			return status.Error(codes.ResourceExhausted, "chat: too many messages")
		},
		ServerStreams: true,
		ClientStreams: true,
	}},
}

// bytesCodec passes *[]byte messages through unchanged, so the service
// needs no protobuf code generation. Clients select it with
// grpc.CallContentSubtype(bytesCodec{}.Name()); the server finds it by
// the request's content-subtype.
type bytesCodec struct{}

func (bytesCodec) Name() string { return "linger-compat-bytes" }

func (bytesCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *[]byte:
		return *m, nil
	case []byte:
		return m, nil
	}
	return nil, fmt.Errorf("bytesCodec: cannot marshal %T", v)
}

func (bytesCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("bytesCodec: cannot unmarshal into %T", v)
	}
	*m = append((*m)[:0], data...) // grpc reuses data after we return
	return nil
}

func init() {
	encoding.RegisterCodec(bytesCodec{})
}
