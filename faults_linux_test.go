//go:build linux

package linger_test

// Faults on the wire: packets lost at random, the server's FINs lost
// every time, or the peer's ACKs of our FIN lost every time, made with
// nftables in a network namespace of the test's own (see inNetns), on the
// server's port only. Whatever the wire does, a lingering close must end
// within LingerTimeout plus one retransmission timeout, with an outcome
// (Timeout at worst, never stranded, never cut by Shutdown), and
// Listener.Shutdown must return within that bound.
//
// One RTO is 1 s here: the initial retransmission timeout (RFC 6298
// §2.1), the most a single loss costs a young connection. On loopback
// Linux retransmits after TCP_RTO_MIN, 200 ms, so the bar leaves room for
// a loaded machine, not for a design that waits on the wire.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	faultLingerTimeout = time.Second
	faultRTO           = time.Second
	faultConns         = 60 // per fault, a third of each client kind
)

// faultRules are the nftables rules of each fault, for the server's port
// (%[1]d). The output hook sees every packet as it is sent, the input hook
// as it is received; on the namespace's loopback both ends' packets pass
// both, and the port tells whose they are.
var faultRules = []struct{ name, rules string }{
	// 10 % of the packets in each direction, SYNs and FINs included.
	{"loss-10", `
		chain o {
			type filter hook output priority 0;
			tcp sport %[1]d numgen random mod 100 < 10 drop
			tcp dport %[1]d numgen random mod 100 < 10 drop
		}`},
	// Every FIN the server sends, and its retransmissions.
	{"server-fin-lost", `
		chain o {
			type filter hook output priority 0;
			tcp sport %[1]d tcp flags & fin == fin drop
		}`},
	// Every pure ACK the server receives (ACK alone, no payload: 52
	// bytes with timestamps): among them the peer's ACK of our FIN, so
	// our FIN is retransmitted until the peer's own FIN acknowledges it.
	{"fin-ack-lost", `
		chain i {
			type filter hook input priority 0;
			tcp dport %[1]d tcp flags & (fin | syn | rst | psh | ack) == ack ip length 52 drop
		}`},
}

func TestFaultsOnTheWire(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("the faults are made with nft (nftables), which is not installed (.ci/run installs it as root)")
	}
	for _, f := range faultRules {
		t.Run(f.name, func(t *testing.T) {
			inNetns(t, func(t *testing.T, _ *testNetns) { faultRun(t, f.rules) })
		})
	}
}

// faultRun serves faultConns connections under the fault: each asks once,
// is answered, and is closed by the server, a lingering close; a third of
// the clients then read to EOF and close (polite), a third send another
// request across the close and then read to EOF and close (crossing), a
// third stay silent (their closes can only time out).
func faultRun(t *testing.T, rules string) {
	var mu sync.Mutex
	var infos []linger.CloseInfo
	ln, err := linger.Listen("tcp", "127.0.0.1:0", linger.Config{
		LingerTimeout: faultLingerTimeout,
		OnClose: func(ci linger.CloseInfo) {
			mu.Lock()
			infos = append(infos, ci)
			mu.Unlock()
		},
	})
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port

	nft := exec.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(fmt.Sprintf("table inet fault {%s\n}\n", fmt.Sprintf(rules, port)))
	out, err := nft.CombinedOutput()
	require.NoError(t, err, "nft: %s", out)

	closed := make(chan struct{}, faultConns) // the server closed a connection
	var served sync.WaitGroup
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() {
					c.Close()
					closed <- struct{}{}
				}()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
					return // a client that gave up on its dial's lost packets
				}
				io.WriteString(c, "pong\n")
			}()
		}
	}()

	// Clients: bounded by their deadlines, whatever the wire does. asked
	// is done when each has its answer or has given up.
	var clients, asked sync.WaitGroup
	var silentMu sync.Mutex
	var silent []net.Conn
	t.Cleanup(func() {
		for _, c := range silent {
			c.Close()
		}
	})
	var answered, eofs, dialed int
	var cmu sync.Mutex
	for i := range faultConns {
		clients.Add(1)
		asked.Add(1)
		go func() {
			defer clients.Done()
			askedDone := sync.OnceFunc(asked.Done)
			defer askedDone()
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(faultLingerTimeout + 3*faultRTO))
			if i%3 == 2 {
				silentMu.Lock()
				silent = append(silent, c)
				silentMu.Unlock()
			} else {
				defer c.Close()
			}
			cmu.Lock()
			dialed++
			cmu.Unlock()
			br := bufio.NewReader(c)
			if _, err := io.WriteString(c, "ping\n"); err != nil {
				return
			}
			if line, err := br.ReadString('\n'); err != nil || line != "pong\n" {
				return
			}
			cmu.Lock()
			answered++
			cmu.Unlock()
			askedDone()
			switch i % 3 {
			case 1: // crossing
				io.WriteString(c, "ping\n")
			case 2: // silent
				return
			}
			if _, err := io.Copy(io.Discard, br); err == nil {
				cmu.Lock()
				eofs++
				cmu.Unlock()
			}
		}()
	}
	asked.Wait()
	for range dialed {
		select {
		case <-closed:
		case <-time.After(15 * time.Second):
			t.Fatal("the server did not close every connection it accepted")
		}
	}

	// Shutdown as soon as the server has closed every connection, while
	// the closes linger: it waits for them, and they end by themselves,
	// within the bound.
	bound := faultLingerTimeout + faultRTO
	ctx, cancel := context.WithTimeout(context.Background(), 3*bound)
	defer cancel()
	t0 := time.Now()
	err = ln.Shutdown(ctx)
	took := time.Since(t0)
	served.Wait()
	clients.Wait()
	require.NoError(t, err, "Shutdown")
	assert.LessOrEqual(t, took, bound, "Shutdown took %v", took)

	mu.Lock()
	defer mu.Unlock()
	s := ln.Stats()
	byOutcome := make(map[linger.Outcome]int)
	var longest time.Duration
	for _, ci := range infos {
		byOutcome[ci.Outcome]++
		longest = max(longest, ci.Linger)
		assert.LessOrEqual(t, ci.Linger, bound, "a %v close lingered %v", ci.Outcome, ci.Linger)
		switch ci.Outcome {
		case linger.Clean, linger.Pending, linger.Crossed, linger.Timeout, linger.Reset:
		default:
			t.Errorf("a close ended %v", ci.Outcome)
		}
	}
	t.Logf("%d dialed, %d answered, %d read the server's FIN; Shutdown %v; longest linger %v; outcomes %v; stats %+v",
		dialed, answered, eofs, took.Round(time.Millisecond), longest.Round(time.Millisecond), byOutcome, s)
	assert.EqualValues(t, s.Accepted, len(infos), "closes reported to OnClose")
	assert.EqualValues(t, s.Accepted, s.Closed(), "closes counted")
	assert.Zero(t, s.Open, "open")
	assert.Zero(t, s.Lingering, "lingering")
	require.GreaterOrEqual(t, answered, faultConns/2, "too few exchanges got through the fault to test the closes")
	require.Positive(t, byOutcome[linger.Timeout], "no close timed out: the silent clients did not test the bound")
}
