package linger_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(clientProcessEnv); spec != "" {
		os.Exit(clientProcess(spec))
	}
	goleak.VerifyTestMain(m)
}

// clientProcessEnv, set to "address count", makes this test binary a
// client process for benchmarks that need more connections than one
// process's descriptor limit holds with both ends in it: it dials count
// connections to address, says "ready" on stdout, and closes them (its
// FINs) when its stdin ends.
const clientProcessEnv = "LINGER_CLIENT_PROCESS"

func clientProcess(spec string) int {
	var addr string
	var n int
	if _, err := fmt.Sscan(spec, &addr, &n); err != nil {
		fmt.Printf("bad %s %q: %v\n", clientProcessEnv, spec, err)
		return 2
	}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Printf("dial %d: %v\n", len(conns), err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n') // until stdin ends
	for _, c := range conns {
		c.Close()
	}
	return 0
}
