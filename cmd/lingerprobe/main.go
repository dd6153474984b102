// Command lingerprobe measures, from the outside, whether an HTTP backend
// closes idle keep-alive connections before the load balancer in front of
// it does — the race that shows up as rare 502s which never reach the
// application's logs — and says which setting fixes it.
//
// Usage:
//
//	lingerprobe [flags] URL
//
// It opens keep-alive connections to URL (http or https) and nothing else,
// and measures:
//
//   - how long an idle keep-alive connection stays open and how it ends (FIN
//     or RST), whether the backend advertises "Keep-Alive: timeout=", how
//     many requests one connection serves;
//   - the race: requests sent on connections idle for that timeout plus or
//     minus a sweep, one connection each, GET and POST counted apart, as
//     answered, ended without an answer (EOF) or reset. A request is sent
//     only when the connection still looks open, as a balancer checks
//     before it reuses one;
//   - an early response: a large POST the backend answers before reading it
//     (a 404 by default), written whole before the answer is read, as simple
//     clients do: does the whole answer arrive, or a reset first?
//
// It then compares the backend's idle timeout with the balancer's (-lb,
// -lb-idle) and prints the verdict and the setting to change. The exit
// status is 0 when the balancer closes first, 1 when the backend races it,
// 2 when the probe could not tell (a bad flag, an unreachable backend).
//
// Every run is bounded: by -max-idle for the idle wait, by -n and -conns for
// the race, by -early-tries and -timeout for the rest.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
