package peer

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// /v1/agent/metrics: the counters of `peerd info` as Consul's go-metrics
// JSON summary ({Timestamp, Gauges, Points, Counters, Samples}), or as
// Prometheus text with ?format=prometheus. Every numeric value of infoStats
// becomes a gauge named peerd.<section>.<key>.

type apiGauge struct {
	Name   string
	Value  float64
	Labels map[string]string
}

// apiCounter is go-metrics' sampled value (Counters and Samples).
type apiCounter struct {
	Name   string
	Count  uint64
	Rate   float64
	Sum    float64
	Min    float64
	Max    float64
	Mean   float64
	Stddev float64
	Labels map[string]string
}

type apiMetrics struct {
	Timestamp string
	Gauges    []apiGauge
	Points    []any
	Counters  []apiCounter
	Samples   []any
}

// httpCounters reports requests served per route since the agent started:
// peerd.http.requests and peerd.http.errors with labels route and method.
func (s *apiServer) httpCounters() []apiCounter {
	var out []apiCounter
	for i := range s.routes {
		rt := &s.routes[i]
		n := rt.requests.Load()
		if n == 0 {
			continue
		}
		labels := map[string]string{"route": rt.path, "methods": rt.methods}
		out = append(out, apiCounter{Name: "peerd.http.requests", Count: n, Sum: float64(n), Min: 1, Max: 1, Mean: 1, Labels: labels})
		if e := rt.errors.Load(); e > 0 {
			out = append(out, apiCounter{Name: "peerd.http.errors", Count: e, Sum: float64(e), Min: 1, Max: 1, Mean: 1, Labels: labels})
		}
	}
	return out
}

// metricGauges flattens infoStats into sorted gauges.
func (a *Agent) metricGauges() []apiGauge {
	var out []apiGauge
	for section, kv := range a.infoStats() {
		for k, v := range kv {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			out = append(out, apiGauge{Name: "peerd." + section + "." + k, Value: f, Labels: map[string]string{}})
		}
	}
	out = append(out, a.localGauges()...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// localGauges counts local services and checks by status.
func (a *Agent) localGauges() []apiGauge {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	by := map[string]float64{"passing": 0, "warning": 0, "critical": 0}
	for _, c := range l.checks {
		by[c.status]++
	}
	out := []apiGauge{{Name: "peerd.local.services", Value: float64(len(l.services)), Labels: map[string]string{}}}
	for st, n := range by {
		out = append(out, apiGauge{Name: "peerd.local.checks", Value: n, Labels: map[string]string{"status": st}})
	}
	return out
}

func (s *apiServer) agentMetrics(w http.ResponseWriter, r *http.Request, _ string) error {
	gauges := s.a.metricGauges()
	counters := s.httpCounters()
	if r.URL.Query().Get("format") == "prometheus" {
		for _, c := range counters {
			gauges = append(gauges, apiGauge{Name: c.Name + "_total", Value: float64(c.Count), Labels: c.Labels})
		}
		sort.SliceStable(gauges, func(i, j int) bool { return gauges[i].Name < gauges[j].Name })
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		var b strings.Builder
		last := ""
		for _, g := range gauges {
			name := promName(g.Name)
			if name != last {
				typ := "gauge"
				if strings.HasSuffix(name, "_total") {
					typ = "counter"
				}
				fmt.Fprintf(&b, "# TYPE %s %s\n", name, typ)
				last = name
			}
			b.WriteString(name)
			if len(g.Labels) > 0 {
				keys := make([]string, 0, len(g.Labels))
				for k := range g.Labels {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				b.WriteByte('{')
				for i, k := range keys {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "%s=%q", promName(k), g.Labels[k])
				}
				b.WriteByte('}')
			}
			fmt.Fprintf(&b, " %s\n", strconv.FormatFloat(g.Value, 'g', -1, 64))
		}
		_, err := w.Write([]byte(b.String()))
		return err
	}
	return writeJSON(w, apiMetrics{
		Timestamp: time.Now().UTC().Truncate(10 * time.Second).Format("2006-01-02 15:04:05 -0700 MST"),
		Gauges:    gauges, Points: []any{}, Counters: counters, Samples: []any{},
	})
}

// promName maps a metric name onto Prometheus' [a-zA-Z_:][a-zA-Z0-9_:]*.
func promName(s string) string {
	b := []rune(s)
	for i, r := range b {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) && i > 0 || r == '_' || r == ':')) {
			b[i] = '_'
		}
	}
	return string(b)
}
