# pg-batch-exporter
#
#   make deps      install test dependencies (root) or list what is missing
#   make build     go build ./...
#   make vet       go vet ./...
#   make test      deps, vet, alert rule tests, then all tests against real PostgreSQL servers
#   make test-alerts  promtool check rules + promtool test rules (alerts/)
#   make test-e2e  dashboards and alerts against a real Prometheus (package e2e)
#   make demo      a throwaway server, the exporter and a slow batch diagnosed; Ctrl-C
#                  stops it (make demo DEMO_EXIT=1: run through and exit)
#   make test-demo     the demo with DEMO_EXIT=1, twice in a row (make test runs it)
#   make test-browser  the report page in a headless chromium (part of go test ./...)
#   make bench     one table: collection and scrape cost at 10-10,000 tracked tables, RSS
#                  (a short run of it is part of make test: exporter.TestBenchTable)
#   make bench-recorder  the recorder's storage per day and analysis timings over 7 days
#                  of generated data (about a minute; recorder.TestMeasureStorageAndTimings)
#   make clean-pg  kill PostgreSQL test servers left by killed test runs
#
# Test knobs (environment): PGBATCH_TEST_VERSIONS=15,18 (majors),
# PGBATCH_TEST_BACKEND=local|docker, PGBATCH_PG_CACHE=<dir> (npm binaries).

SHELL    := /bin/bash
GO       ?= go
PKGS     ?= ./...
TESTFLAGS ?=

.PHONY: all deps build vet test test-alerts test-e2e demo test-demo test-browser bench bench-recorder clean-pg

all: build

deps:
	@if [ "$$(id -u)" = 0 ]; then scripts/ci-deps.sh; else scripts/ci-deps.sh --check; fi

build:
	$(GO) build ./...

vet:
	$(GO) vet ./...

test: deps test-alerts
	$(GO) vet ./...
	$(GO) test -p 2 -count=1 -timeout 45m $(TESTFLAGS) $(PKGS)
	$(MAKE) test-demo

DEMO_EXIT ?=

demo:
	$(GO) build -o bin/ ./cmd/pg-batch-exporter ./cmd/pg-batch-demo
	bin/pg-batch-demo --exporter bin/pg-batch-exporter $(if $(DEMO_EXIT),--exit)

test-demo:
	$(MAKE) demo DEMO_EXIT=1
	$(MAKE) demo DEMO_EXIT=1

test-browser:
	$(GO) test -count=1 -run 'TestConsoleDetection|TestBrowser' ./internal/report

test-alerts:
	cd alerts && promtool check rules pgbatch.rules.yml && promtool test rules pgbatch.rules.test.yml

test-e2e: deps
	$(GO) test -count=1 -timeout 10m $(TESTFLAGS) ./e2e/

bench:
	set -o pipefail; PGBATCH_BENCH=full $(GO) test -count=1 -v -timeout 30m -run '^TestBenchTable$$' ./internal/exporter/ | grep '^|\|^Postgre'


bench-recorder:
	PGBATCH_MEASURE_RECORDER=1 $(GO) test -count=1 -v -timeout 20m -run '^TestMeasureStorageAndTimings$$' ./recorder

# Servers of internal/pgtest live in $TMPDIR/pgtest-<major>-*/ (with a file
# "owner" naming the test process) and note "postmaster pid, dir, owner pid"
# in $TMPDIR/pgbatch-pgtest/*.pid. Only servers whose test process is gone
# are stopped and removed, so this is safe while other tests run.
clean-pg:
	@tmp="$${TMPDIR:-/tmp}"; \
	alive() { [ -n "$$1" ] && kill -0 "$$1" 2>/dev/null; }; \
	stop_pm() { if [ -n "$$1" ] && [ "$$(cat /proc/$$1/comm 2>/dev/null)" = postgres ]; then \
		echo "clean-pg: stopping postmaster $$1 ($$2)"; kill -QUIT "$$1" || true; fi; }; \
	gone=(); \
	for d in "$$tmp"/pgtest-*/; do \
		[ -d "$$d" ] || continue; \
		alive "$$(cat "$$d/owner" 2>/dev/null)" && continue; \
		stop_pm "$$(head -n 1 "$$d/data/postmaster.pid" 2>/dev/null)" "$$d"; \
		gone+=("$$d"); \
	done; \
	for f in "$$tmp"/pgbatch-pgtest/*.pid; do \
		[ -f "$$f" ] || continue; \
		alive "$$(sed -n 3p "$$f")" && continue; \
		stop_pm "$$(sed -n 1p "$$f")" "$$f"; \
		gone+=("$$f"); \
	done; \
	if [ $${#gone[@]} -gt 0 ]; then sleep 1; rm -rf "$${gone[@]}"; fi; \
	echo "clean-pg: removed $${#gone[@]} leftovers"
