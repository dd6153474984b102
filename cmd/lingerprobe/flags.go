package main

// The command line: flags, their bounds, and run.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
)

// Exit statuses.
const (
	exitClean = 0 // the balancer closes idle connections first
	exitRaces = 1 // the backend closes them first, or at the same time
	exitError = 2 // bad flags, an unreachable backend, or no verdict
)

// Bounds on the flags, so that no run is unbounded in time or requests.
const (
	maxMaxIdle     = 10 * time.Minute
	maxRaceN       = 1000
	maxConns       = 256
	maxMaxRequests = 10000
	maxEarlyBody   = 64 << 20
	maxEarlyTries  = 20
)

// balancers are the -lb values and their default idle timeouts.
var balancers = map[string]struct {
	idle time.Duration
	name string
}{
	// ALB's idle timeout attribute, idle_timeout.timeout_seconds, defaults
	// to 60 s.
	"alb": {60 * time.Second, "ALB"},
	// nginx's upstream keepalive_timeout defaults to 60 s (since 1.15.3).
	"nginx": {60 * time.Second, "nginx"},
	// HAProxy keeps idle server connections in its pool and purges them
	// gradually; 60 s is as long as the "timeout server" of common setups.
	"haproxy": {60 * time.Second, "HAProxy"},
}

// options are the parsed flags.
type options struct {
	target      *url.URL
	addr        string // host:port to dial
	lb          string
	lbIdle      time.Duration
	maxIdle     time.Duration
	maxRequests int
	raceN       int
	sweep       time.Duration
	conns       int
	earlyBody   int
	earlyTries  int
	rejectPath  string
	timeout     time.Duration
	insecure    bool
	json        bool
}

// parseFlags parses args into options, writing usage and errors to stderr.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("lingerprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.lb, "lb", "alb", "the balancer in front of the backend: alb, nginx or haproxy")
	fs.DurationVar(&o.lbIdle, "lb-idle", 0, "the balancer's idle timeout for backend connections (default: 60s, the default of each -lb)")
	fs.DurationVar(&o.maxIdle, "max-idle", 120*time.Second, "stop waiting for the backend to close an idle connection after this long (at most 10m)")
	fs.IntVar(&o.maxRequests, "max-requests", 100, "send at most this many requests on one connection to find the backend's limit (0 skips)")
	fs.IntVar(&o.raceN, "n", 200, "requests per method (GET, POST) swept around the idle timeout, one connection each (0 skips the race)")
	fs.DurationVar(&o.sweep, "sweep", 5*time.Millisecond, "sweep the requests across twice this around the idle timeout, 1.5× before and 0.5× after (widened to 3 round trips)")
	fs.IntVar(&o.conns, "conns", 100, "connections the race holds open at once")
	fs.IntVar(&o.earlyBody, "early-body", 1<<20, "bytes of the POST body the backend is expected to answer before reading")
	fs.IntVar(&o.earlyTries, "early-tries", 3, "how many such POSTs (0 skips)")
	fs.StringVar(&o.rejectPath, "reject-path", "/.lingerprobe-not-found", "path the large POST goes to; the backend should answer it without reading the body (404, 413)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on each connect and each exchange")
	fs.BoolVar(&o.insecure, "insecure", false, "https: do not verify the backend's certificate")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: lingerprobe [flags] URL\n\n"+
			"Measures how the backend at URL closes idle keep-alive connections and whether\n"+
			"that races the balancer in front of it. Exit status: 0 the balancer closes first,\n"+
			"1 the backend races it, 2 no verdict.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return nil, errors.New("lingerprobe: want one URL")
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil {
		return nil, fmt.Errorf("lingerprobe: %v", err)
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return nil, fmt.Errorf("lingerprobe: URL scheme is not http or https (%q)", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("lingerprobe: URL has no host (%q)", fs.Arg(0))
	}
	o.target = u
	o.addr = u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		o.addr = net.JoinHostPort(u.Hostname(), port)
	}
	o.lb = strings.ToLower(o.lb)
	lb, ok := balancers[o.lb]
	if !ok {
		return nil, fmt.Errorf("lingerprobe: -lb is not alb, nginx or haproxy (%q)", o.lb)
	}
	if o.lbIdle == 0 {
		o.lbIdle = lb.idle
	}
	if !strings.HasPrefix(o.rejectPath, "/") {
		return nil, fmt.Errorf("lingerprobe: -reject-path does not start with / (%q)", o.rejectPath)
	}
	for _, c := range []struct {
		name   string
		v, max int64
		min    int64
	}{
		{"-lb-idle", int64(o.lbIdle), int64(time.Hour), 1},
		{"-max-idle", int64(o.maxIdle), int64(maxMaxIdle), 1},
		{"-max-requests", int64(o.maxRequests), maxMaxRequests, 0},
		{"-n", int64(o.raceN), maxRaceN, 0},
		{"-sweep", int64(o.sweep), int64(10 * time.Second), 0},
		{"-conns", int64(o.conns), maxConns, 1},
		{"-early-body", int64(o.earlyBody), maxEarlyBody, 1},
		{"-early-tries", int64(o.earlyTries), maxEarlyTries, 0},
		{"-timeout", int64(o.timeout), int64(5 * time.Minute), 1},
	} {
		if c.v < c.min || c.v > c.max {
			return nil, fmt.Errorf("lingerprobe: %s is out of range (%v)", c.name, flagValue(fs, c.name))
		}
	}
	return o, nil
}

func flagValue(fs *flag.FlagSet, name string) string {
	return fs.Lookup(strings.TrimPrefix(name, "-")).Value.String()
}

// run is the command: it parses args, probes, prints the report to stdout
// and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitClean
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	var progress io.Writer = stderr
	if o.json {
		progress = io.Discard
	}
	rep, err := probe(ctx, o, progress)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	if o.json {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	switch rep.Verdict.Result {
	case resultClean:
		return exitClean
	case resultRaces:
		return exitRaces
	}
	return exitError
}
