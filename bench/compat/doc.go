// Package compat proves that linger composes with what servers already
// stack on a listener: gRPC, crypto/tls, netutil.LimitListener,
// go-proxyproto, unix sockets and inherited (socket-activated) listeners.
//
// The proofs are the package's tests, run on loopback, and its examples;
// COMPAT.md beside this file tabulates them. The package exports nothing.
// The gRPC proof drives its load with the bench's generator,
// bench/internal/grpcload.
package compat
