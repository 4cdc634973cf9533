# pg-batch-exporter
#
#   make deps      install test dependencies (root) or list what is missing
#   make build     go build ./..., and bin/pg-batch-exporter with its version stamped
#                  (--version, the landing page, pgbatch_exporter_build_info)
#   make docker    the Dockerfile's image (static binary on distroless), where a Docker
#                  engine answers; elsewhere it says so and does nothing
#   make release   dist/: static binaries for linux and darwin on amd64 and arm64, .debs
#                  for linux (systemd unit, /etc/default/pg-batch-exporter, system user),
#                  SHA256SUMS
#   make test-deb  a linux/amd64 .deb installed here (root), --version and
#                  systemd-analyze verify, then removed (make test runs it)
#   make vet       go vet ./...
#   make generate  every generated file: go generate ./... (collect.sql, findings.sql, install.sql, the
#                  dashboards' JSON), then the files written from what the code really does
#                  (the metrics goldens and docs/metrics.md, against real servers; the
#                  README's flag reference); each has a test that fails while it is stale
#   make test      deps, tools, alert rule tests, docker (where an engine answers), vet,
#                  then all tests against real PostgreSQL servers
#   make tools     build promtool and prometheus at PROMETHEUS_MODULE into .tools/bin
#                  (skipped when already built at that version)
#   make test-alerts  promtool check rules + promtool test rules (alerts/), with the pinned
#                  promtool and with Debian's /usr/bin/promtool (2.x) where installed
#   make test-e2e  dashboards and alerts against real Prometheus servers: the pinned one
#                  and Debian's (package e2e)
#   make demo      a throwaway server, the exporter and a slow batch diagnosed; Ctrl-C
#                  stops it (make demo DEMO_EXIT=1: run through and exit)
#   make test-demo     the demo with DEMO_EXIT=1, twice in a row (make test runs it)
#   make test-browser  the report page in a headless chromium (part of go test ./...)
#   make bench     one table (about 25 minutes): collection and scrape cost at 10-10,000
#                  tracked tables, RSS of the test process and of the exporter binary; the
#                  exporter's database time a minute (5000 tables, 1000 tracked, 100 sessions); the
#                  wait sampler's cost at 1s/100ms with 10-500 sessions; its fidelity on a
#                  scripted workload beside pg_wait_sampling (postgresql-15-pg-wait-sampling,
#                  make deps); the statements collector at 1000 and 5000 statements;
#                  pgbench's TPS with and without the exporter and the recorder (pgbench from
#                  postgresql-15); then make bench-recorder. A short run of it is part of
#                  make test (exporter.TestBenchTable)
#   make bench-recorder  the recorder against pg_cron mode's SQL functions (time per
#                  collection, rows and bytes a day), its storage per day (1000 busy
#                  statements included) and analysis timings over 1 hour, 7 and 30 days of
#                  generated data against their targets, the report page of 30 days, and a
#                  fleet row: PGBATCH_FLEET_SERVERS servers (10) recorded into one recorder
#                  database (recorder.TestMeasureAgainstSQLMode, whose short run is part of
#                  make test, TestMeasureStorageAndTimings and TestMeasureFleet); its last
#                  line is the slowest analysis function over 30 days
#   make clean-pg  kill PostgreSQL test servers left by killed test runs
#   make vuln      govulncheck from a pinned golang.org/x/vuln; needs https://vuln.go.dev
#                  (unreachable from the development machines: run it where it answers)
#   make fuzz      each fuzz test for FUZZTIME (30s); plain `go test` (make test) runs
#                  their seed corpora
#
# Test knobs (environment): PGBATCH_TEST_VERSIONS=15,18 (majors),
# PGBATCH_TEST_BACKEND=local|docker, PGBATCH_PG_CACHE=<dir> (npm binaries).

SHELL    := /bin/bash
GO       ?= go
PKGS     ?= ./...
TESTFLAGS ?=

# Prometheus 3 for the rule and end-to-end tests, from the Go module proxy (module version
# v0.3MM.P is Prometheus 3.MM.P), never whatever promtool is first on PATH. No UI assets:
# the tests use the API only.
PROMETHEUS_MODULE  := github.com/prometheus/prometheus
PROMETHEUS_VERSION := v0.316.0
TOOLS_BIN          := $(CURDIR)/.tools/bin
PROMTOOL           := $(TOOLS_BIN)/promtool
DEBIAN_PROMTOOL    := /usr/bin/promtool
export PGBATCH_PROMETHEUS_BIN := $(TOOLS_BIN)

.PHONY: all deps tools build exporter generate release test-deb docker vet test test-alerts test-e2e demo test-demo test-browser bench bench-recorder clean-pg vuln fuzz

all: build

deps:
	@if [ "$$(id -u)" = 0 ]; then scripts/ci-deps.sh; else scripts/ci-deps.sh --check; fi

# prometheus/common/version, stamped as Prometheus's own exporters do. The version is the
# latest tag (git describe: tag, commits since, revision, -dirty), the bare revision
# before the first tag.
VERSION_PKG  := github.com/prometheus/common/version
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH       ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILD_USER   ?= $(shell id -un)@$(shell hostname)
BUILD_DATE   ?= $(shell date -u +%Y%m%d-%H:%M:%S)
# Evaluated once, so every artefact of one make run carries the same stamp.
VERSION := $(VERSION)
REVISION := $(REVISION)
BRANCH := $(BRANCH)
BUILD_USER := $(BUILD_USER)
BUILD_DATE := $(BUILD_DATE)
LDFLAGS      := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) \
                -X $(VERSION_PKG).Branch=$(BRANCH) -X $(VERSION_PKG).BuildUser=$(BUILD_USER) \
                -X $(VERSION_PKG).BuildDate=$(BUILD_DATE)
EXPORTER_BIN ?= bin/pg-batch-exporter

build: exporter
	$(GO) build ./...

exporter:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(EXPORTER_BIN) ./cmd/pg-batch-exporter

vet:
	$(GO) vet ./...

generate:
	$(GO) generate ./...
	$(GO) test -count=1 -run 'Golden|TestMetricsReference' ./collectors -update
	$(GO) test -count=1 -run 'TestReadmeFlags$$' ./cmd/pg-batch-exporter -update

RELEASE_TARGETS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

release:
	rm -rf dist
	scripts/release.sh dist '$(VERSION)' '$(LDFLAGS)' $(RELEASE_TARGETS)

test-deb:
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	scripts/release.sh "$$dir" '$(VERSION)' '$(LDFLAGS)' linux/amd64 && \
	scripts/test-deb.sh "$$dir"/*.deb

DOCKER_IMAGE ?= pg-batch-exporter:$(VERSION)

docker:
	@if ! docker info >/dev/null 2>&1; then \
		echo "docker: no Docker engine answers here: image not built"; \
	else \
		docker build --build-arg LDFLAGS='$(LDFLAGS)' -t $(DOCKER_IMAGE) . && \
		docker run --rm $(DOCKER_IMAGE) --version; \
	fi

test: deps tools test-alerts docker
	$(GO) vet ./...
	$(GO) test -p 2 -count=1 -timeout 45m $(TESTFLAGS) $(PKGS)
	$(MAKE) test-demo
	$(MAKE) test-deb

DEMO_EXIT ?=

demo:
	$(GO) build -o bin/ ./cmd/pg-batch-exporter ./cmd/pg-batch-demo
	bin/pg-batch-demo --exporter bin/pg-batch-exporter $(if $(DEMO_EXIT),--exit)

test-demo:
	$(MAKE) demo DEMO_EXIT=1
	$(MAKE) demo DEMO_EXIT=1

test-browser:
	$(GO) test -count=1 -run 'TestConsoleDetection|TestBrowser' ./report

# `go version -m` names the module version a binary was built from: rebuild only when it
# differs. GOCACHE/GOMODCACHE make a rebuild of the same version quick.
tools:
	@for cmd in promtool prometheus; do \
		if $(GO) version -m $(TOOLS_BIN)/$$cmd 2>/dev/null | grep -q "mod	$(PROMETHEUS_MODULE)	$(PROMETHEUS_VERSION)	"; then continue; fi; \
		echo "tools: building $$cmd $(PROMETHEUS_VERSION) into $(TOOLS_BIN) (minutes on a fresh machine)"; \
		start=$$(date +%s); \
		GOBIN=$(TOOLS_BIN) GOFLAGS= $(GO) install \
			-ldflags "-s -w -X github.com/prometheus/common/version.Version=3.$$(echo $(PROMETHEUS_VERSION) | sed -E 's/^v0\.3([0-9]+)\.([0-9]+)$$/\1.\2/')" \
			$(PROMETHEUS_MODULE)/cmd/$$cmd@$(PROMETHEUS_VERSION) || exit 1; \
		echo "tools: $$cmd built in $$(( $$(date +%s) - start ))s"; \
	done

test-alerts: tools
	cd alerts && $(PROMTOOL) --version | head -1 && $(PROMTOOL) check rules pgbatch.rules.yml && $(PROMTOOL) test rules pgbatch.rules.test.yml
	@if [ -x $(DEBIAN_PROMTOOL) ]; then \
		cd alerts && $(DEBIAN_PROMTOOL) --version | head -1 && $(DEBIAN_PROMTOOL) check rules pgbatch.rules.yml && $(DEBIAN_PROMTOOL) test rules pgbatch.rules.test.yml; \
	elif [ "$$CI" = true ]; then echo "test-alerts: $(DEBIAN_PROMTOOL) is missing (scripts/ci-deps.sh installs it)" >&2; exit 1; \
	else echo "test-alerts: $(DEBIAN_PROMTOOL) not installed: rules tested on Prometheus 3 only"; fi

test-e2e: deps tools
	$(GO) test -count=1 -timeout 10m $(TESTFLAGS) ./e2e/

bench:
	set -o pipefail; PGBATCH_BENCH=full $(GO) test -count=1 -v -timeout 45m -run '^TestBenchTable$$' ./exposition/ | grep '^|\|^## \|^--- FAIL\|^FAIL'
	$(MAKE) bench-recorder

bench-recorder:
	set -o pipefail; out=$$(mktemp); PGBATCH_MEASURE_RECORDER=1 $(GO) test -count=1 -v -timeout 60m -run '^TestMeasure(AgainstSQLMode|StorageAndTimings|Fleet)$$' ./recorder \
		| tee $$out | grep '^|\|^## \|^Rollups of\|^Runs settled\|^Generated \|^The report page\|^--- FAIL\|^FAIL'; status=$$?; grep '^analysis over' $$out; rm -f $$out; exit $$status

VULN_VERSION ?= v1.9.0

vuln:
	$(GO) run golang.org/x/vuln/cmd/govulncheck@$(VULN_VERSION) ./...

FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzParseRule:./batch FuzzParseConfig:./batch FuzzParseTime:./diagnosis \
	FuzzParseTableName:./collectors FuzzWindowQuery:./report

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "== $${t%%:*}"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) -parallel 1 "$${t#*:}" || exit 1; \
	done

# Servers of testharness/pgtest live in $TMPDIR/pgtest-<major>-*/ (with a file
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
