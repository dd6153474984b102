// Package grpcload is the bench's gRPC load generator: real grpc-go clients
// against a gRPC server that closes connections by each of the ways gRPC
// closes them (MaxConnectionIdle, MaxConnectionAge with and without a
// grace shorter than the streams, GracefulStop in a hot restart), counting
// the RPCs that fail, so that a raw listener can be compared with a
// lingering one.
//
// [Run] serves and drives one after the other on loopback; its halves,
// [Serve] and [Drive], run the server and the clients apart, so the bench
// program counts the server's RSTs alone (the server in the backend's
// network namespace). The bench's grpc scenario and bench/compat's
// TestGRPCClosePaths use it.
package grpcload
