package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/peerd/peerd/peer"
)

// newLogger builds the agent's logger from -log-level and -log-json, with
// a log fan-out for monitor clients (peer.LogFan).
func newLogger(w io.Writer, level string, json bool) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "", "info":
		lv = slog.LevelInfo
	case "trace", "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "err", "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("config: log_level: unknown level %q (want trace, debug, info, warn or error)", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if json {
		h = slog.NewJSONHandler(w, opts)
	}
	// The fan-out feeds /v1/agent/monitor (peer.LogFanOf) at the level each
	// client asks for; what w receives does not change.
	return slog.New(peer.NewLogFan().Handler(h)), nil
}
