package peer

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
)

// LogFan copies an agent's log records to subscribers (GET
// /v1/agent/monitor) without changing what the wrapped handler writes.
// Each subscriber has its own minimum level and format and a bounded
// buffer: a subscriber that does not keep up loses lines (counted), and the
// goroutine that logs never waits for it. Its methods are safe for
// concurrent use.
type LogFan struct {
	// mu guards subs; minLevel is derived from subs under mu.
	mu   sync.Mutex
	subs map[*LogSubscription]struct{}
	// minLevel is the lowest level any subscriber wants, math.MaxInt64
	// when there is none: Enabled and Handle read it without the lock.
	minLevel atomic.Int64
	dropped  atomic.Uint64 // lines dropped for slow subscribers, all time
}

// NewLogFan returns a fan-out with no subscribers.
func NewLogFan() *LogFan {
	f := &LogFan{subs: make(map[*LogSubscription]struct{})}
	f.minLevel.Store(math.MaxInt64)
	return f
}

// Handler returns a handler that passes every record next accepts to next,
// unchanged, and every record a subscriber wants to that subscriber. Use it
// as the agent's logger (slog.New(fan.Handler(h))); LogFanOf finds the fan
// again from the logger.
func (f *LogFan) Handler(next slog.Handler) slog.Handler {
	return &fanHandler{fan: f, next: next}
}

// LogFanOf returns the fan-out behind l's handler, or nil when l was not
// built with LogFan.Handler.
func LogFanOf(l *slog.Logger) *LogFan {
	if l == nil {
		return nil
	}
	if h, ok := l.Handler().(*fanHandler); ok {
		return h.fan
	}
	return nil
}

// LogSubscription is one subscriber: formatted lines (each ending in a
// newline) arrive on Lines.
type LogSubscription struct {
	fan     *LogFan
	level   slog.Level
	json    bool
	lines   chan []byte
	dropped atomic.Uint64 // since the last TakeDropped
	once    sync.Once
}

// Subscribe adds a subscriber for records at level and above, formatted as
// slog's JSON handler does when json is set, else as its text handler does.
// buf bounds the lines waiting for the reader (at least 1). Close it.
func (f *LogFan) Subscribe(level slog.Level, json bool, buf int) *LogSubscription {
	s := &LogSubscription{fan: f, level: level, json: json, lines: make(chan []byte, max(buf, 1))}
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.updateMinLocked()
	f.mu.Unlock()
	return s
}

// Lines delivers the subscriber's lines in the order they were logged.
func (s *LogSubscription) Lines() <-chan []byte { return s.lines }

// TakeDropped returns how many lines were dropped since the last call
// because the reader was behind, and resets the count.
func (s *LogSubscription) TakeDropped() uint64 { return s.dropped.Swap(0) }

// Close removes the subscriber; it is idempotent. Lines is not closed.
func (s *LogSubscription) Close() {
	s.once.Do(func() {
		f := s.fan
		f.mu.Lock()
		delete(f.subs, s)
		f.updateMinLocked()
		f.mu.Unlock()
	})
}

// Subscribers returns how many subscribers are attached.
func (f *LogFan) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Dropped returns how many lines were dropped for slow subscribers.
func (f *LogFan) Dropped() uint64 { return f.dropped.Load() }

func (f *LogFan) updateMinLocked() {
	lowest := int64(math.MaxInt64)
	for s := range f.subs {
		lowest = min(lowest, int64(s.level))
	}
	f.minLevel.Store(lowest)
}

func (f *LogFan) wants(l slog.Level) bool { return int64(l) >= f.minLevel.Load() }

// publish formats r (at most once per format) and offers it to every
// subscriber that wants its level, never waiting.
func (f *LogFan) publish(ctx context.Context, h *fanHandler, r slog.Record) {
	// Formatting may resolve slog.LogValuer values, which may log: never
	// under f.mu.
	f.mu.Lock()
	subs := make([]*LogSubscription, 0, len(f.subs))
	for s := range f.subs {
		if r.Level >= s.level {
			subs = append(subs, s)
		}
	}
	f.mu.Unlock()
	var text, js []byte
	for _, s := range subs {
		line := &text
		if s.json {
			line = &js
		}
		if *line == nil {
			*line = h.format(ctx, r, s.json)
		}
		select {
		case s.lines <- *line:
		default:
			s.dropped.Add(1)
			f.dropped.Add(1)
		}
	}
}

// handlerOp is one WithAttrs or WithGroup call, replayed on the
// subscribers' formatters.
type handlerOp struct {
	group string
	attrs []slog.Attr
}

// fanHandler is the handler LogFan.Handler returns.
type fanHandler struct {
	fan  *LogFan
	next slog.Handler
	ops  []handlerOp // since the root handler, in order
}

func (h *fanHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) || h.fan.wants(l)
}

func (h *fanHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	if h.fan.wants(r.Level) {
		h.fan.publish(ctx, h, r)
	}
	return err
}

func (h *fanHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return &fanHandler{fan: h.fan, next: h.next.WithAttrs(attrs), ops: h.with(handlerOp{attrs: attrs})}
}

func (h *fanHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &fanHandler{fan: h.fan, next: h.next.WithGroup(name), ops: h.with(handlerOp{group: name})}
}

func (h *fanHandler) with(op handlerOp) []handlerOp {
	ops := make([]handlerOp, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return append(ops, op)
}

// format renders r as one line, the way slog's text or JSON handler
// would with this handler's attributes and groups.
func (h *fanHandler) format(ctx context.Context, r slog.Record, json bool) []byte {
	var buf bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.Level(math.MinInt)}
	var fh slog.Handler
	if json {
		fh = slog.NewJSONHandler(&buf, opts)
	} else {
		fh = slog.NewTextHandler(&buf, opts)
	}
	for _, op := range h.ops {
		if op.group != "" {
			fh = fh.WithGroup(op.group)
		} else {
			fh = fh.WithAttrs(op.attrs)
		}
	}
	_ = fh.Handle(ctx, r) // writes to a buffer: cannot fail
	return buf.Bytes()
}
