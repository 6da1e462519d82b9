#!/usr/bin/env bash
# Sidecar tests: tshark cross-checks query counts on sidecar/testdata/dev_sample.pcap.
set -euo pipefail
if ! command -v tshark >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	# tshark asks whether non-root users may capture; answer no.
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
	apt-get install -y --no-install-recommends tshark
fi
tshark --version | head -1
