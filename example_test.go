package linger_test

import (
	"bufio"
	"context"
	"expvar"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/linger-go/linger"
)

// An HTTP server whose connections close with FINs, never RSTs: idle
// timeouts that race a load balancer's next request, rejected uploads and
// deploys no longer reset connections.
func Example_http() {
	ln, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{})
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "hello")
		}),
		IdleTimeout: 30 * time.Second,
	}
	go srv.Serve(ln)

	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))

	// Deploy: stop serving, then wait for the lingering closes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	http.DefaultClient.CloseIdleConnections()
	if err := ln.Shutdown(ctx); err != nil {
		log.Print(err)
	}
	// Output: hello
}

// A raw TCP echo server: any protocol gets the graceful close.
func Example_echo() {
	ln, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			go func() {
				defer c.Close() // returns at once; lingers in the background
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprint(c, line)
			}()
		}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprint(c, "ping\n")
	reply, _ := io.ReadAll(c) // the server's FIN ends the reply: EOF, not a reset
	fmt.Print(string(reply))
	c.Close()
	ln.Shutdown(context.Background())
	// Output: ping
}

// Shutdown waits for every connection to be closed by its owner and for
// every lingering close; OnClose reports how each one ended.
func ExampleListener_Shutdown() {
	ln, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{
		OnClose: func(ci linger.CloseInfo) {
			fmt.Println("closed:", ci.Outcome, "discarded", ci.Discarded, "bytes")
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}

	server.Close()                       // an idle close: our FIN leaves
	client.Read(make([]byte, 1))         // the client sees it (EOF) ...
	fmt.Fprint(client, "GET / HTTP/1.1") // ... but a request had crossed it
	client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ln.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	st := ln.Stats()
	fmt.Println("accepted", st.Accepted, "crossed", st.Outcomes[linger.Crossed], "lingering", st.Lingering)
	// Output:
	// closed: crossed discarded 14 bytes
	// accepted 1 crossed 1 lingering 0
}

// Services that read expvar's /debug/vars rather than Prometheus publish a
// listener's counters with one call; every request reads them afresh.
func ExampleStatsVar() {
	ln, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{})
	if err != nil {
		log.Fatal(err)
	}
	expvar.Publish("linger", linger.StatsVar(ln.Stats))

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	server.Close()
	io.ReadAll(client) // our FIN, then the client's: a clean close
	client.Close()
	if err := ln.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}

	fmt.Println(expvar.Get("linger")) // as /debug/vars shows it
	// Output:
	// {"Accepted": 1, "Open": 0, "Lingering": 0, "Discarded": 0, "Outcomes": {"clean": 1, "pending": 0, "crossed": 0, "timeout": 0, "overflow": 0, "reset": 0, "shed": 0, "aborted": 0, "rescued": 0, "plain": 0}}
}
