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

type apiMetrics struct {
	Timestamp string
	Gauges    []apiGauge
	Points    []any
	Counters  []any
	Samples   []any
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
	if r.URL.Query().Get("format") == "prometheus" {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		var b strings.Builder
		last := ""
		for _, g := range gauges {
			name := promName(g.Name)
			if name != last {
				fmt.Fprintf(&b, "# TYPE %s gauge\n", name)
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
		Gauges:    gauges, Points: []any{}, Counters: []any{}, Samples: []any{},
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
