package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter turns the text lines that serf and memberlist print through a
// *log.Logger ("[WARN] memberlist: ...") into slog records. Their levels are
// noisy (memberlist logs an [ERR] for every refused TCP connect during
// shutdown), so [ERR] becomes Warn and everything else Debug.
type slogWriter struct {
	logger *slog.Logger
}

// newStdLogger returns a *log.Logger without prefix or timestamp that
// forwards every line to logger.
func newStdLogger(logger *slog.Logger) *log.Logger {
	return log.New(slogWriter{logger: logger}, "", 0)
}

func (w slogWriter) Write(p []byte) (int, error) {
	for line := range bytes.SplitSeq(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := string(line)
		level := slog.LevelDebug
		for _, tag := range [...]struct {
			prefix string
			level  slog.Level
		}{
			{"[ERR] ", slog.LevelWarn},
			{"[ERROR] ", slog.LevelWarn},
			{"[WARN] ", slog.LevelDebug},
			{"[INFO] ", slog.LevelDebug},
			{"[DEBUG] ", slog.LevelDebug},
		} {
			if rest, ok := strings.CutPrefix(msg, tag.prefix); ok {
				msg, level = rest, tag.level
				break
			}
		}
		w.logger.Log(context.Background(), level, msg)
	}
	return len(p), nil
}
