// Command lingerbench is linger's close-behaviour benchmark: it runs every
// scenario on the raw listener and on linger, alternating, counts the
// backend's resets with the kernel's own counters, and prints a table
// (also written to results/latest/latest.json, with the sweep drawn in
// results/latest/sweep.svg; results/latest is not tracked). -publish copies
// a default run's files to results/, the copy the README quotes and git
// tracks. Run it as bench/run from the repository root.
//
// The process started by bench/run is the top: as root it creates two
// network namespaces joined by a veth pair and re-runs itself in the
// clients' namespace as the driver; the driver starts the backend (this
// binary again) in the backend's namespace, the proxies next to itself, and
// runs the scenarios. Without root the driver runs on loopback and counts
// the resets the clients see.
//
// The restart scenario runs only when named (-only restart): its backend
// is one process per generation of the server, restarted in place, with
// and without tableflip (restart.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick, check bool
	only         map[string]bool // scenarios to run; empty: all
	out          string          // this run's results directory
	publish      bool            // also copy the run's results to publishDir
	verbose      bool
	keep         bool          // keep the proxies' configs and logs
	deploys      int           // apache-deploy's deploys per variant; 0: the mode's
	apacheRounds int           // apache-idle's rounds; 0: the mode's
	churnRounds  int           // churn's rounds; 0: the mode's
	deployThink  time.Duration // apache-deploy: each client pauses up to this long between requests
	soak         time.Duration // the soak's length; 0: soakDefault
}

func main() {
	var (
		o         options
		only      string
		role      string
		backendNS string
		host      string
		counted   bool
		genVar    string
		genAddr   string
	)
	flag.BoolVar(&o.quick, "quick", false, "small counts, for CI (under 90 s)")
	noRSTs, lossless := checkedRows()
	flag.BoolVar(&o.check, "check", false, "exit 1 if linger lets the backend send a RST in "+strings.Join(noRSTs, ", ")+
		", or a request fails or a RST is sent in "+strings.Join(lossless, ", ")+
		", or the backend's /admin runs in smuggle, or lingerhttp's deploy Shutdown in "+strings.Join(slowlorisRowNames(), ", ")+
		" outlasts its bound or leaves a connection descriptor open, or the soak fails a request, aborts a close or grows")
	flag.StringVar(&only, "only", "", "comma-separated scenarios to run (default all but the opt-in "+strings.Join(optInScenarios(), ", ")+")")
	flag.StringVar(&o.out, "out", "results/latest", "directory for this run's latest.json, sweep.svg, tables and the proxies' files (untracked)")
	flag.BoolVar(&o.publish, "publish", false, "also copy the results to "+publishDir+"/, the copy the README quotes: the full default run's table, latest.json and sweep.svg, or -only restart's table, or the soak's soak.svg")
	flag.BoolVar(&o.verbose, "v", false, "log each run")
	flag.BoolVar(&o.keep, "keep", false, "keep the proxies' configs and logs in the -out directory's tmp/")
	flag.IntVar(&o.deploys, "deploys", 0, "apache-deploy (which runs only when -only names it) and haproxy-deploy: deploys per variant (default 10, -quick 2; haproxy-deploy 2)")
	flag.DurationVar(&o.deployThink, "deploy-think", 0, "apache-deploy: each client pauses a random 0 to this long between its requests (default 0: back to back)")
	flag.IntVar(&o.apacheRounds, "apache-idle-rounds", 0, "apache-idle: rounds of 3 bursts per variant (default 1; nginx-idle's count is 2 rounds of 10)")
	flag.IntVar(&o.churnRounds, "churn-rounds", 0, "churn: rounds of every variant (default 3)")
	flag.DurationVar(&o.soak, "soak", 0, "the soak scenario's length (default "+soakDefault.String()+"); setting it runs the soak alone unless -only says more")
	flag.StringVar(&role, "role", "", "internal: driver, backend or restart-gen")
	flag.StringVar(&backendNS, "backend-ns", "", "internal: the backend's network namespace")
	flag.StringVar(&host, "host", "127.0.0.1", "internal: the backend's address")
	flag.BoolVar(&counted, "count-rsts", false, "internal: the backend reads its namespace's counters")
	flag.StringVar(&genVar, "variant", "", "internal: the restart generation's variant")
	flag.StringVar(&genAddr, "addr", "", "internal: the restart generation's address")
	flag.Parse()
	for name, n := range map[string]int{"deploys": o.deploys, "apache-idle-rounds": o.apacheRounds, "churn-rounds": o.churnRounds} {
		if n < 0 || n > 1000 {
			fmt.Fprintf(os.Stderr, "lingerbench: -%s %d: want 0 to 1000\n", name, n)
			os.Exit(2)
		}
	}
	if o.deployThink < 0 || o.deployThink > 10*time.Second {
		fmt.Fprintf(os.Stderr, "lingerbench: -deploy-think %v: want 0 to 10s\n", o.deployThink)
		os.Exit(2)
	}
	if o.soak != 0 && (o.soak < soakMin || o.soak > soakMax) {
		fmt.Fprintf(os.Stderr, "lingerbench: -soak %v: want %v to %v\n", o.soak, soakMin, soakMax)
		os.Exit(2)
	}
	if o.soak != 0 && only == "" {
		only = "soak"
	}
	var err error
	if o.only, err = parseOnly(only); err != nil {
		fmt.Fprintf(os.Stderr, "lingerbench: -only: %v\n", err)
		os.Exit(2)
	}
	if err := checkPublish(o); err != nil {
		fmt.Fprintf(os.Stderr, "lingerbench: -publish: %v\n", err)
		os.Exit(2)
	}
	switch role {
	case "backend":
		os.Exit(runBackend(host, counted))
	case "driver":
		os.Exit(runDriver(o, backendNS, ""))
	case "restart-gen":
		os.Exit(runRestartGen(genVar, genAddr))
	case "":
		os.Exit(runTop(o))
	default:
		fmt.Fprintf(os.Stderr, "lingerbench: unknown role %q\n", role)
		os.Exit(2)
	}
}

// runTop sets up the namespaces and runs the driver inside, or, without
// root, runs the driver itself on loopback.
func runTop(o options) int {
	if os.Geteuid() != 0 {
		return runDriver(o, "", "not root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return runDriver(o, "", "ip (iproute2) is missing")
	}
	removeStaleNamespaces()
	ns, err := newNamespaces()
	if err != nil {
		return runDriver(o, "", fmt.Sprintf("cannot create network namespaces: %v", err))
	}
	defer ns.remove()

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lingerbench:", err)
		return 1
	}
	args := append([]string{"netns", "exec", ns.client, self, "-role", "driver", "-backend-ns", ns.backend}, os.Args[1:]...)
	cmd := exec.Command("ip", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "lingerbench:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var killed <-chan time.Time
	for {
		select {
		case err := <-done:
			if killed != nil {
				return 130
			}
			if err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					return ee.ExitCode()
				}
				return 1
			}
			return 0
		case <-sigs:
			// The driver stops its children and exits; give it a moment.
			cmd.Process.Signal(syscall.SIGTERM)
			if killed == nil {
				killed = time.After(15 * time.Second)
			}
		case <-killed:
			cmd.Process.Kill()
		}
	}
}

// signalContext is canceled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// raiseFileLimit lifts RLIMIT_NOFILE: the overhead scenario holds 10k
// connections at once on each side. Go already raises the soft limit to
// the hard one; as root the hard one can go up too.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	const want = 1 << 16
	if lim.Max < want && os.Geteuid() == 0 {
		lim.Max = want
	}
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
