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

// The whole life of a server in one call: Run listens on srv.Addr, serves,
// and when its context ends (in production: signal.NotifyContext with
// SIGTERM) drains and returns nil.
func ExampleServer_Run() {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	listening := make(chan string, 1) // the address, for this example's client
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: mux, IdleTimeout: time.Minute,
		BaseContext: func(ln net.Listener) context.Context {
			listening <- ln.Addr().String()
			return context.Background()
		}}
	ls := lingerhttp.New(srv, lingerhttp.Config{
		DrainDelay: 0,                      // in production: the balancer's health-check interval × threshold
		DrainIdle:  100 * time.Millisecond, // this example has no balancer to wait for
	})
	mux.Handle("/ready", ls.ReadyHandler())

	ctx, stop := context.WithCancel(context.Background()) // signal.NotifyContext(ctx, syscall.SIGTERM)
	ran := make(chan error, 1)
	go func() { ran <- ls.Run(ctx) }()

	resp, err := http.Get("http://" + <-listening + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))
	fmt.Println(resp.Header.Get("Keep-Alive"))

	stop() // SIGTERM
	fmt.Println("Run:", <-ran)
	// Output:
	// hello
	// timeout=60
	// Run: <nil>
}
