package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// demo-service is the tiny HTTP service `make demo` and the data plane's
// end-to-end test run under `peerd connect run`: GET / answers its name
// followed by its upstream's answer ("order -> invoice -> tax"); any other
// path is passed to the upstream with its method, and the upstream's
// status and body come back (how the test reaches tax's L7 rules).

func runDemoService(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "demo-service", "demo-service -name NAME -listen ADDR [-upstream NAME]")
	name := fs.String("name", "", "service name, printed in answers")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	up := fs.String("upstream", "", "upstream service to call (its address comes from PEERD_UPSTREAM_<NAME>_ADDR)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usageErrorf("demo-service: -name is required")
	}
	upAddr := ""
	if *up != "" {
		upAddr = c.getenv("PEERD_UPSTREAM_" + envName(*up) + "_ADDR")
		if upAddr == "" {
			return fmt.Errorf("demo-service: PEERD_UPSTREAM_%s_ADDR is not set (run it under 'peerd connect run')", envName(*up))
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("demo-service: %w", err)
	}
	fmt.Fprintf(c.stdout, "demo-service %s listening on %s (upstream %q at %s)\n", *name, ln.Addr(), *up, upAddr)
	return serveDemo(ctx, ln, *name, *up, upAddr)
}

func serveDemo(ctx context.Context, ln net.Listener, name, up, upAddr string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if upAddr == "" {
			fmt.Fprintf(w, "%s (%s %s)\n", name, r.Method, r.URL.Path)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+upAddr+r.URL.RequestURI(), strings.NewReader(""))
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, fmt.Sprintf("%s: calling %s through the mesh (%s): %v", name, up, upAddr, err), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		text := strings.TrimSpace(string(body))
		switch {
		case r.URL.Path != "/":
			w.WriteHeader(resp.StatusCode)
			fmt.Fprintf(w, "%s\n", text)
		case resp.StatusCode != http.StatusOK:
			http.Error(w, fmt.Sprintf("%s: %s answered %s: %s", name, up, resp.Status, text), http.StatusBadGateway)
		default:
			fmt.Fprintf(w, "%s -> %s\n", name, text)
		}
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("demo-service: %w", err)
	}
	return nil
}
