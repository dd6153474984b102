package main

// The shutdown scenario's scrape: the deployed backend's listener is
// exported by lingerprom through a real Prometheus registry, as a service
// would export it, gathered before and after the deploy, and checked
// against the listener's own Stats.

import (
	"fmt"
	"net"
	"strings"

	"github.com/linger-go/linger"
	"github.com/linger-go/linger/lingerprom"
	"github.com/prometheus/client_golang/prometheus"
)

// deployScrape is linger_closes_total of the deployed backend by outcome
// name, gathered before and after the deploy, and its listener's
// Stats.Outcomes when the second was gathered; summed over a row's runs.
type deployScrape struct {
	Before   map[string]int64 `json:"before"`
	After    map[string]int64 `json:"after"`
	Stats    map[string]int64 `json:"stats"`
	Mismatch []string         `json:"mismatch,omitempty"` // runs whose scrape was not Stats, and why
}

// deployScraper scrapes one backend's listener.
type deployScraper struct {
	reg   *prometheus.Registry
	stats func() linger.Stats
	got   *deployScrape
}

// newDeployScraper registers a lingerprom collector of ln, or returns nil
// if ln is not a linger listener (raw).
func newDeployScraper(ln net.Listener) *deployScraper {
	s := &deployScraper{reg: prometheus.NewRegistry()}
	o := lingerprom.Opts{ConstLabels: prometheus.Labels{"backend": "deployed"}}
	switch l := ln.(type) {
	case *linger.Listener:
		m := lingerprom.NewCollector(o)
		m.Watch(l)
		s.reg.MustRegister(m)
		s.stats = l.Stats
	case *lingerHTTP:
		m := lingerprom.NewServerCollector(o)
		m.Watch(l.s)
		s.reg.MustRegister(m)
		s.stats = l.Stats
	default:
		return nil
	}
	return s
}

// gather returns linger_closes_total by outcome, as the registry gives it
// to promhttp.
func (s *deployScraper) gather() (map[string]int64, error) {
	families, err := s.reg.Gather()
	if err != nil {
		return nil, err
	}
	got := make(map[string]int64)
	for _, f := range families {
		if f.GetName() != "linger_closes_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					got[l.GetValue()] = int64(m.GetCounter().GetValue())
				}
			}
		}
	}
	return got, nil
}

// before scrapes before the deploy; after scrapes once the deployed
// backend has shut down, and compares with its Stats.
func (s *deployScraper) before() {
	s.got = &deployScrape{}
	var err error
	if s.got.Before, err = s.gather(); err != nil {
		s.got.Mismatch = append(s.got.Mismatch, "gather before the deploy: "+err.Error())
	}
}

func (s *deployScraper) after() {
	var err error
	if s.got.After, err = s.gather(); err != nil {
		s.got.Mismatch = append(s.got.Mismatch, "gather after the deploy: "+err.Error())
	}
	st := s.stats()
	s.got.Stats = make(map[string]int64)
	var diff []string
	for o := range linger.NumOutcomes {
		s.got.Stats[o.String()] = st.Outcomes[o]
		if got, ok := s.got.After[o.String()]; !ok || got != st.Outcomes[o] {
			diff = append(diff, fmt.Sprintf("%s scraped %d, Stats %d", o, got, st.Outcomes[o]))
		}
	}
	if len(diff) > 0 {
		s.got.Mismatch = append(s.got.Mismatch, "after the deploy: "+strings.Join(diff, ", "))
	}
}

func (d *deployScrape) add(e *deployScrape) *deployScrape {
	if d == nil {
		d = &deployScrape{Before: map[string]int64{}, After: map[string]int64{}, Stats: map[string]int64{}}
	}
	for k, v := range e.Before {
		d.Before[k] += v
	}
	for k, v := range e.After {
		d.After[k] += v
	}
	for k, v := range e.Stats {
		d.Stats[k] += v
	}
	d.Mismatch = append(d.Mismatch, e.Mismatch...)
	return d
}

// note says what the scrapes read: the outcomes that moved, before → after
// the deploy, and whether that is the listener's Stats.
func (d *deployScrape) note() string {
	var parts []string
	for o := range linger.NumOutcomes {
		name := o.String()
		if d.After[name] > 0 || d.Before[name] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d → %d", name, d.Before[name], d.After[name]))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no closes")
	}
	verdict := "= its Stats"
	if len(d.Mismatch) > 0 {
		verdict = "NOT its Stats: " + strings.Join(d.Mismatch, "; ")
	}
	return "deployed backend's linger_closes_total scraped before → after the deploy: " + strings.Join(parts, ", ") + " (" + verdict + ")"
}
