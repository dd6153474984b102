package main

// The two network namespaces of a run.
//
// The backend lives alone in one namespace, so the TCP counters of that
// namespace (TcpOutRsts, TcpExtTCPAbortOnClose, TcpExtTCPAbortOnData) move
// only for its sockets. Clients and proxies live in the other namespace; a
// veth pair joins the two, with addresses that exist only there.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/linger-go/linger/internal/netns"
)

const (
	backendIP = "10.213.7.1" // the backend's end of the veth pair
	clientIP  = "10.213.7.2" // the clients' and proxies' end
	nsPrefix  = "lingerbench-"
)

// namespaces are the pair of namespaces of one run, named after the
// process that made them so a later run can tell stale ones from live
// ones.
type namespaces struct {
	backend, client string
}

func newNamespaces() (*namespaces, error) {
	pid := os.Getpid()
	n := &namespaces{backend: fmt.Sprintf("%s%d-b", nsPrefix, pid), client: fmt.Sprintf("%s%d-c", nsPrefix, pid)}
	err := netns.Add(n.backend)
	if err == nil {
		err = netns.Add(n.client)
	}
	if err == nil {
		err = netns.Veth(
			netns.End{NS: n.backend, Dev: fmt.Sprintf("lb%db", pid), Addr: backendIP + "/24"},
			netns.End{NS: n.client, Dev: fmt.Sprintf("lb%dc", pid), Addr: clientIP + "/24"})
	}
	if err != nil {
		n.remove()
		return nil, err
	}
	return n, nil
}

// remove stops whatever still runs in the namespaces (by PID, as listed by
// ip netns pids) and deletes them; deleting a namespace removes its end of
// the veth pair, and with it the other end.
func (n *namespaces) remove() {
	for _, ns := range []string{n.client, n.backend} {
		netns.Remove(ns)
	}
}

// removeStaleNamespaces deletes the namespaces of earlier runs whose process
// is gone (a crash, a SIGKILL). Namespaces of a run still going are left.
func removeStaleNamespaces() {
	names, err := netns.List()
	if err != nil {
		return
	}
	for _, name := range names {
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		owner, _, _ := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
		if pid, err := strconv.Atoi(owner); err == nil && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		fmt.Fprintf(os.Stderr, "lingerbench: removing stale network namespace %s\n", name)
		netns.Remove(name)
	}
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
