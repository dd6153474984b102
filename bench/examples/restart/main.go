// Command restart is the README's zero-downtime restart: an HTTP server
// that restarts in place without losing a request, for a service that is
// the only backend behind its proxy (nginx, HAProxy on the same host, a
// systemd unit, a VM).
//
// SIGHUP restarts it: github.com/cloudflare/tableflip starts the new
// binary with the listening socket inherited and returns once it is
// ready; this process then hands off with lingerhttp (Server.Handoff): it
// stops accepting, leaves the socket's accept queue to the successor and
// ends its own connections with "Connection: close", so the proxy moves
// to new ones, which the successor accepts. The socket never closes, so
// no connect is refused. SIGTERM or SIGINT stops it for good
// (Server.Shutdown).
//
// With systemd: ExecReload=/bin/kill -HUP $MAINPID and PIDFile= the
// -pid-file path, so that systemd follows the new process.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/linger-go/linger/lingerhttp"
)

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	pidFile := flag.String("pid-file", "", "file that holds the serving process's PID (systemd's PIDFile=)")
	flag.Parse()

	// Plain TCP: Go 1.24+ listens with MPTCP by default on Linux, and on an
	// MPTCP listener linger's Close cannot stop new handshakes while it
	// closes (a process that stops without a successor closes it).
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	upg, err := tableflip.New(tableflip.Options{PIDFile: *pidFile, ListenConfig: &lc})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()
	// Inherited from the process this one replaces, or opened by the first.
	ln, err := upg.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello\n")
	})
	srv := &http.Server{Handler: mux, IdleTimeout: time.Minute, ReadHeaderTimeout: 10 * time.Second}
	// DrainIdle bounds how long a handing-off process holds connections
	// that stay idle: tableflip's next upgrade waits for it to exit.
	ls := lingerhttp.New(srv, lingerhttp.Config{DrainIdle: 5 * time.Second})
	mux.Handle("/ready", ls.ReadyHandler())
	go func() {
		if err := ls.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	if err := upg.Ready(); err != nil { // the process this one replaces may drain now
		log.Fatal(err)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	handoff := false
	for sig := range sigs {
		if sig != syscall.SIGHUP {
			upg.Stop() // no restart while stopping
			break
		}
		if err := upg.Upgrade(); err != nil {
			log.Print("restart failed, still serving: ", err)
			continue
		}
		handoff = true // the successor serves on the same socket
		break
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if handoff {
		err = ls.Handoff(ctx) // no DrainDelay, /ready stays 200, the accept queue is the successor's
	} else {
		err = ls.Shutdown(ctx) // /ready 503, DrainDelay, then the socket closes
	}
	if err != nil {
		log.Print(err)
	}
}
