#!/usr/bin/env bash
# Installs tshark (and editcap, from wireshark-common) for pkg/pcapio's export test, which has
# tshark read the exported pcap, and for regenerating pkg/packet's golden files
# (go test ./pkg/packet -run TestGolden -rewrite). Idempotent; Debian 12; run as root.
set -euo pipefail
if command -v tshark >/dev/null 2>&1 && command -v editcap >/dev/null 2>&1; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Do not ask whether non-root users may capture; the tests only read files.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get install -y -qq --no-install-recommends tshark wireshark-common >/dev/null
tshark -v | head -n 1
