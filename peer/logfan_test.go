package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// noTime drops the time attribute so that two handlers' lines compare.
func noTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// logSome writes the same records through l: debug, info with attributes
// and a group, warn, error.
func logSome(l *slog.Logger) {
	l.Debug("debug line", "k", 1)
	l.With("peer", "n1").WithGroup("g").Info("info line", "k", "two words")
	l.Warn("warn line")
	l.Error("error line", "err", "boom")
}

func drain(s *LogSubscription) []string {
	var out []string
	for {
		select {
		case l := <-s.Lines():
			out = append(out, string(l))
		default:
			return out
		}
	}
}

// TestLogFanKeepsOutput: the wrapped handler writes exactly what it wrote
// alone, with or without subscribers.
func TestLogFanKeepsOutput(t *testing.T) {
	for _, tc := range []struct {
		name string
		json bool
		subs []slog.Level
	}{
		{"text, no subscriber", false, nil},
		{"text, debug subscriber", false, []slog.Level{slog.LevelDebug}},
		{"json, info and error subscribers", true, []slog.Level{slog.LevelInfo, slog.LevelError}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var plain, fanned bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: noTime}
			mk := func(w *bytes.Buffer) slog.Handler {
				if tc.json {
					return slog.NewJSONHandler(w, opts)
				}
				return slog.NewTextHandler(w, opts)
			}
			fan := NewLogFan()
			for _, l := range tc.subs {
				defer fan.Subscribe(l, false, 100).Close()
			}
			logSome(slog.New(mk(&plain)))
			logSome(slog.New(fan.Handler(mk(&fanned))))
			if plain.String() != fanned.String() {
				t.Fatalf("output changed:\nalone:\n%s\nwith the fan:\n%s", plain.String(), fanned.String())
			}
		})
	}
}

func TestLogFanLevelsAndFormats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level slog.Level
		json  bool
		want  []string // messages, in order
	}{
		{"debug below the agent's level", slog.LevelDebug, false, []string{"debug line", "info line", "warn line", "error line"}},
		{"info", slog.LevelInfo, false, []string{"info line", "warn line", "error line"}},
		{"warn", slog.LevelWarn, true, []string{"warn line", "error line"}},
		{"error", slog.LevelError, true, []string{"error line"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fan := NewLogFan()
			var agentOut bytes.Buffer
			l := slog.New(fan.Handler(slog.NewTextHandler(&agentOut, &slog.HandlerOptions{Level: slog.LevelInfo})))
			s := fan.Subscribe(tc.level, tc.json, 100)
			defer s.Close()
			logSome(l)
			lines := drain(s)
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d lines, want %d: %q", len(lines), len(tc.want), lines)
			}
			for i, line := range lines {
				if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
					t.Errorf("line %d is not one line: %q", i, line)
				}
				var msg string
				if tc.json {
					var rec map[string]any
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatalf("line %d is not JSON: %v: %q", i, err, line)
					}
					msg, _ = rec["msg"].(string)
				} else if _, rest, ok := strings.Cut(line, `msg="`); ok {
					msg, _, _ = strings.Cut(rest, `"`)
				}
				if msg != tc.want[i] {
					t.Errorf("line %d: msg %q, want %q (%q)", i, msg, tc.want[i], line)
				}
			}
			if strings.Contains(agentOut.String(), "debug line") {
				t.Errorf("a debug subscriber made the info-level agent output print debug lines:\n%s", agentOut.String())
			}
			// Attributes and groups of derived loggers are kept.
			for _, line := range lines {
				if strings.Contains(line, "info line") && !(strings.Contains(line, "peer") && strings.Contains(line, "g.k") || strings.Contains(line, `"g":{"k"`)) {
					t.Errorf("info line lost its attributes or group: %q", line)
				}
			}
		})
	}
}

// TestLogFanSlowReader: a subscriber that does not read loses the lines
// beyond its buffer, counted, and the logger never waits for it.
func TestLogFanSlowReader(t *testing.T) {
	fan := NewLogFan()
	l := slog.New(fan.Handler(slog.DiscardHandler))
	slow := fan.Subscribe(slog.LevelInfo, false, 3)
	defer slow.Close()
	fast := fan.Subscribe(slog.LevelInfo, false, 100)
	defer fast.Close()
	for i := range 10 {
		l.Info("line", "i", i)
	}
	if got := len(drain(slow)); got != 3 {
		t.Fatalf("slow subscriber got %d lines, want its buffer (3)", got)
	}
	if n := slow.TakeDropped(); n != 7 {
		t.Fatalf("slow subscriber dropped %d, want 7", n)
	}
	if n := slow.TakeDropped(); n != 0 {
		t.Fatalf("TakeDropped did not reset: %d", n)
	}
	if got := len(drain(fast)); got != 10 {
		t.Fatalf("fast subscriber got %d lines, want 10", got)
	}
	if fan.Dropped() != 7 {
		t.Fatalf("fan dropped %d, want 7", fan.Dropped())
	}
	note := string(droppedNote(7, false))
	if !strings.Contains(note, "dropped 7 lines") || !strings.Contains(note, "level=WARN") {
		t.Fatalf("dropped note: %q", note)
	}
	if !json.Valid(droppedNote(7, true)) {
		t.Fatalf("JSON dropped note is not JSON: %q", droppedNote(7, true))
	}
}

// TestLogFanClose: closing a subscription detaches it, and with no
// subscriber left the fan enables only what the wrapped handler does.
func TestLogFanClose(t *testing.T) {
	fan := NewLogFan()
	h := fan.Handler(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := context.Background()
	if h.Enabled(ctx, slog.LevelDebug) {
		t.Fatal("debug enabled with no subscriber")
	}
	s := fan.Subscribe(slog.LevelDebug, false, 1)
	if !h.Enabled(ctx, slog.LevelDebug) || fan.Subscribers() != 1 {
		t.Fatalf("debug subscriber: enabled %v, subscribers %d", h.Enabled(ctx, slog.LevelDebug), fan.Subscribers())
	}
	s.Close()
	s.Close() // idempotent
	if h.Enabled(ctx, slog.LevelDebug) || fan.Subscribers() != 0 {
		t.Fatalf("after close: enabled %v, subscribers %d", h.Enabled(ctx, slog.LevelDebug), fan.Subscribers())
	}
	slog.New(h).Info("after close")
	if got := drain(s); len(got) != 0 {
		t.Fatalf("closed subscriber got %q", got)
	}
	if LogFanOf(slog.New(h).With("a", 1)) != fan || LogFanOf(slog.Default()) != nil {
		t.Fatal("LogFanOf does not find the fan behind a derived logger, or finds one where there is none")
	}
}

func TestParseMonitorLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want slog.Level
		ok   bool
	}{
		{"", slog.LevelInfo, true},
		{"TRACE", slog.LevelDebug, true},
		{"debug", slog.LevelDebug, true},
		{"Info", slog.LevelInfo, true},
		{"warn", slog.LevelWarn, true},
		{"ERR", slog.LevelError, true},
		{"loud", 0, false},
	} {
		if got, ok := parseMonitorLevel(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("parseMonitorLevel(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// BenchmarkLogFan: the cost the fan-out adds to a log call, with no
// subscriber and with one debug subscriber that keeps up.
func BenchmarkLogFan(b *testing.B) {
	text := func() slog.Handler {
		return slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	b.Run("plain", func(b *testing.B) {
		l := slog.New(text())
		for b.Loop() {
			l.Info("line", "k", 1)
		}
	})
	b.Run("fan-no-subscriber", func(b *testing.B) {
		l := slog.New(NewLogFan().Handler(text()))
		for b.Loop() {
			l.Info("line", "k", 1)
		}
	})
	b.Run("fan-one-subscriber", func(b *testing.B) {
		fan := NewLogFan()
		l := slog.New(fan.Handler(text()))
		s := fan.Subscribe(slog.LevelDebug, false, 1024)
		defer s.Close()
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-s.Lines():
				case <-stop:
					return
				}
			}
		}()
		for b.Loop() {
			l.Info("line", "k", 1)
		}
		close(stop)
	})
}
