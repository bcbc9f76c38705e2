# Sluice: batch exports of analytics events to sandboxed WebAssembly destination plugins.
SHELL := /bin/bash
GO ?= go
BIN := bin
export AWS_EC2_METADATA_DISABLED := true
export GCE_METADATA_HOST := 127.0.0.1:1
export SNOWFLAKE_DISABLE_PLATFORM_DETECTION := true

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/sluice
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/sluice ./cmd/sluice

include plugins/plugins.mk

# Only the Go plugins: a fresh machine with Go runs Sluice with nothing else installed.
run: build $(GO_PLUGIN_WASM) ## start Sluice on embedded defaults (API on 127.0.0.1:8080, data in ./data)
	$(BIN)/sluice serve --plugins-dir $(BIN)/plugins --demo

deps: ## install the Debian packages the plugins and tests need (wabt, rustc for wasm32-wasi, lld, chromium, npm)
	@bash .ci/deps

test: deps plugins ## start the loopback test servers, then run every test with the race detector
	@env_lines=$$(bash .ci/services.sh) && eval "$$env_lines" && \
		$(GO) test -race -count=1 -timeout 25m ./...

lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

bench: plugins ## print the performance ratios: the guard's (long) and end to end vs clickhouse-client (~10 min)
	$(GO) run ./bench/cmd/sluice-guard
	SLUICE_E2E_RSS= SLUICE_E2E_SKIP_SAME=1 SLUICE_E2E_VARIANTS='p2:GOMAXPROCS=2;p1:GOMAXPROCS=1;p4:GOMAXPROCS=4' \
		bash bench/e2e.sh

bench-guard: plugins ## fail if a performance ratio is more than 30% below bench/ratios.json (< 2 min)
	@bash .ci/bench-guard

bench-go: plugins ## run the Go benchmarks once each
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

verify-plugins: plugins build ## fail if a built plugin differs from plugins.lock, or a pin lacks its signature in plugins.lock.sig
	$(BIN)/sluice plugins verify --plugins-dir $(BIN)/plugins --lock plugins.lock --trusted-keys $(PLUGIN_TRUSTED_KEYS)

cluster: build $(GO_PLUGIN_WASM) ## start 3 hosts on 127.0.0.1:8081-8083 sharing one PostgreSQL (SLUICE_DATABASE_URL or the loopback test server)
	@bash deploy/cluster.sh start

cluster-stop: ## stop the hosts of `make cluster` (SIGTERM: each drains)
	@bash deploy/cluster.sh stop

# The full chaos suite (docs/reliability.md): 3 real hosts, KILLS kill -9 (default 50) during a
# 48-interval backfill and live capture, then the S3, PostgreSQL and ClickHouse fault
# scenarios at their full sizes. Figures are appended to REPORT.
KILLS ?= 50
REPORT ?= chaos-report.md
chaos: $(GO_PLUGIN_WASM) ## the full chaos suite: KILLS kill -9 of random hosts (50), fault proxies; figures to REPORT
	@env_lines=$$(bash .ci/services.sh) && eval "$$env_lines" && \
		SLUICE_CHAOS_KILLS=$(KILLS) SLUICE_CHAOS_REPORT=$(abspath $(REPORT)) SLUICE_CHAOS_DIR=$${SLUICE_CHAOS_DIR:-$$(mktemp -d)} \
		$(GO) test -count=1 -v -timeout 90m -run 'TestChaosKills|TestFault' ./internal/chaos

# The soak: live capture and 5-minute exports for DURATION, every host's RSS and goroutines
# sampled every 10 s; fails if either grows without bound (docs/reliability.md).
DURATION ?= 30m
soak: $(GO_PLUGIN_WASM) ## live capture + 5-minute exports for DURATION (30m), RSS and goroutines sampled; figures to REPORT
	@env_lines=$$(bash .ci/services.sh) && eval "$$env_lines" && \
		SLUICE_SOAK_DURATION=$(DURATION) SLUICE_CHAOS_REPORT=$(abspath $(REPORT)) SLUICE_CHAOS_DIR=$${SLUICE_CHAOS_DIR:-$$(mktemp -d)} \
		$(GO) test -count=1 -v -timeout 0 -run 'TestSoak' ./internal/chaos

.PHONY: help build run deps test lint bench bench-guard bench-go verify-plugins cluster cluster-stop chaos soak
