package main

// faults: the idle race and the rolling deploy behind nginx over a lossy
// link. The backend's namespace drops faultLoss % of the packets it sends
// and of those it receives, at random, with nftables (tc netem is not
// there to be had everywhere; nft's numgen is in every kernel with
// nf_tables). The root package's TestFaultsOnTheWire covers the closes
// themselves (every linger ends within LingerTimeout + one RTO, under
// loss, lost FINs and lost ACKs of our FIN); here the bar is the user's:
// lingerhttp loses no request, its deploy's Shutdown returns within its
// bound, and nginx, configured for a lossy link (proxyConfig.LossyLink),
// does not turn a lost packet into a dead upstream.
//
// Opt-in (-only faults): its loss makes every run take longer than the
// default run's budget allows.

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/internal/netns"
)

// faultLoss is the loss in each direction, in percent.
const faultLoss = 3

// faultShutdownBound bounds lingerhttp's deploy Shutdown over the lossy
// link: its DrainDelay, the requests in flight, then the lingering
// closes (LingerTimeout), each of the last two allowed one
// retransmission timeout (the initial RTO, 1 s: RFC 6298 §2.1).
const faultShutdownBound = deployDrainDelay + linger.DefaultLingerTimeout + 2*time.Second

var (
	faultsIdleRaceBackend = &backend{name: "faults-idle-race", variants: []string{"raw", "linger", "lingerhttp"}, server: func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(echoHandler(2)), IdleTimeout: idleRaceTimeout, ErrorLog: quiet}
	}}
	faultsDeployBackend = &backend{name: "faults-deploy", variants: []string{"raw", "lingerhttp"}, server: deployServer, deploy: true}
)

var faultRowNames = []string{fmt.Sprintf("loss%d-idle-race", faultLoss), fmt.Sprintf("loss%d-deploy", faultLoss)}

func init() {
	backends = append(backends, faultsIdleRaceBackend, faultsDeployBackend)
	scenarios = append(scenarios, &scenario{
		name: "faults", backend: faultsIdleRaceBackend, proxy: "nginx", run: (*driver).faults,
		rows: faultRowNames, optIn: true, lossless: []string{"lingerhttp"}, lossyLink: true,
		// Over a lossy link the backend's kernel answers with a RST a
		// segment that arrives, retransmitted, for a connection or a
		// listener already gone: a SYN nginx sent before the deploy
		// closed the listener, lost and resent 1 s later, is refused
		// (nginx tries the other upstream). That is the loss's doing,
		// not the close's: the lossless rows are held to their failed
		// requests and to the close-abort counters, not to TcpOutRsts.
		refusedAfterClose: true,
		needs: func() string {
			if _, err := exec.LookPath("nft"); err != nil {
				return "nft (nftables) is not installed (bench/run installs it with apt-get as root)"
			}
			return ""
		},
	})
}

// faults runs the idle race (its clients straight to the backend) and the
// deploy behind nginx with the backend's namespace losing packets.
func (d *driver) faults(s *scenario) error {
	if d.netns == "" {
		return fmt.Errorf("faults: the loss needs the backend's network namespace")
	}
	if err := d.nft(fmt.Sprintf(`table inet lingerbench_faults {
	chain out {
		type filter hook output priority 0;
		numgen random mod 100 < %[1]d drop
	}
	chain in {
		type filter hook input priority 0;
		numgen random mod 100 < %[1]d drop
	}
}
`, faultLoss)); err != nil {
		return err
	}
	defer d.nft("delete table inet lingerbench_faults\n")

	if err := d.idleRace(&scenario{name: faultRowNames[0], backend: faultsIdleRaceBackend}); err != nil {
		return err
	}

	// The deploy, one round at a time, so each Shutdown's time is seen
	// (the row keeps their mean) and held to its bound.
	deploy := &scenario{name: faultRowNames[1], backend: faultsDeployBackend, proxy: "nginx", lossyLink: true}
	sz := d.sz
	defer func() { d.sz = sz }()
	d.sz.shutdownRounds = 1
	var slow []string
	worst := make(map[string]float64)
	for range sz.shutdownRounds {
		before := make(map[string]float64)
		for _, v := range deploy.backend.variants {
			before[v] = d.row(deploy.name, v).Extra["Shutdown ms"]
		}
		if err := d.shutdown(deploy); err != nil {
			return err
		}
		for _, v := range deploy.backend.variants {
			r := d.row(deploy.name, v)
			ms := r.Extra["Shutdown ms"] - before[v]
			worst[v] = max(worst[v], ms)
			if v == "lingerhttp" && ms > float64(faultShutdownBound.Milliseconds()) {
				slow = append(slow, fmt.Sprintf("%.0f ms", ms))
			}
		}
	}
	for v, ms := range worst {
		r := d.row(deploy.name, v)
		r.Extra["Shutdown ms"] /= float64(sz.shutdownRounds)
		r.Extra["Shutdown ms max"] = ms
	}
	if len(slow) > 0 {
		return fmt.Errorf("%s: lingerhttp's Shutdown took %s, above its bound %v", deploy.name, strings.Join(slow, ", "), faultShutdownBound)
	}
	return nil
}

// nft loads rules into the backend's namespace.
func (d *driver) nft(rules string) error {
	cmd := netns.Command(d.netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", d.netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}
