package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The verdict's rule on its edges: the backend must keep idle connections
// more than raceMargin longer than the balancer, or wait long enough to
// tell.
func TestJudge(t *testing.T) {
	closed := func(s float64) idleReport {
		return idleReport{Closed: true, TimeoutSecs: s, MinSecs: s, MaxSecs: s, End: endFIN}
	}
	for _, c := range []struct {
		name    string
		lb      string
		lbIdle  time.Duration
		maxIdle time.Duration
		idle    idleReport
		want    string
		fix     string // FixBalancer
	}{
		{"Express behind ALB", "alb", 60 * time.Second, 2 * time.Minute, closed(6), resultRaces, "ALB: idle_timeout.timeout_seconds 5 or less"},
		{"equal timeouts race", "alb", 60 * time.Second, 2 * time.Minute, closed(60.2), resultRaces, "ALB: idle_timeout.timeout_seconds 59 or less"},
		{"within the margin", "nginx", 60 * time.Second, 2 * time.Minute, closed(60.9), resultRaces, "nginx: keepalive_timeout 59s or less in the upstream block"},
		{"past the margin", "nginx", 60 * time.Second, 2 * time.Minute, closed(61.5), resultClean, ""},
		{"nginx's 75 s behind ALB", "alb", 60 * time.Second, 2 * time.Minute, closed(75), resultClean, ""},
		{"HAProxy", "haproxy", 60 * time.Second, 2 * time.Minute, closed(5), resultRaces, "HAProxy: drop idle server connections well before 5 s (global pool-purge-delay) and retry what still meets a close (retry-on conn-failure empty-response)"},
		{"outlived the wait", "alb", 60 * time.Second, 2 * time.Minute, idleReport{}, resultClean, ""},
		{"waited too little", "alb", 60 * time.Second, 60 * time.Second, idleReport{}, resultUnknown, ""},
		{"no keep-alive", "alb", 60 * time.Second, 2 * time.Minute, idleReport{ConnectionClose: true}, resultClean, ""},
	} {
		o := &options{lb: c.lb, lbIdle: c.lbIdle, maxIdle: c.maxIdle}
		v := judge(o, &report{Idle: c.idle})
		assert.Equal(t, c.want, v.Result, c.name)
		assert.Equal(t, c.fix, v.FixBalancer, c.name)
		if c.want == resultRaces {
			assert.Equal(t, (c.lbIdle + suggestedMargin).Seconds(), v.SuggestedSecs, c.name)
			assert.Len(t, v.FixBackend, 4, c.name)
		} else {
			assert.Empty(t, v.FixBackend, c.name)
		}
	}
}

func TestGuessBackend(t *testing.T) {
	for _, c := range []struct {
		idle idleReport
		want string
	}{
		{idleReport{Server: "nginx/1.22.1"}, "nginx"},
		{idleReport{Server: "Apache/2.4.66 (Debian)", KeepAliveHeader: "timeout=5, max=100", AdvertisedSecs: 5}, "apache"},
		{idleReport{PoweredBy: "Express"}, "node"},
		{idleReport{KeepAliveHeader: "timeout=5", AdvertisedSecs: 5}, "node"},
		{idleReport{}, ""},
	} {
		assert.Equal(t, c.want, guessBackend(c.idle), "%+v", c.idle)
	}
}
