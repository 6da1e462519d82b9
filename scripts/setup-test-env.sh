#!/usr/bin/env bash
# Installs and starts everything the tests need, idempotently, by running scripts/setup.d/*.sh in
# order. Each piece lives in its own script so it can be run alone. Needs root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then
	echo "setup-test-env: must run as root (installs packages, reserves hugepages, creates namespaces)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
for s in setup.d/*.sh; do
	[ -e "$s" ] || continue
	echo "== setup: $s"
	bash "$s"
done
echo "== setup: done"
