// Command cost is the server bench/cost/run measures: a hello-world
// net/http server on one of four listeners, so that the cost of a close
// under connection churn can be counted in instructions (callgrind),
// system calls (strace) and allocations, each repeatable to a fraction
// of a per cent, where CPU time on a shared machine is not.
//
//	cost raw|wrap|listen|lingerhttp|goroutine ADDR
//
// GET /mallocs answers the process's allocation count and bytes so far;
// GET /quit ends it (callgrind writes its counts at exit, and cannot
// follow the runtime through a signal).
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerhttp"
)

// hiding hides the *net.TCPConn its Accept returns behind another type.
type hiding struct{ net.Listener }

func (l hiding) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return hidden{c.(*net.TCPConn)}, nil
}

type hidden struct{ *net.TCPConn }

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cost raw|wrap|listen|lingerhttp|goroutine ADDR")
		os.Exit(2)
	}
	mode, addr := os.Args[1], os.Args[2]
	quit := make(chan struct{})
	var once sync.Once
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mallocs":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(w, "%d %d\n", ms.Mallocs, ms.TotalAlloc)
			return
		case "/quit":
			once.Do(func() { close(quit) })
		}
		io.WriteString(w, "hello\n")
	})
	srv := &http.Server{Handler: h}
	// Plain TCP, as the README tells users: this module is go 1.26, where
	// net.Listen would listen with MPTCP.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	var ln net.Listener
	var err error
	switch mode {
	case "raw", "lingerhttp":
		ln, err = lc.Listen(context.Background(), "tcp", addr)
	case "wrap":
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		if err == nil {
			ln = linger.Wrap(ln, linger.Config{})
		}
	case "listen":
		ln, err = linger.Listen("tcp", addr, linger.Config{})
	case "goroutine":
		// Connections that are not *net.TCPConn linger in a goroutine
		// each, as on platforms without the epoll set.
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		if err == nil {
			ln = linger.Wrap(hiding{ln}, linger.Config{})
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cost:", err)
		os.Exit(1)
	}
	if mode == "lingerhttp" {
		s := lingerhttp.New(srv, lingerhttp.Config{})
		go s.Serve(ln)
		<-quit
		s.Shutdown(context.Background())
		return
	}
	go srv.Serve(ln)
	<-quit
	srv.Shutdown(context.Background())
	if l, ok := ln.(*linger.Listener); ok {
		l.Shutdown(context.Background())
	}
}
