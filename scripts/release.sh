#!/usr/bin/env bash
# Builds release artefacts into OUT: one static binary per GOOS/GOARCH, a .deb per linux
# arch (binary, systemd unit, /etc/default environment file for the DSN, a system user made
# by postinst), and SHA256SUMS over all of them.
#
#   scripts/release.sh OUT VERSION LDFLAGS TARGET...     TARGET: linux/amd64, darwin/arm64, ...
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 version=$2 ldflags=$3
shift 3
mkdir -p "$out"
# A tag v1.2.3[-N-gREV] -> 1.2.3[-N-gREV]; a bare revision (no tag yet) -> 0~REV, which
# sorts before any tagged release (a hash may start with a digit: test for a tag's form).
debversion=${version#v}
[[ $version =~ ^v?[0-9]+\.[0-9]+ ]] || debversion="0~$version"

for target in "$@"; do
	goos=${target%/*} goarch=${target#*/}
	name="pg-batch-exporter-$version.$goos-$goarch"
	echo "release: $name"
	CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath -ldflags "$ldflags" -o "$out/$name" ./cmd/pg-batch-exporter
	[[ $goos == linux ]] || continue

	root=$(mktemp -d)
	trap 'rm -rf "$root"' EXIT
	install -D -m 0755 "$out/$name" "$root/usr/bin/pg-batch-exporter"
	install -D -m 0644 packaging/pg-batch-exporter.service "$root/lib/systemd/system/pg-batch-exporter.service"
	install -D -m 0640 packaging/pg-batch-exporter.default "$root/etc/default/pg-batch-exporter"
	install -d "$root/DEBIAN"
	install -m 0755 packaging/postinst packaging/prerm "$root/DEBIAN/"
	echo /etc/default/pg-batch-exporter >"$root/DEBIAN/conffiles"
	cat >"$root/DEBIAN/control" <<CONTROL
Package: pg-batch-exporter
Version: $debversion
Architecture: $goarch
Maintainer: pg-batch-exporter <pg-batch-exporter@users.noreply.github.com>
Depends: adduser
Section: database
Priority: optional
Homepage: https://github.com/pg-batch-exporter/pg-batch-exporter
Description: Prometheus exporter and recorder for PostgreSQL batch variance
 Telemetry for why a batch took 60 minutes instead of 10: waits, locks, checkpoints,
 WAL and temp files, recorded per batch run and diagnosed against previous runs.
CONTROL
	dpkg-deb --root-owner-group --build "$root" "$out/pg-batch-exporter_${debversion}_$goarch.deb" >/dev/null
	rm -rf "$root"
	trap - EXIT
done
(cd "$out" && sha256sum -- * | grep -v ' SHA256SUMS$' >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "release: $out/SHA256SUMS"
