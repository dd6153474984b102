package compat_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/linger-go/linger"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Serving gRPC on a lingering listener. A gRPC server closes connections
// itself, after a GOAWAY: when one has been idle for MaxConnectionIdle,
// when it reaches MaxConnectionAge (plus MaxConnectionAgeGrace for its
// streams), and at GracefulStop. linger makes each of those closes end in
// a FIN, never a RST, whatever the client sent last. Wrap the TCP listener
// and hand it to Serve; after Stop or GracefulStop, Shutdown waits for the
// lingering closes.
func Example_grpc() {
	ln, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{})
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.KeepaliveParams(keepalive.ServerParameters{
		MaxConnectionIdle:     5 * time.Minute,
		MaxConnectionAge:      30 * time.Minute,
		MaxConnectionAgeGrace: time.Minute,
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("health:", resp.GetStatus())
	cc.Close()

	srv.GracefulStop() // GOAWAY, then close: a lingering close
	<-served
	if err := ln.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	st := ln.Stats()
	fmt.Println("accepted:", st.Accepted, "closes finished:", st.Closed(), "lingering:", st.Lingering)
	// Output:
	// health: SERVING
	// accepted: 1 closes finished: 1 lingering: 0
}
