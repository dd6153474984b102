package compat_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/linger-go/linger"
)

// TLS goes on top of linger: tls.NewListener(linger.Wrap(ln, cfg), tlsCfg).
// The server's tls.Conn.Close sends close_notify and then closes the
// *linger.Conn under it, which lingers, so the client reads the
// close_notify (io.EOF) even if its last request was never read. The
// other order, linger.Wrap(tls.NewListener(ln, tlsCfg), cfg), hides the
// *tls.Conn from the server (net/http then serves no HTTP/2 and sets no
// Request.TLS), and its CloseWrite sends a close_notify but no FIN;
// Accept logs that once.
func Example_tls() {
	cert, pool, err := selfSigned() // a self-signed certificate for 127.0.0.1
	if err != nil {
		log.Fatal(err)
	}
	inner, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{})
	if err != nil {
		log.Fatal(err)
	}
	ln := tls.NewListener(inner, &tls.Config{Certificates: []tls.Certificate{cert}})

	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			log.Print(err)
			return
		}
		fmt.Printf("under TLS: %T\n", c.(*tls.Conn).NetConn())
		fmt.Fprint(c, "hello")
		c.Close() // close_notify, then the lingering close
	}()

	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		log.Fatal(err)
	}
	b, err := io.ReadAll(c) // ends at io.EOF: crypto/tls returns it only for close_notify
	fmt.Printf("client read %q, err %v\n", b, err)
	c.Close()
	<-done

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := inner.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("closes finished:", inner.Stats().Closed())
	// Output:
	// under TLS: *linger.Conn
	// client read "hello", err <nil>
	// closes finished: 1
}
