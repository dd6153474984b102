package netns

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ip runs iproute2's ip with args; its error says the command and what
// ip printed.
func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Add creates the network namespace name with its loopback up.
func Add(name string) error {
	if err := ip("netns", "add", name); err != nil {
		return err
	}
	if err := ip("-n", name, "link", "set", "lo", "up"); err != nil {
		Delete(name)
		return err
	}
	return nil
}

// Delete deletes the namespace name. The namespace lives on while a
// process runs in it; deleting it removes its end of a veth pair, and with
// it the other end.
func Delete(name string) error {
	return ip("netns", "del", name)
}

// End is one end of a veth pair: its device, the namespace it goes into,
// and its address ("10.0.0.1/24").
type End struct {
	NS, Dev, Addr string
}

// Veth joins two namespaces by a veth pair, each end with its address and
// up.
func Veth(a, b End) error {
	steps := [][]string{
		{"link", "add", a.Dev, "netns", a.NS, "type", "veth", "peer", "name", b.Dev, "netns", b.NS},
		{"-n", a.NS, "addr", "add", a.Addr, "dev", a.Dev},
		{"-n", b.NS, "addr", "add", b.Addr, "dev", b.Dev},
		{"-n", a.NS, "link", "set", a.Dev, "up"},
		{"-n", b.NS, "link", "set", b.Dev, "up"},
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// Command is the command that runs name with args inside namespace ns
// (ip netns exec), as a whole process: unlike unix.Setns on one locked
// thread, nothing of the calling process but that command is in the
// namespace.
func Command(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Entered reports whether the calling process runs in namespace name.
func Entered(name string) (bool, error) {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return false, err
	}
	want, err := os.Stat("/run/netns/" + name)
	if err != nil {
		return false, err
	}
	return os.SameFile(self, want), nil
}

// List lists the named namespaces.
func List() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Pids lists the processes that run in namespace name, the calling one
// left out.
func Pids(name string) []int {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
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

// Remove stops whatever still runs in namespace name, by PID (SIGTERM,
// then after up to 2 s SIGKILL), and deletes it.
func Remove(name string) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		pids := Pids(name)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			syscall.Kill(pid, sig)
		}
		for i := 0; i < 20 && len(Pids(name)) > 0; i++ {
			time.Sleep(100 * time.Millisecond) // polling: nothing tells us when a process in another namespace exits
		}
	}
	Delete(name)
}
