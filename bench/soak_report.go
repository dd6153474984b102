package main

// The soak's table and its plot, soak.svg (hand-written, as sweep.svg).

import (
	"fmt"
	"slices"
	"strings"
)

// soakLegend says what the soak mixes and why its bars are what they are.
const soakLegend = `soak (opt-in: -only soak, or -soak D for its length; default 2 min): lingerhttp (the only variant) in one backend process, behind nginx (a pair of servers, deployed away and replaced in turn: nginx reloaded without the member as it is told to stop, lingerhttp's Shutdown with DrainDelay 1 s, the successor started on the same port, nginx reloaded with it) and HAProxy (a server that lives throughout, and the restart scenario's lingerhttp+tableflip generations, restarted in place). Every server: IdleTimeout 1 s, ReadHeaderTimeout 1 s. Normal traffic: bursts of 24 keep-alive POSTs through each proxy after pauses straddling the idle timeout (nginx-idle's schedule); 2 steady clients per proxy, one POST per 25 ms; 3 TLS HTTP/1.1 and 3 TLS h2 clients straight to a TLS server, each POST at the idle deadline ± 2 ms; one 2–4 MiB upload a second rejected with a 413 unread. Hostile peers straight to the long-lived server, one per 250 ms (at most 32 at once) in turn: never-fin (holds its side open 3 s after our FIN, past the 2 s LingerTimeout), flood (8 MiB, half of LingerBytes, into our drain, then closes), reset (RST in the middle of our drain), slowloris (half a request line). A deploy and a restart take turns every 90 s (in the 2 min form one of each), all between the second tenth and 85 % of the run. The backend process samples itself (every dur/120, 1 to 10 s): open descriptors, goroutines, live heap (the last GC's, /gc/heap/live:bytes), VmRSS, lingering closes (Stats.Lingering of its listeners; the tableflip generations are processes of their own and not sampled).
-check: no normal request fails (the hostile peers' outcomes are counted, not held); the backend's kernel aborts no close (TCPAbortOnClose + TCPAbortOnData 0; TcpOutRsts is shown: the kernel answers late segments of a peer we have closed on with RSTs, which hostile peers earn); every planned deploy and restart runs; every hostile kind gets through; nothing grows: the median of the last tenth against the median of the second (the first is warm-up): descriptors and goroutines within +10 % or +20, whichever is more (each in-flight connection holds one descriptor and a goroutine or two, and 2 s lingering closes of peers arriving 4 a second and bursts of 8 connections make the instantaneous count swing by tens; a leak of one per hostile peer or per request adds hundreds to thousands), live heap and RSS within ×1.5 (the live heap depends on what is in flight at the last GC and RSS on pages the runtime has not yet returned; a per-connection leak of even 1 KiB grows by far more over thousands of connections), lingering closes within +20; and once every server has shut down, the backend holds no more than 2 descriptors and 2 goroutines above what it held before they started (before / after in the notes).
`

// soakTable renders the soak row.
func soakTable(rows []*row, rsts string) string {
	out := table("| scenario | variant | s | requests | OK | failed | "+rsts+" | abort on close / data | deploys / restarts | hostile peers: set up / ended by the server | descriptors | goroutines | live heap MiB | RSS MiB | lingering | notes |",
		"|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|---|", rows, func(row *row) string {
			s := row.Soak
			rst, aborts := row.resetColumns()
			deploys, restarts := 0, 0
			for _, e := range s.Events {
				if e.Kind == "deploy" {
					deploys++
				} else {
					restarts++
				}
			}
			var hostile []string
			for _, k := range soakHostileKinds {
				if h := s.Hostile[k]; h != nil {
					hostile = append(hostile, fmt.Sprintf("%s %d/%d of %d", k, h.SetUp, h.Ended, h.Peers))
				}
			}
			f, l := s.First, s.Last
			fig := func(a, b float64) string { return fmt.Sprintf("%.0f → %.0f", a, b) }
			mib := func(a, b float64) string { return fmt.Sprintf("%.1f → %.1f", a/(1<<20), b/(1<<20)) }
			return fmt.Sprintf("| %s | %s | %.0f | %d | %d | %d | %s | %s | %d / %d | %s | %s | %s | %s | %s | %s | %s |",
				row.Scenario, row.Variant, s.Seconds, row.Requests, row.OK, row.Requests-row.OK, rst, aborts, deploys, restarts,
				strings.Join(hostile, "; "), fig(f.FDs, l.FDs), fig(f.Goroutines, l.Goroutines), mib(f.HeapLive, l.HeapLive), mib(f.RSS, l.RSS),
				fig(f.Lingering, l.Lingering), strings.ReplaceAll(s.notes(row), "|", "/"))
		})
	return out + "\nsoak figures: the median of the second tenth → the median of the last tenth. " + soakLegend
}

// notes: the kinds' counts, the events, the backend before and after.
func (s *soakResult) notes(row *row) string {
	var parts []string
	kinds := make([]string, 0, len(s.Kinds))
	for k := range s.Kinds {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		c := s.Kinds[k]
		p := fmt.Sprintf("%s %d/%d", k, c.OK, c.Requests)
		if c.Retries > 0 {
			p += fmt.Sprintf(" (client retries %d)", c.Retries)
		}
		if c.NotH2 > 0 {
			p += fmt.Sprintf(" (not HTTP/2 %d)", c.NotH2)
		}
		parts = append(parts, p)
	}
	for _, e := range s.Events {
		p := fmt.Sprintf("%s at %.0f s", e.Kind, e.T)
		if e.Kind == "deploy" {
			p += fmt.Sprintf(": Shutdown %.2f s", e.Ms/1000)
		} else {
			p += fmt.Sprintf(": gap %.1f ms", e.Ms)
		}
		if e.Err != "" {
			p += " (" + e.Err + ")"
		}
		parts = append(parts, p)
	}
	parts = append(parts, fmt.Sprintf("backend before / after: %d / %d descriptors, %d / %d goroutines", s.Before.FDs, s.After.FDs, s.Before.Goroutines, s.After.Goroutines))
	if n := row.notes(); n != "" {
		parts = append(parts, n)
	}
	return strings.Join(parts, "; ")
}

// soakSVG draws one panel per figure, the samples over time: warm-up
// shaded grey, the compared windows blue, deploys and restarts as
// vertical lines. Each panel's axis starts at 0, so flat is flat.
func (s *soakResult) svg(date, kernel string) string {
	const (
		panelW, panelH = 760.0, 110.0
		left, top      = 70.0, 64.0
		gap            = 36.0
		bottom         = 56.0
	)
	panels := []struct {
		name string
		get  func(soakSample) float64
		unit string
	}{
		{"open descriptors", func(x soakSample) float64 { return float64(x.FDs) }, ""},
		{"goroutines", func(x soakSample) float64 { return float64(x.Goroutines) }, ""},
		{"live heap (MiB)", func(x soakSample) float64 { return float64(x.HeapLive) / (1 << 20) }, ""},
		{"RSS (MiB)", func(x soakSample) float64 { return float64(x.RSS) / (1 << 20) }, ""},
		{"lingering closes", func(x soakSample) float64 { return float64(x.Lingering) }, ""},
	}
	width := left + panelW + 30
	height := top + float64(len(panels))*(panelH+gap) + bottom
	xOf := func(t float64) float64 { return left + panelW*t/max(s.Seconds, 1) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14" font-weight="bold">soak: the lingerhttp backend process over %.0f s of mixed traffic, deploys and restarts</text>`+"\n", left, s.Seconds)
	fmt.Fprintf(&b, `<text x="%.0f" y="32" fill="#555">%s, kernel %s, a sample every %s s</text>`+"\n", left, date, kernel, trimFloat(s.IntervalMs/1000))
	for pi, p := range panels {
		y0 := top + float64(pi)*(panelH+gap)
		peak := 0.0
		for _, x := range s.Samples {
			peak = max(peak, p.get(x))
		}
		peak = niceCeil(peak * 1.1)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", left, y0-6, p.name)
		// Warm-up, then the two compared windows.
		for _, w := range []struct {
			from, to float64
			fill     string
		}{{0, s.Seconds / 10, "#eeeeee"}, {s.First.From, s.First.To, "#e3f2fd"}, {s.Last.From, s.Last.To, "#e3f2fd"}} {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", xOf(w.from), y0, xOf(w.to)-xOf(w.from), panelH, w.fill)
		}
		for _, f := range []float64{0, 0.5, 1} {
			y := y0 + panelH*(1-f)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+panelW, y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", left-4, y+4, trimFloat(f*peak))
		}
		for _, e := range s.Events {
			color := "#fb8c00"
			if e.Kind == "restart" {
				color = "#8e24aa"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"><title>%s at %.0f s</title></line>`+"\n",
				xOf(e.T), y0, xOf(e.T), y0+panelH, color, e.Kind, e.T)
		}
		var pts []string
		for _, x := range s.Samples {
			if x.T > s.Seconds {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(x.T), y0+panelH*(1-p.get(x)/max(peak, 1e-9))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#1e88e5" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(pts, " "))
	}
	yAxis := top + float64(len(panels))*(panelH+gap) - gap
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", xOf(f*s.Seconds), yAxis+16, f*s.Seconds)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">seconds</text>`+"\n", left+panelW/2, yAxis+30)
	y, x := yAxis+42, left
	for _, k := range []struct{ name, color string }{{"warm-up", "#eeeeee"}, {"compared windows (second and last tenth)", "#e3f2fd"}} {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s" stroke="#999"/><text x="%.0f" y="%.0f">%s</text>`+"\n", x, y, k.color, x+14, y+9, k.name)
		x += 30 + 7*float64(len(k.name))
	}
	for _, k := range []struct{ name, color string }{{"deploy", "#fb8c00"}, {"restart in place", "#8e24aa"}} {
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-dasharray="4 3"/><text x="%.0f" y="%.0f">%s</text>`+"\n", x, y-1, x, y+11, k.color, x+6, y+9, k.name)
		x += 20 + 7*float64(len(k.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for p > v {
		p /= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.1f", v)
}
