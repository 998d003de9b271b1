package peer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// monitorBuffer is how many lines wait for a slow monitor client before
// lines are dropped (Consul's monitor buffers 512).
const monitorBuffer = 512

// monitorAPI serves GET /v1/agent/monitor: the agent's log records as
// they are written, one line each, until the client goes away or the HTTP
// server shuts down.
type monitorAPI struct {
	a *Agent

	once sync.Once     // registers stopAll with the HTTP server
	stop chan struct{} // closed when the HTTP server shuts down
}

func newMonitorAPI(a *Agent) *monitorAPI {
	return &monitorAPI{a: a, stop: make(chan struct{})}
}

// parseMonitorLevel reads ?loglevel= as Consul does (trace, debug, info,
// warn, error; any case; default info).
func parseMonitorLevel(v string) (slog.Level, bool) {
	switch strings.ToLower(v) {
	case "", "info":
		return slog.LevelInfo, true
	case "trace", "debug":
		return slog.LevelDebug, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "err", "error":
		return slog.LevelError, true
	}
	return 0, false
}

func (m *monitorAPI) serve(w http.ResponseWriter, r *http.Request, _ string) error {
	fan := LogFanOf(m.a.log)
	if fan == nil {
		return errorf(http.StatusNotImplemented, "monitor: this agent's logger has no fan-out (peer.LogFan)")
	}
	raw := r.URL.Query().Get("loglevel")
	level, ok := parseMonitorLevel(raw)
	if !ok {
		return errorf(http.StatusBadRequest, "Unknown log level: %s", raw)
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return errorf(http.StatusInternalServerError, "Streaming not supported")
	}
	if srv := m.a.httpSrv; srv != nil {
		// A stream would keep Shutdown waiting for its timeout.
		m.once.Do(func() { srv.RegisterOnShutdown(func() { close(m.stop) }) })
	}
	json := flagSet(r, "logjson")
	sub := fan.Subscribe(level, json, monitorBuffer)
	defer sub.Close()

	if json {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-m.stop:
			return nil
		case line := <-sub.Lines():
			if n := sub.TakeDropped(); n > 0 {
				if _, err := w.Write(droppedNote(n, json)); err != nil {
					return nil
				}
			}
			if _, err := w.Write(line); err != nil {
				return nil // the client went away
			}
			if len(sub.Lines()) == 0 {
				flusher.Flush()
			}
		}
	}
}

// droppedNote is the line a monitor client gets in place of the lines it
// was too slow to take.
func droppedNote(n uint64, json bool) []byte {
	var b strings.Builder
	opts := &slog.HandlerOptions{}
	var h slog.Handler = slog.NewTextHandler(&b, opts)
	if json {
		h = slog.NewJSONHandler(&b, opts)
	}
	r := slog.NewRecord(time.Now(), slog.LevelWarn, fmt.Sprintf("monitor: dropped %d lines (the client reads too slowly)", n), 0)
	r.AddAttrs(slog.Uint64("dropped", n))
	_ = h.Handle(context.Background(), r)
	return []byte(b.String())
}
