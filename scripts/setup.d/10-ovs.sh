#!/usr/bin/env bash
# Prerequisites of the OVS controller's integration tests (ovs/): Open vSwitch's daemons and tools,
# iproute2 for network namespaces and veth pairs, ping for traffic, plus ethtool, iperf3 and tcpdump
# for debugging mirrors by hand. Idempotent; root; Debian 12.
#
# It does NOT start the system's Open vSwitch: the tests start a private ovsdb-server and
# ovs-vswitchd in temp dirs (see scripts/ovs-sandbox.sh). While installing, a policy-rc.d keeps
# the packages' postinst from starting the services.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "10-ovs.sh: must run as root" >&2
	exit 1
fi

pkgs=(openvswitch-switch openvswitch-common openvswitch-switch-dpdk iproute2 iputils-ping ethtool iperf3 tcpdump)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	policy=/usr/sbin/policy-rc.d
	added_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		added_policy=1
	fi
	trap '[[ $added_policy == 1 ]] && rm -f "$policy"' EXIT
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

for bin in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl ovs-ofctl ip ping; do
	command -v "$bin" >/dev/null || {
		echo "10-ovs.sh: $bin missing after install" >&2
		exit 1
	}
done
test -r /usr/share/openvswitch/vswitch.ovsschema || {
	echo "10-ovs.sh: /usr/share/openvswitch/vswitch.ovsschema missing" >&2
	exit 1
}
