// Package netns is what the tests of linger and its benchmark need to
// count resets with the kernel's own counters: network namespaces made and
// removed with iproute2 (Linux only), veth pairs between them, and the
// Tcp and TcpExt counters of /proc/net/snmp and /proc/net/netstat.
//
// A namespace's counters move only for the sockets in it, so a test or a
// benchmark that runs its server alone in one counts that server's RSTs
// (TcpOutRsts) and the closes that sent them (TCPAbortOnClose,
// TCPAbortOnData), and nothing else's. Creating a namespace needs root.
//
// The root module's tests and the bench module import it; it is internal
// so that no user comes to depend on it.
package netns
