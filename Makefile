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

.PHONY: all build run test unit fuzz-short fuzz bench lint deps sim-big chaos clean

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
	@if $(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 -version >/dev/null 2>&1; then \
		$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 $(PKGS); \
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

# The simulator at scale (docs/SIM.md): convergence at 100 and 1,000 peers,
# a 50/50 partition and its heal, each with peerd's dissemination and with
# memberlist's broadcast queue (baseline), and 1,000 peers with the lighter
# static membership. Reports go to bin/sim-out/. With real serf the
# 1,000-peer runs take about half an hour each on a loaded 2-core machine.
sim-big: build
	./$(BIN) sim -v -scenario sim/scenarios/converge-100.hcl -out bin/sim-out/converge-100
	./$(BIN) sim -v -scenario sim/scenarios/converge-100.hcl -mode memberlist -out bin/sim-out/converge-100-memberlist
	./$(BIN) sim -v -scenario sim/scenarios/converge-1000.hcl -out bin/sim-out/converge-1000
	./$(BIN) sim -v -scenario sim/scenarios/converge-1000.hcl -mode memberlist -out bin/sim-out/converge-1000-memberlist
	./$(BIN) sim -v -scenario sim/scenarios/converge-1000.hcl -membership static -out bin/sim-out/converge-1000-static
