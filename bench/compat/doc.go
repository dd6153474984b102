// Package compat proves that linger composes with what servers already
// stack on a listener: gRPC, crypto/tls, netutil.LimitListener,
// go-proxyproto, unix sockets and inherited (socket-activated) listeners.
//
// The proofs are the package's tests, run on loopback; COMPAT.md beside
// this file tabulates them. The package itself exports one bench scenario,
// [RunGRPC], which drives real grpc-go clients against a gRPC server
// through the three ways a gRPC server closes connections
// (MaxConnectionIdle, MaxConnectionAge and GracefulStop) and counts the
// RPCs that fail, so the bench program can compare a raw listener with a
// lingering one. Its halves, [ServeGRPC] and [DriveGRPC], run the server
// and the clients apart, so the bench counts the server's RSTs alone.
package compat
