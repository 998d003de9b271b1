# peerd — build, run and test. Every target installs what it needs itself.
SHELL := /bin/bash
GO ?= go
BIN := bin/peerd
PKGS := ./...
# How long each fuzz target runs: briefly in `make test`, longer in `make fuzz`.
FUZZTIME_TEST ?= 3s
FUZZTIME ?= 60s
# Go's test timeout for the whole suite.
TEST_TIMEOUT ?= 15m

.PHONY: all build run test unit fuzz-short fuzz bench lint deps sim-big chaos clean compat-tools

all: build

deps:
	$(GO) mod download

build: deps
	@mkdir -p bin
	$(GO) build -o $(BIN) ./cmd/peerd
	$(GO) test -c -o bin/peerd-sim.test ./sim

# A single dev agent: ephemeral root and node key, HTTP on 127.0.0.1:8500,
# DNS on 127.0.0.1:8600, data in a temp dir removed on exit. Ctrl-C stops it.
run: build
	./$(BIN) agent -dev

# The whole suite: vet, unit and integration tests, then each fuzz target briefly.
test: build
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	$(MAKE) --no-print-directory fuzz-short

fuzz-short:
	@FUZZTIME=$(FUZZTIME_TEST) ./.ci/fuzz-all

fuzz:
	@FUZZTIME=$(FUZZTIME) ./.ci/fuzz-all

# Go benchmarks of every package, then figures measured on real processes
# (each prints its table; docs/BENCHMARKS.md records them with the command).
bench: build
	$(GO) test -run='^$$' -bench=. -benchmem -timeout 60m $(PKGS) | tee bench.out
	PEERD_BENCH=1 $(GO) test -count=1 -run 'TestMeshFigures|TestDataPlaneFigures|TestDNSAgentFigures' -v -timeout 30m ./cmd/peerd/ | grep -v '^        time=' | tee -a bench.out

lint:
	$(GO) vet $(PKGS)
	@if $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -version >/dev/null 2>&1; then \
		$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS); \
	else echo "staticcheck could not be installed; ran go vet only"; fi

clean:
	rm -rf bin bench.out

# A 3-peer local mesh on 127.0.0.21-23 with three tiny HTTP services
# (order -> invoice -> tax) talking through the data plane; prints how to
# call it and how to deny and allow. Ctrl-C stops everything.
.PHONY: demo
demo: build
	./.ci/demo

# Chaos and security scenarios on real peerd processes in network
# namespaces, long versions (root, iproute2 and nftables; installed if
# missing). `make test` runs the short versions. docs/RELIABILITY.md records
# the figures; .ci/chaos-harness builds the same mesh by hand.
chaos: build
	set -o pipefail; PEERD_CHAOS_LONG=1 $(GO) test -count=1 -run 'TestChaos|TestSecurity' -v -timeout 60m ./cmd/peerd/ \
		| grep -v '^        time=' | tee bin/chaos.out
	@grep 'FIGURE' bin/chaos.out || true

# The simulator at scale (docs/SIM.md): first the acceptance soak (1,000
# real serf peers for 10 virtual minutes, join included; it prints its CPU
# and wall time), then convergence at 100 and 1,000 peers, a 50/50
# partition and its heal, each with peerd's dissemination and with
# memberlist's broadcast queue (baseline), and 1,000 peers with the lighter
# static membership. Reports go to bin/sim-out/. Figures and timings:
# docs/BENCHMARKS.md, section "sim".
sim-big: build
	/usr/bin/time -v ./$(BIN) sim -v -scenario sim/scenarios/soak-1000.hcl -out bin/sim-out/soak-1000
	./$(BIN) sim -v -scenario sim/scenarios/converge-100.hcl -out bin/sim-out/converge-100
	./$(BIN) sim -v -scenario sim/scenarios/converge-100.hcl -mode memberlist -out bin/sim-out/converge-100-memberlist
	./$(BIN) sim -v -scenario sim/scenarios/converge-1000.hcl -out bin/sim-out/converge-1000
	./$(BIN) sim -v -scenario sim/scenarios/converge-1000.hcl -mode memberlist -out bin/sim-out/converge-1000-memberlist
	./$(BIN) sim -v -scenario sim/scenarios/converge-1000.hcl -membership static -out bin/sim-out/converge-1000-static

# Real builds of the Consul tools users point at an agent, run against two
# real agents (cmd/peerd/tools_compat_test.go, docs/COMPATIBILITY.md
# "Consul tools"): consul-template, Fabio and Prometheus's Consul service
# discovery (its discovery/consul package behind a small main, promsd),
# Traefik's consulCatalog provider.
# Built once per version into bin/tools with the Go module proxy, never
# added to peerd's go.mod. Fabio v1.6.3 cannot be `go install`ed (the proxy
# withholds its version list and the checksum database has no entry), so
# its module is downloaded, checked against FABIO_SUM (the hash of what the
# proxy served on 2026-11-22) and built from a copy with its own go.mod.
CONSUL_TEMPLATE_VERSION ?= v0.41.1
FABIO_VERSION ?= v1.6.3
FABIO_SUM ?= h1:ZLgQOjuLz66ABYI4qGVb2O6tHgu0ixNvsChTTtwg7Mo=
PROMETHEUS_VERSION ?= v0.316.0
# Traefik: built from a copy too (its go.mod has replace directives); the
# first build takes about 20 minutes on a loaded 2-core machine. v3.7.x
# needs a fork of go-http-auth that the proxy here does not serve.
TRAEFIK_VERSION ?= v3.6.12
# The consul command itself (cmd/peerd/tools_consul_test.go), built from a
# copy whose replace directives are dropped: they point at submodules (api,
# sdk, ...) that are not in the module zip, so the versions its go.mod
# requires are used instead. About 10 minutes the first time.
CONSUL_VERSION ?= v1.20.6
TOOLS_DIR := $(CURDIR)/bin/tools
define PROMSD_MAIN
// promsd runs Prometheus's Consul service discovery against -server and
// prints the targets after each update as one JSON object:
// {"<service>": ["<address> node=<node> tags=<tags> health=<status>", ...]}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

func main() {
	server := flag.String("server", "localhost:8500", "Consul HTTP address")
	services := flag.String("services", "", "comma-separated services to watch (default all)")
	refresh := flag.Duration("refresh", 30*time.Second, "refresh_interval")
	flag.Parse()
	conf := consul.DefaultSDConfig
	conf.Server = *server
	conf.RefreshInterval = model.Duration(*refresh)
	if *services != "" {
		conf.Services = strings.Split(*services, ",")
	}
	reg := prometheus.NewRegistry()
	metrics := conf.NewDiscovererMetrics(reg, discovery.NewRefreshMetrics(reg))
	if err := metrics.Register(); err != nil {
		fmt.Fprintln(os.Stderr, "promsd:", err)
		os.Exit(1)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := consul.NewDiscovery(&conf, logger, metrics)
	if err != nil {
		fmt.Fprintln(os.Stderr, "promsd:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ch := make(chan []*targetgroup.Group)
	go d.Run(ctx, ch)
	state := map[string][]string{}
	enc := json.NewEncoder(os.Stdout)
	for {
		select {
		case <-ctx.Done():
			return
		case groups := <-ch:
			for _, g := range groups {
				if g == nil || g.Source == "" {
					continue
				}
				var targets []string
				for _, t := range g.Targets {
					targets = append(targets, fmt.Sprintf("%s node=%s tags=%s health=%s", t[model.AddressLabel],
						t["__meta_consul_node"], t["__meta_consul_tags"], t["__meta_consul_health"]))
				}
				sort.Strings(targets)
				if len(targets) == 0 {
					delete(state, g.Source)
				} else {
					state[g.Source] = targets
				}
			}
			enc.Encode(state)
		}
	}
}
endef
export PROMSD_MAIN

compat-tools:
	@set -e; mkdir -p $(TOOLS_DIR); tmp=$$(mktemp -d); trap 'chmod -R u+w $$tmp; rm -rf $$tmp' EXIT; \
	if ! $(TOOLS_DIR)/consul-template -v 2>&1 | grep -q '$(CONSUL_TEMPLATE_VERSION) '; then \
		echo "building consul-template $(CONSUL_TEMPLATE_VERSION)"; \
		GOBIN=$(TOOLS_DIR) $(GO) install github.com/hashicorp/consul-template@$(CONSUL_TEMPLATE_VERSION); \
	fi; \
	if ! $(TOOLS_DIR)/fabio -v 2>&1 | grep -q '^$(FABIO_VERSION:v%=%) '; then \
		echo "building fabio $(FABIO_VERSION)"; \
		sum=$$(cd $$tmp && GOFLAGS=-mod=mod GONOSUMDB=github.com/fabiolb/fabio $(GO) mod download -json github.com/fabiolb/fabio@$(FABIO_VERSION) | sed -n 's/^\t"Sum": "\(.*\)",$$/\1/p'); \
		if [ "$$sum" != '$(FABIO_SUM)' ]; then echo "fabio $(FABIO_VERSION): module hash $$sum, want $(FABIO_SUM)"; exit 1; fi; \
		cp -r $$($(GO) env GOMODCACHE)/github.com/fabiolb/fabio@$(FABIO_VERSION) $$tmp/src; chmod -R u+w $$tmp/src; rm -rf $$tmp/src/vendor; \
		(cd $$tmp/src && $(GO) build -mod=mod -o $(TOOLS_DIR)/fabio .); \
	fi; \
	if ! $(GO) version -m $(TOOLS_DIR)/promsd 2>/dev/null | grep -q 'github.com/prometheus/prometheus.$(PROMETHEUS_VERSION)'; then \
		echo "building promsd (Prometheus $(PROMETHEUS_VERSION) discovery/consul)"; \
		mkdir $$tmp/promsd; printf '%s\n' "$$PROMSD_MAIN" > $$tmp/promsd/main.go; printf 'module promsd\n\ngo 1.26\n' > $$tmp/promsd/go.mod; \
		(cd $$tmp/promsd && $(GO) get github.com/prometheus/prometheus@$(PROMETHEUS_VERSION) && $(GO) mod tidy && $(GO) build -o $(TOOLS_DIR)/promsd .); \
	fi; \
	if ! $(TOOLS_DIR)/consul version 2>/dev/null | grep -q '^Consul $(CONSUL_VERSION)$$'; then \
		echo "building consul $(CONSUL_VERSION) (long)"; \
		dir=$$(cd $$tmp && GOFLAGS=-mod=mod $(GO) mod download -json github.com/hashicorp/consul@$(CONSUL_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
		cp -r $$dir $$tmp/consul; chmod -R u+w $$tmp/consul; sed -i '/^replace (/,/^)/d' $$tmp/consul/go.mod; \
		(cd $$tmp/consul && GONOSUMDB=github.com/hashicorp/consul GOFLAGS=-mod=mod $(GO) build -o $(TOOLS_DIR)/consul .); \
	fi; \
	if ! $(TOOLS_DIR)/traefik version 2>/dev/null | grep -q 'Version: *$(TRAEFIK_VERSION:v%=%)$$'; then \
		echo "building traefik $(TRAEFIK_VERSION) (long)"; \
		dir=$$(cd $$tmp && GOFLAGS=-mod=mod $(GO) mod download -json github.com/traefik/traefik/v3@$(TRAEFIK_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
		cp -r $$dir $$tmp/traefik; chmod -R u+w $$tmp/traefik; \
		(cd $$tmp/traefik && $(GO) build -ldflags '-X github.com/traefik/traefik/v3/pkg/version.Version=$(TRAEFIK_VERSION:v%=%)' -o $(TOOLS_DIR)/traefik ./cmd/traefik); \
	fi
	set -o pipefail; PEERD_TOOLS=1 $(GO) test -count=1 -run '^TestTools' -v -timeout 10m ./cmd/peerd/ | grep -v '^        time='
