package lingerhttp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"time"

	"github.com/linger-go/linger/lingerhttp"
)

// A service that terminates TLS itself (ALB to HTTPS targets, mTLS between
// services) gives ServeTLS the TCP listener: linger goes under TLS, so
// net/http negotiates HTTP/2 and sets Request.TLS as http.Server.ServeTLS
// does. Handing Serve a tls.NewListener instead fails with an error that
// says so.
func ExampleServer_ServeTLS() {
	cert, pool := certificate() // in production: from files, or srv.TLSConfig.GetCertificate
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s, TLS %v\n", r.Proto, r.TLS != nil)
		}),
		IdleTimeout: time.Second, // HTTP/1: the retire threshold; HTTP/2: GOAWAY after it
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	ls := lingerhttp.New(srv, lingerhttp.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ls.ServeTLS(ln, "", "") }() // the certificate is in TLSConfig

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ls.Shutdown(ctx); err != nil { // the HTTP/2 connection ends with GOAWAY
		log.Print(err)
	}
	fmt.Println(<-served)
	// Output:
	// HTTP/2.0, TLS true
	// http: Server closed
}

// certificate makes a self-signed certificate for 127.0.0.1 and a pool
// that trusts it.
func certificate() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
