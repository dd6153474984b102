package lingerhttp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/linger-go/linger/lingerhttp"
)

// The production setup behind a load balancer (ALB, nginx, HAProxy): idle
// connections are retired through "Connection: close" instead of closed
// under the balancer's next request, and a deploy drains with no lost
// request.
func Example() {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	srv := &http.Server{Handler: mux, IdleTimeout: time.Second} // becomes the retire threshold
	ls := lingerhttp.New(srv, lingerhttp.Config{
		DrainDelay: 0, // in production: longer than the balancer's health-check interval × threshold
		// Idle connections are held this long once the delay is over, so a
		// request still sent on one is answered, not raced. Zero holds them
		// DefaultDrainIdle (5 s); this example has no balancer to wait for.
		DrainIdle: 100 * time.Millisecond,
	})
	mux.Handle("/ready", ls.ReadyHandler()) // the balancer's health check

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ls.Serve(ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))

	// On SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ls.Shutdown(ctx); err != nil {
		log.Print(err)
	}
	fmt.Println(<-served)
	// Output:
	// hello
	// http: Server closed
}
