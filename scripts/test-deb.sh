#!/usr/bin/env bash
# Installs a .deb of scripts/release.sh on this machine (root), checks the installed binary
# (--version), the user, the environment file's mode and the unit (systemd-analyze verify
# where available), then removes the package again.
#
#   scripts/test-deb.sh PACKAGE.deb
set -euo pipefail
deb=$1
if [[ "$(id -u)" != 0 ]]; then
	if [[ "${CI:-}" == true ]]; then echo "test-deb: must run as root in CI" >&2; exit 1; fi
	echo "test-deb: not root: the .deb is not installed here"
	exit 0
fi
if dpkg-query -W -f='${Status}' pg-batch-exporter 2>/dev/null | grep -q 'install ok installed'; then
	echo "test-deb: pg-batch-exporter is already installed here: not touching it" >&2
	exit 1
fi
trap 'dpkg --purge pg-batch-exporter >/dev/null || true' EXIT
fail() { echo "test-deb: $*" >&2; exit 1; }
dpkg -i "$deb" >/dev/null
# Not tee /dev/stderr: opening it truncates a log file that stderr is redirected to.
version=$(/usr/bin/pg-batch-exporter --version 2>&1) || fail "--version: $version"
echo "$version" >&2
grep -q '^pg-batch-exporter, version ' <<<"$version" || fail "--version"
getent passwd pg-batch-exporter >/dev/null || fail "no pg-batch-exporter user"
[[ "$(stat -c '%a %U:%G' /etc/default/pg-batch-exporter)" == "640 root:pg-batch-exporter" ]] ||
	fail "/etc/default/pg-batch-exporter is $(stat -c '%a %U:%G' /etc/default/pg-batch-exporter)"
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify /lib/systemd/system/pg-batch-exporter.service || fail "systemd-analyze verify"
	echo "test-deb: systemd-analyze verify: unit OK"
else
	echo "test-deb: no systemd-analyze here: unit not verified"
fi
dpkg --purge pg-batch-exporter >/dev/null
trap - EXIT
[[ ! -e /usr/bin/pg-batch-exporter ]] || fail "binary left after purge"
echo "test-deb: $deb installed, checked and removed"
