package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/peerd/peerd/crdt"
)

// checkResult is one run of a check.
type checkResult struct {
	status string
	output string
}

// checkRunner runs an HTTP, TCP or script check every Interval.
type checkRunner struct {
	def  CheckDefinition
	log  *slog.Logger
	once func(ctx context.Context) checkResult
}

func newCheckRunner(def CheckDefinition, log *slog.Logger) *checkRunner {
	r := &checkRunner{def: def, log: log}
	switch def.Type() {
	case checkTypeHTTP:
		r.once = httpProbe(def)
	case checkTypeTCP:
		r.once = tcpProbe(def)
	case checkTypeScript:
		r.once = scriptProbe(def)
	case checkTypeGRPC:
		r.once = grpcProbe(def)
	default:
		r.once = func(context.Context) checkResult {
			return checkResult{crdt.StatusCritical, fmt.Sprintf("check type %q is not supported", def.Type())}
		}
	}
	return r
}

func (r *checkRunner) timeout() time.Duration {
	if r.def.Timeout > 0 {
		return time.Duration(r.def.Timeout)
	}
	return defaultCheckTimeout
}

// run probes after a random delay within the first interval (so that
// checks registered together spread out) and then every interval until ctx
// ends, reporting each result.
func (r *checkRunner) run(ctx context.Context, report func(checkResult)) {
	interval := time.Duration(r.def.Interval)
	if interval <= 0 {
		interval = minCheckInterval
	}
	first := time.Duration(rand.Int64N(int64(interval)/4 + 1))
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, r.timeout())
		res := r.once(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if len(res.output) > maxCheckOutput {
			res.output = res.output[:maxCheckOutput]
		}
		report(res)
		t.Reset(interval)
	}
}

// checkUserAgent is sent by HTTP checks, like Consul's "Consul Health Check".
const checkUserAgent = "Consul Health Check (peerd)"

// httpProbe builds Consul's HTTP check: 2xx is passing, 429 warning,
// anything else (or no answer) critical; the output holds the first 4 KB of
// the body.
func httpProbe(def CheckDefinition) func(context.Context) checkResult {
	tr := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: def.TLSSkipVerify, ServerName: def.TLSServerName},
	}
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	method := def.Method
	if method == "" {
		method = http.MethodGet
	}
	return func(ctx context.Context) checkResult {
		var body io.Reader
		if def.Body != "" {
			body = strings.NewReader(def.Body)
		}
		req, err := http.NewRequestWithContext(ctx, method, def.HTTP, body)
		if err != nil {
			return checkResult{crdt.StatusCritical, fmt.Sprintf("HTTP %s %s: %v", method, def.HTTP, err)}
		}
		req.Header.Set("User-Agent", checkUserAgent)
		req.Header.Set("Accept", "text/plain, text/*, */*")
		for k, vs := range def.Header {
			req.Header.Del(k)
			for _, v := range vs {
				if strings.EqualFold(k, "Host") {
					req.Host = v
					continue
				}
				req.Header.Add(k, v)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			return checkResult{crdt.StatusCritical, fmt.Sprintf("Get %q: %v", def.HTTP, err)}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxCheckOutput))
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		out := fmt.Sprintf("HTTP %s %s: %s Output: %s", method, def.HTTP, resp.Status, b)
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode <= 299:
			return checkResult{crdt.StatusPassing, out}
		case resp.StatusCode == http.StatusTooManyRequests:
			return checkResult{crdt.StatusWarning, out}
		}
		return checkResult{crdt.StatusCritical, out}
	}
}

// tcpProbe is Consul's TCP check: a connection that opens is passing.
func tcpProbe(def CheckDefinition) func(context.Context) checkResult {
	return func(ctx context.Context) checkResult {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", def.TCP)
		if err != nil {
			return checkResult{crdt.StatusCritical, fmt.Sprintf("dial tcp %s: %v", def.TCP, unwrapOpErr(err))}
		}
		conn.Close()
		return checkResult{crdt.StatusPassing, fmt.Sprintf("TCP connect %s: Success", def.TCP)}
	}
}

func unwrapOpErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// scriptProbe runs Args (no shell): exit 0 is passing, 1 warning, anything
// else critical; the output is the first 4 KB of stdout and stderr.
func scriptProbe(def CheckDefinition) func(context.Context) checkResult {
	return func(ctx context.Context) checkResult {
		cmd := exec.CommandContext(ctx, def.Args[0], def.Args[1:]...)
		var out cappedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		text := out.String()
		if ctx.Err() != nil {
			timeout := time.Duration(def.Timeout)
			if timeout <= 0 {
				timeout = defaultCheckTimeout
			}
			return checkResult{crdt.StatusCritical, fmt.Sprintf("Timed out (%s) running check %q", timeout, strings.Join(def.Args, " "))}
		}
		var exit *exec.ExitError
		switch {
		case err == nil:
			return checkResult{crdt.StatusPassing, text}
		case errors.As(err, &exit) && exit.ExitCode() == 1:
			return checkResult{crdt.StatusWarning, text}
		case errors.As(err, &exit):
			return checkResult{crdt.StatusCritical, text}
		}
		return checkResult{crdt.StatusCritical, fmt.Sprintf("running %q: %v", def.Args[0], err)}
	}
}

// cappedBuffer keeps the first maxCheckOutput bytes written to it.
type cappedBuffer struct{ b bytes.Buffer }

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxCheckOutput - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string { return c.b.String() }
