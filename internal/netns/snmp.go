package netns

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Counters are the counters that count a namespace's resets.
type Counters struct {
	OutRsts      int64 `json:"TcpOutRsts"`            // Tcp: OutRsts, segments sent with RST
	AbortOnClose int64 `json:"TcpExtTCPAbortOnClose"` // TcpExt: TCPAbortOnClose, closes with unread data
	AbortOnData  int64 `json:"TcpExtTCPAbortOnData"`  // TcpExt: TCPAbortOnData, data arriving after close
}

// Sub returns how the counters moved from d to c.
func (c Counters) Sub(d Counters) Counters {
	return Counters{c.OutRsts - d.OutRsts, c.AbortOnClose - d.AbortOnClose, c.AbortOnData - d.AbortOnData}
}

// Add returns the sum of two movements.
func (c Counters) Add(d Counters) Counters {
	return Counters{c.OutRsts + d.OutRsts, c.AbortOnClose + d.AbortOnClose, c.AbortOnData + d.AbortOnData}
}

// snmpFiles hold the calling process's namespace's counters: /proc/net is
// /proc/self/net.
var snmpFiles = []string{"/proc/net/snmp", "/proc/net/netstat"}

// ReadSNMP reads every counter of the calling process's network namespace,
// keyed "Group:Name" ("Tcp:OutRsts", "TcpExt:TCPAbortOnClose").
func ReadSNMP() (map[string]int64, error) {
	m := make(map[string]int64)
	for _, f := range snmpFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		c, err := ParseSNMP(string(b))
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		for k, v := range c {
			m[k] = v
		}
	}
	return m, nil
}

// ReadCounters reads the reset counters of the calling process's network
// namespace.
func ReadCounters() (Counters, error) {
	m, err := ReadSNMP()
	if err != nil {
		return Counters{}, err
	}
	return CountersOf(m)
}

// CountersOf picks the reset counters out of what [ReadSNMP] read.
func CountersOf(m map[string]int64) (Counters, error) {
	var c Counters
	for key, dst := range map[string]*int64{
		"Tcp:OutRsts":            &c.OutRsts,
		"TcpExt:TCPAbortOnClose": &c.AbortOnClose,
		"TcpExt:TCPAbortOnData":  &c.AbortOnData,
	} {
		v, ok := m[key]
		if !ok {
			return Counters{}, fmt.Errorf("no counter %s in /proc/net/snmp or /proc/net/netstat", key)
		}
		*dst = v
	}
	return c, nil
}

// ParseSNMP parses the format of /proc/net/snmp and /proc/net/netstat: for
// each group a line of names and then a line of values, both starting with
// the group's name ("Tcp:"). Keys are "Group:Name".
func ParseSNMP(text string) (map[string]int64, error) {
	m := make(map[string]int64)
	names := make(map[string][]string) // a group's names, waiting for its values
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20) // TcpExt's lines are long, and grow with kernels
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		group := f[0]
		hdr, ok := names[group]
		if !ok {
			names[group] = f[1:]
			continue
		}
		delete(names, group)
		if len(hdr) != len(f)-1 {
			return nil, fmt.Errorf("group %s has %d names and %d values", group, len(hdr), len(f)-1)
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s%s: %w", group, hdr[i], err)
			}
			m[group+hdr[i]] = n
		}
	}
	return m, sc.Err()
}
