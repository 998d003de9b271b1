package sim

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func (d Dist) String() string {
	if d.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("p50 %s, p99 %s, max %s (n=%d)", ms(d.P50), ms(d.P99), ms(d.Max), d.N)
}

// WriteSummary writes the human-readable summary.
func (r *Result) WriteSummary(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	p("scenario %s: %s  (seed %d, %d peers, mode %s)", r.Scenario, verdict, r.Seed, r.Peers, r.Mode)
	p("replay: peerd sim -scenario FILE -seed %d   (same commit; see docs/SIM.md for the limits of replay)", r.Seed)
	p("schedule: %d actions, fingerprint %s (equal in every run of this seed; schedule.txt)", len(r.Schedule), r.ScheduleFingerprint())
	if r.MembershipSettled {
		p("membership settled after %v (every peer saw ≥ 99.5%% of the others alive)", r.SettleTime)
	} else {
		p("warning: membership had not settled after %v (memberlist is eventually consistent; see the progress log)", r.SettleTime)
	}
	p("operations: %d writes, %d reads in a %v fault phase", r.Writes, r.Reads, r.FaultPhase)
	p("converged after heal: %v in %s", r.Converged, ms(r.ConvergeTime))
	p("update convergence (updates issued while healthy: %d, incomplete %d):", r.TrackedUpdates, r.IncompleteUpdate)
	p("  per peer:        %s", r.PerPeer)
	p("  all live peers:  %s", r.ReachAll)
	p("payload transmissions per node per update: %.2f (dissemination), %.2f (anti-entropy)",
		r.TransmissionsPerNodePerUpdate, r.AECopiesPerNodePerUpdate)
	p("messages per operation: %.1f all classes, %.1f dissemination+repair", r.MsgsPerOp, r.DisseminationMsgsPerOp)
	p("bytes per node per second (membership / plumtree / anti-entropy):")
	p("  idle:        %.0f / %.0f / %.0f", r.IdleBytesPerNodeSec[0], r.IdleBytesPerNodeSec[1], r.IdleBytesPerNodeSec[2])
	p("  under load:  %.0f / %.0f / %.0f", r.LoadBytesPerNodeSec[0], r.LoadBytesPerNodeSec[1], r.LoadBytesPerNodeSec[2])
	p("dead-node detection (crash → failed event at each observer): %s", r.Detection)
	p("anti-entropy repair after heal: %d bytes of batches received, %d wire bytes; difference at heal ≈ %d bytes",
		r.RepairBytes, r.RepairWireBytes, r.DifferenceBytes)
	pt := r.Plumtree
	p("plumtree: %d broadcasts, %d payloads sent, %d duplicates, %d IHAVE msgs, %d grafts, %d prunes, %d given up",
		pt.Broadcasts, pt.PayloadsSent, pt.Duplicates, pt.IHavesSent, pt.GraftsSent, pt.PrunesSent, pt.MissingGivenUp)
	a := r.AE
	p("anti-entropy: %d sessions, %d equal, %d differ, %d errors", a.Exchanges, a.DigestsEqual, a.DigestsDiffer, a.ExchangeErrors)
	if len(r.Spans) > 0 {
		p("faults:")
		for _, s := range r.Spans {
			p("  %-40s %8.1fs → %8.1fs", s.Label, s.Start.Seconds(), s.End.Seconds())
		}
	}
	r.Authz.writeSummary(p)
	r.Rotation.writeSummary(p)
	p("checkers: convergence, no lost acknowledged write, no resurrection, no phantom value, reads agree, " +
		"no intention rollback accepted, revoked peers cut off")
	if r.OK() {
		p("violations: none")
	} else {
		p("violations:")
		for _, v := range r.Violations {
			p("  %s", v)
		}
	}
}

// WriteReport writes summary.txt, updates.csv, traffic.csv and the plots
// convergence.svg, traffic.svg and timeline.svg into dir.
func (r *Result) WriteReport(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	var sb strings.Builder
	r.WriteSummary(&sb)
	files := map[string]string{"summary.txt": sb.String()}

	var u strings.Builder
	u.WriteString("update,reach_all_ms\n")
	for i, d := range r.ReachAllTimes {
		fmt.Fprintf(&u, "%d,%.3f\n", i, float64(d)/1e6)
	}
	files["updates.csv"] = u.String()

	var t strings.Builder
	t.WriteString("second,membership_bytes,plumtree_bytes,antientropy_bytes,membership_msgs,plumtree_msgs,antientropy_msgs,payload_copies\n")
	for s, b := range r.Traffic {
		fmt.Fprintf(&t, "%d,%d,%d,%d,%d,%d,%d,%d\n", s, b.bytes[0], b.bytes[1], b.bytes[2], b.msgs[0], b.msgs[1], b.msgs[2],
			b.copies[0]+b.copies[1]+b.copies[2])
	}
	files["traffic.csv"] = t.String()
	files["schedule.txt"] = strings.Join(r.Schedule, "\n") + "\n"
	files["convergence.svg"] = r.cdfSVG()
	files["traffic.svg"] = r.trafficSVG()
	files["timeline.svg"] = r.timelineSVG()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
	}
	return nil
}

const svgW, svgH, svgPad = 640.0, 320.0, 50.0

type svg struct{ b strings.Builder }

func newSVG(title string) *svg {
	s := &svg{}
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", svgW, svgH)
	fmt.Fprintf(&s.b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="18" font-size="13">%s</text>`+"\n", svgPad, escape(title))
	return s
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// axes draws the frame with x and y labels and max values.
func (s *svg) axes(xlabel, ylabel string, xmax, ymax float64) {
	x0, y0, x1, y1 := svgPad, svgH-svgPad, svgW-20, 30.0
	fmt.Fprintf(&s.b, `<path d="M%.0f %.0f L%.0f %.0f L%.0f %.0f" stroke="black" fill="none"/>`+"\n", x0, y1, x0, y0, x1, y0)
	fmt.Fprintf(&s.b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, svgH-12, escape(xlabel))
	fmt.Fprintf(&s.b, `<text x="12" y="%.0f" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`+"\n", (y0+y1)/2, (y0+y1)/2, escape(ylabel))
	fmt.Fprintf(&s.b, `<text x="%.0f" y="%.0f" text-anchor="end">%.4g</text><text x="%.0f" y="%.0f">0</text>`+"\n", x1, y0+14, xmax, x0, y0+14)
	fmt.Fprintf(&s.b, `<text x="%.0f" y="%.0f" text-anchor="end">%.4g</text>`+"\n", x0-4, y1+4, ymax)
}

func px(x, xmax float64) float64 { return svgPad + x/max(xmax, 1e-9)*(svgW-20-svgPad) }
func py(y, ymax float64) float64 { return svgH - svgPad - y/max(ymax, 1e-9)*(svgH-svgPad-30) }

func (s *svg) polyline(xs, ys []float64, xmax, ymax float64, color, label string, row int) {
	var pts strings.Builder
	for i := range xs {
		fmt.Fprintf(&pts, "%.1f,%.1f ", px(xs[i], xmax), py(ys[i], ymax))
	}
	fmt.Fprintf(&s.b, `<polyline points="%s" stroke="%s" fill="none" stroke-width="1.5"/>`+"\n", pts.String(), color)
	fmt.Fprintf(&s.b, `<text x="%.0f" y="%d" fill="%s">%s</text>`+"\n", svgW-180, 40+14*row, color, escape(label))
}

func (s *svg) String() string { return s.b.String() + "</svg>\n" }

// cdfSVG plots the CDF of the time for an update to reach every live peer.
func (r *Result) cdfSVG() string {
	s := newSVG(fmt.Sprintf("%s: update convergence CDF (seed %d)", r.Scenario, r.Seed))
	ts := slices.Clone(r.ReachAllTimes)
	slices.Sort(ts)
	xmax := 1.0
	label := "time to reach every live peer (ms)"
	if len(ts) > 0 {
		// Clip at 3× the p99 so that a few updates stuck behind a
		// partition do not flatten the curve.
		p99 := ts[min(len(ts)-1, len(ts)*99/100)]
		xmax = float64(ts[len(ts)-1]) / 1e6
		if limit := 3 * float64(p99) / 1e6; limit < xmax {
			xmax = limit
			label += fmt.Sprintf(", clipped at 3×p99; max %.0f ms", float64(ts[len(ts)-1])/1e6)
		}
	}
	s.axes(label, "fraction of updates", xmax, 1)
	var xs, ys []float64
	for i, d := range ts {
		x := float64(d) / 1e6
		if x > xmax {
			break
		}
		xs = append(xs, x)
		ys = append(ys, float64(i+1)/float64(len(ts)))
	}
	s.polyline(xs, ys, xmax, 1, "steelblue", r.Mode, 0)
	return s.String()
}

// trafficSVG plots bytes per second per class over the run.
func (r *Result) trafficSVG() string {
	s := newSVG(fmt.Sprintf("%s: traffic per second (all peers)", r.Scenario))
	var ymax float64
	for _, b := range r.Traffic {
		for k := range numClasses {
			ymax = max(ymax, float64(b.bytes[k]))
		}
	}
	xmax := float64(max(1, len(r.Traffic)))
	s.axes("virtual time (s)", "bytes/s", xmax, ymax)
	colors := []string{"gray", "steelblue", "darkorange"}
	for k := range numClasses {
		var xs, ys []float64
		for i, b := range r.Traffic {
			xs = append(xs, float64(i))
			ys = append(ys, float64(b.bytes[k]))
		}
		s.polyline(xs, ys, xmax, ymax, colors[k], Class(k).String(), int(k))
	}
	return s.String()
}

// timelineSVG draws one bar per fault over the fault phase.
func (r *Result) timelineSVG() string {
	s := newSVG(fmt.Sprintf("%s: faults (seed %d)", r.Scenario, r.Seed))
	xmax := r.FaultPhase.Seconds()
	for _, sp := range r.Spans {
		xmax = max(xmax, sp.End.Seconds())
	}
	spans := r.Spans
	rows := min(len(spans), 20)
	s.axes("fault phase (s)", "", xmax, 0)
	for i, sp := range spans[:rows] {
		y := 36 + float64(i)*float64(svgH-svgPad-40)/float64(max(rows, 1))
		x0, x1 := px(sp.Start.Seconds(), xmax), px(sp.End.Seconds(), xmax)
		fmt.Fprintf(&s.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="9" fill="indianred"/>`+"\n", x0, y, max(1, x1-x0))
		fmt.Fprintf(&s.b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x0+2, y+8, escape(sp.Label))
	}
	if len(spans) > rows {
		fmt.Fprintf(&s.b, `<text x="%.0f" y="%.0f">… %d more</text>`+"\n", svgPad, svgH-svgPad-4, len(spans)-rows)
	}
	return s.String()
}
