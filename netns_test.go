//go:build linux

package linger_test

// Counting the RSTs a test provokes needs counters that nothing else moves:
// the TCP counters of a private network namespace. inNetns creates one and
// runs the calling test again inside it, in a child process, so every
// socket the test opens lives there, on that namespace's loopback.
//
// Why a child process and not unix.Setns on a locked OS thread: a socket
// made on the thread that called Setns is in the namespace, but the runtime
// creates threads by cloning whichever thread it is on, so a thread cloned
// from the locked one inherits the namespace and may later run unrelated
// goroutines in it. A process started by `ip netns exec` is in the
// namespace as a whole, and nothing else of the test binary is.
//
// The namespace's counters count both ends of every connection, and a
// client can send a RST that is not the server's doing: on loopback with
// more than one CPU, a client's delayed ACK can be delivered after its FIN
// (each CPU queues what it sends on its own backlog), the server's
// TIME-WAIT socket answers the stale ACK with an ACK, and the client, whose
// socket is gone by then, answers that with a RST. So the child also
// captures every RST on the namespace's loopback (an AF_PACKET socket with
// a filter that keeps RSTs only) and tells who sent each by its source
// port; the kernel's count says the capture missed none.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linger-go/linger/internal/netns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	// netnsChildEnv holds, in the child process, the name of the test it
	// runs (t.Name()); netnsNameEnv the namespace it must be running in.
	netnsChildEnv = "LINGER_TEST_NETNS_CHILD"
	netnsNameEnv  = "LINGER_TEST_NETNS_NAME"
	// netnsDoneMark is printed by the child when the body has run and
	// passed, so that a child that ran no test at all ("no tests to run"
	// exits 0) fails the parent.
	netnsDoneMark = "linger-netns-child-passed:"
)

var netnsSeq atomic.Int64

// testNetns is the namespace a test body runs in, as the body sees it.
type testNetns struct {
	name    string
	before  map[string]int64 // Tcp and TcpExt counters when the body began
	capture int              // AF_PACKET socket receiving the RSTs on lo
	rsts    map[int]int      // captured RSTs by source port
	bare    map[int]int      // of those, RSTs without ACK (see resetCounts.Bare)
}

// resetCounts is what a body provoked: the namespace's counters, and who
// sent each RST.
type resetCounts struct {
	netns.Counters

	// BySource counts the captured RSTs by source port.
	BySource map[int]int
	// Bare counts, by source port, the RSTs without ACK: a TCP answers a
	// segment that carries ACK, of a connection it does not have, with a
	// RST whose sequence number is that ACK's and no ACK of its own
	// (RFC 9293 §3.10.7.1; Linux's tcp_v4_send_reset). A socket that aborts
	// its own connection (tcp_send_active_reset: closed with unread data,
	// SO_LINGER 0) sends RST with ACK.
	Bare map[int]int
	// Moved holds every Tcp and TcpExt counter that moved, for failure
	// messages ("TcpExt:TCPTimeWaitOverflow": 3).
	Moved map[string]int64
}

// From returns how many RSTs were sent from port.
func (r resetCounts) From(port int) int { return r.BySource[port] }

// NotFrom returns how many RSTs were sent from any other port.
func (r resetCounts) NotFrom(port int) int { return sumNotFrom(r.BySource, port) }

// BareNotFrom returns how many RSTs without ACK were sent from any other
// port (see Bare).
func (r resetCounts) BareNotFrom(port int) int { return sumNotFrom(r.Bare, port) }

func sumNotFrom(m map[int]int, port int) int {
	n := 0
	for p, c := range m {
		if p != port {
			n += c
		}
	}
	return n
}

func (r resetCounts) String() string {
	return fmt.Sprintf("TcpOutRsts %d, TcpExtTCPAbortOnClose %d, TcpExtTCPAbortOnData %d", r.OutRsts, r.AbortOnClose, r.AbortOnData)
}

// inNetns runs body in a fresh network namespace that only it uses, with
// its loopback up: body's sockets on 127.0.0.1 are in that namespace.
//
// In the go test process (the parent) it creates the namespace, runs the
// test binary inside it with -test.run selecting exactly the calling test
// (t.Name()), fails t if that child fails, and deletes the namespace at
// cleanup. In the child it checks that it really runs in the namespace,
// starts capturing RSTs, and runs body, which asserts; see [testNetns.resets].
//
// It skips t where a namespace cannot be made: not root, no ip
// (iproute2), or a kernel or container that refuses `ip netns add`.
func inNetns(t *testing.T, body func(t *testing.T, ns *testNetns)) {
	t.Helper()
	if name := os.Getenv(netnsChildEnv); name != "" {
		if name != t.Name() {
			t.Skipf("this process is the network-namespace child of %s", name)
		}
		runNetnsChild(t, os.Getenv(netnsNameEnv), body)
		return
	}

	if os.Geteuid() != 0 {
		t.Skip("counting RSTs needs a private network namespace, and creating one needs root (run go test as root, or in a container with CAP_SYS_ADMIN and CAP_NET_RAW)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("counting RSTs needs a private network namespace, created with ip (iproute2), which is not installed")
	}
	self, err := os.Executable()
	require.NoError(t, err)

	ns := fmt.Sprintf("linger-test-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if err := netns.Add(ns); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(ns); err != nil {
			t.Error(err)
		}
	})

	timeout := netnsChildTimeout(t)
	cmd := netns.Command(ns, self,
		"-test.run="+exactRunPattern(t.Name()), "-test.count=1", "-test.v=true", "-test.shuffle=off",
		"-test.timeout="+timeout.String())
	cmd.Env = append(os.Environ(), netnsChildEnv+"="+t.Name(), netnsNameEnv+"="+ns)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), netnsDoneMark+" "+t.Name()+"\n") {
		t.Fatalf("the test failed in network namespace %s (child: %v):\n%s", ns, err, out)
	}
	if testing.Verbose() {
		t.Logf("child in network namespace %s:\n%s", ns, out)
	}
}

func runNetnsChild(t *testing.T, name string, body func(t *testing.T, ns *testNetns)) {
	in, err := netns.Entered(name)
	require.NoError(t, err)
	require.True(t, in, "the child of %s is not in network namespace %s", t.Name(), name)

	ns := &testNetns{name: name, rsts: make(map[int]int), bare: make(map[int]int)}
	ns.capture, err = captureResets()
	require.NoError(t, err, "capturing RSTs on lo")
	t.Cleanup(func() { unix.Close(ns.capture) })
	ns.before = readTCPCounters(t)

	body(t, ns)
	if !t.Failed() {
		fmt.Printf("%s %s\n", netnsDoneMark, t.Name())
	}
}

// netnsChildTimeout leaves the child what the test's own deadline allows.
func netnsChildTimeout(t *testing.T) time.Duration {
	d := 5 * time.Minute
	if deadline, ok := t.Deadline(); ok {
		d = min(d, time.Until(deadline)-10*time.Second)
	}
	return max(d, 10*time.Second)
}

// exactRunPattern is a -test.run pattern that selects the test named name
// (as t.Name() spells it, subtests separated by "/") and nothing else.
func exactRunPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// resets returns what the body provoked so far: how the namespace's
// counters moved since it began, and the RSTs captured by source port. It
// first waits, up to 5 s, until the capture has seen as many RSTs as the
// kernel has sent.
func (ns *testNetns) resets(t *testing.T) resetCounts {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ns.drainCapture(t)
		r := tcpDelta(t, ns.before, readTCPCounters(t))
		captured := 0
		for _, n := range ns.rsts {
			captured += n
		}
		r.BySource = ns.rsts
		r.Bare = ns.bare
		if int64(captured) == r.OutRsts {
			return r
		}
		require.Less(t, int64(captured), r.OutRsts, "captured more RSTs than the kernel sent")
		require.True(t, time.Now().Before(deadline), "the kernel sent %d RSTs, the capture saw %d", r.OutRsts, captured)
		// Wait for the next captured packet (or recheck in 100 ms).
		fds := []unix.PollFd{{Fd: int32(ns.capture), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 100); err != nil && !errors.Is(err, unix.EINTR) {
			require.NoError(t, err)
		}
	}
}

// drainCapture reads every RST the capture socket holds.
func (ns *testNetns) drainCapture(t *testing.T) {
	t.Helper()
	buf := make([]byte, 256)
	for {
		n, _, err := unix.Recvfrom(ns.capture, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			break
		}
		require.NoError(t, err, "reading the RST capture")
		port, ack, ok := rstSource(buf[:n])
		require.True(t, ok, "the capture filter let through a packet that is not an IPv4 TCP RST: % x", buf[:n])
		ns.rsts[port]++
		if !ack {
			ns.bare[port]++
		}
	}
	st, err := unix.GetsockoptTpacketStats(ns.capture, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	require.NoError(t, err)
	require.Zero(t, st.Drops, "the RST capture dropped packets")
}

// captureResets opens an AF_PACKET socket on lo that receives the IPv4 TCP
// segments with RST set, once each (as received, not as sent).
func captureResets() (int, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return -1, err
	}
	// Protocol 0 receives nothing until bind, so no packet passes
	// unfiltered.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// Classic BPF on lo's 14-byte Ethernet header: drop outgoing copies;
	// keep IPv4, protocol TCP, flags & RST; capture 128 bytes of it.
	const skfAdPktType = 0xfffff000 + 4 // SKF_AD_OFF + SKF_AD_PKTTYPE
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdPktType},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 7, K: unix.PACKET_OUTGOING},
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 5, K: unix.ETH_P_IP},
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 14 + 9},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 3, K: unix.IPPROTO_TCP},
		{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 14},
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_IND, K: 14 + 13},
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: 1, K: 0x04},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: 128},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	setup := func() error {
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			return fmt.Errorf("SO_ATTACH_FILTER: %w", err)
		}
		// Room for every RST of a run, so none is dropped before resets
		// reads them.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return fmt.Errorf("SO_RCVBUFFORCE: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index})
	}
	if err := setup(); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// rstSource returns the TCP source port of a captured RST and whether it
// carries ACK.
func rstSource(frame []byte) (port int, ack, ok bool) {
	if len(frame) < 14+20 {
		return 0, false, false
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_TCP || len(ip) < ihl+14 || ip[ihl+13]&0x04 == 0 {
		return 0, false, false
	}
	return int(binary.BigEndian.Uint16(ip[ihl:])), ip[ihl+13]&0x10 != 0, true
}

// readTCPCounters reads this namespace's Tcp and TcpExt counters.
func readTCPCounters(t *testing.T) map[string]int64 {
	t.Helper()
	m, err := netns.ReadSNMP()
	require.NoError(t, err)
	return m
}

// tcpDelta is how the counters moved from before to after.
func tcpDelta(t *testing.T, before, after map[string]int64) resetCounts {
	t.Helper()
	d := resetCounts{Moved: make(map[string]int64)}
	for k, v := range after {
		if (strings.HasPrefix(k, "Tcp:") || strings.HasPrefix(k, "TcpExt:")) && v != before[k] {
			d.Moved[k] = v - before[k]
		}
	}
	b, err := netns.CountersOf(before)
	require.NoError(t, err)
	a, err := netns.CountersOf(after)
	require.NoError(t, err)
	d.Counters = a.Sub(b)
	return d
}

// TestNetnsCountsResets checks the instrument: in a namespace, a connection
// closed with unread data is counted once by the kernel and once by the
// capture, from the closing side's port.
func TestNetnsCountsResets(t *testing.T) {
	inNetns(t, func(t *testing.T, ns *testNetns) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		c, s := pair(t, ln)
		_, err = c.Write([]byte("xy"))
		require.NoError(t, err)
		var b [1]byte
		_, err = s.Read(b[:]) // one segment: "y" is queued now
		require.NoError(t, err)
		require.NoError(t, s.Close())

		r := ns.resets(t)
		port := ln.Addr().(*net.TCPAddr).Port
		assert.Equal(t, int64(1), r.OutRsts, "TcpOutRsts")
		assert.Equal(t, int64(1), r.AbortOnClose, "TcpExtTCPAbortOnClose")
		assert.Equal(t, 1, r.From(port), "RSTs from the server's port; by source: %v", r.BySource)
		assert.Zero(t, r.NotFrom(port), "RSTs from elsewhere; by source: %v", r.BySource)
		assert.Zero(t, r.Bare[port], "an abort's RST carries ACK; without ACK: %v", r.Bare)
	})
}
