package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// newLogger builds the agent's logger from -log-level and -log-json.
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
	if json {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
