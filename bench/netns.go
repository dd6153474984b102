package main

// The two network namespaces of a run, and the kernel counters that count
// the backend's resets.
//
// The backend lives alone in one namespace, so the TCP counters of that
// namespace (TcpOutRsts, TcpExtTCPAbortOnClose, TcpExtTCPAbortOnData) move
// only for its sockets. Clients and proxies live in the other namespace; a
// veth pair joins the two, with addresses that exist only there.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	backendIP = "10.213.7.1" // the backend's end of the veth pair
	clientIP  = "10.213.7.2" // the clients' and proxies' end
	nsPrefix  = "lingerbench-"
)

// netns is the pair of namespaces of one run, named after the process that
// made them so a later run can tell stale ones from live ones.
type netns struct {
	backend, client string
}

func newNetns() (*netns, error) {
	pid := os.Getpid()
	n := &netns{backend: fmt.Sprintf("%s%d-b", nsPrefix, pid), client: fmt.Sprintf("%s%d-c", nsPrefix, pid)}
	vb, vc := fmt.Sprintf("lb%db", pid), fmt.Sprintf("lb%dc", pid)
	steps := [][]string{
		{"netns", "add", n.backend},
		{"netns", "add", n.client},
		{"link", "add", vb, "netns", n.backend, "type", "veth", "peer", "name", vc, "netns", n.client},
		{"-n", n.backend, "link", "set", "lo", "up"},
		{"-n", n.client, "link", "set", "lo", "up"},
		{"-n", n.backend, "addr", "add", backendIP + "/24", "dev", vb},
		{"-n", n.client, "addr", "add", clientIP + "/24", "dev", vc},
		{"-n", n.backend, "link", "set", vb, "up"},
		{"-n", n.client, "link", "set", vc, "up"},
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			n.remove()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return n, nil
}

// remove stops whatever still runs in the namespaces (by PID, as listed by
// ip netns pids) and deletes them; deleting a namespace removes its end of
// the veth pair, and with it the other end.
func (n *netns) remove() {
	for _, ns := range []string{n.client, n.backend} {
		removeNamespace(ns)
	}
}

func removeNamespace(ns string) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		pids := namespacePids(ns)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			syscall.Kill(pid, sig)
		}
		for i := 0; i < 20 && len(namespacePids(ns)) > 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	exec.Command("ip", "netns", "del", ns).Run()
}

func namespacePids(ns string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeStaleNamespaces deletes the namespaces of earlier runs whose process
// is gone (a crash, a SIGKILL). Namespaces of a run still going are left.
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		name := f[0]
		owner, _, _ := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
		if pid, err := strconv.Atoi(owner); err == nil && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		fmt.Fprintf(os.Stderr, "lingerbench: removing stale network namespace %s\n", name)
		removeNamespace(name)
	}
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// tcpCounters are the counters that count a namespace's resets.
type tcpCounters struct {
	OutRsts      int64 `json:"TcpOutRsts"`            // segments sent with RST
	AbortOnClose int64 `json:"TcpExtTCPAbortOnClose"` // closes with unread data
	AbortOnData  int64 `json:"TcpExtTCPAbortOnData"`  // data arriving after close
}

func (c tcpCounters) sub(d tcpCounters) tcpCounters {
	return tcpCounters{c.OutRsts - d.OutRsts, c.AbortOnClose - d.AbortOnClose, c.AbortOnData - d.AbortOnData}
}

func (c tcpCounters) add(d tcpCounters) tcpCounters {
	return tcpCounters{c.OutRsts + d.OutRsts, c.AbortOnClose + d.AbortOnClose, c.AbortOnData + d.AbortOnData}
}

// readCounters reads the counters of the calling process's network
// namespace: /proc/net is /proc/self/net.
func readCounters() (tcpCounters, error) {
	var text strings.Builder
	for _, f := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return tcpCounters{}, err
		}
		text.Write(b)
	}
	m, err := parseSNMP(text.String())
	if err != nil {
		return tcpCounters{}, err
	}
	var c tcpCounters
	for key, dst := range map[string]*int64{
		"Tcp:OutRsts":            &c.OutRsts,
		"TcpExt:TCPAbortOnClose": &c.AbortOnClose,
		"TcpExt:TCPAbortOnData":  &c.AbortOnData,
	} {
		v, ok := m[key]
		if !ok {
			return tcpCounters{}, fmt.Errorf("no counter %s in /proc/net/snmp or /proc/net/netstat", key)
		}
		*dst = v
	}
	return c, nil
}

// parseSNMP parses /proc/net/snmp and /proc/net/netstat: per group a line
// of names, then a line of values, both starting with "Group:". Keys are
// "Group:Name".
func parseSNMP(text string) (map[string]int64, error) {
	m := make(map[string]int64)
	names := make(map[string][]string)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		hdr, ok := names[f[0]]
		if !ok {
			names[f[0]] = f[1:]
			continue
		}
		delete(names, f[0])
		if len(hdr) != len(f)-1 {
			return nil, fmt.Errorf("group %s has %d names and %d values", f[0], len(hdr), len(f)-1)
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s%s: %v", f[0], hdr[i], err)
			}
			m[f[0]+hdr[i]] = n
		}
	}
	return m, sc.Err()
}
