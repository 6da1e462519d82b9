#!/usr/bin/env bash
# Prerequisites of the spray's AF_PACKET and DPDK tests (pkg/spray/afpacket, pkg/spray/dpdk):
# Debian's DPDK 22.11 and OVS-DPDK, the DPDK build of ovs-vswitchd selected, 2 MB hugepages
# reserved and hugetlbfs mounted, plus the tools the end-to-end tests drive. Idempotent; root.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "30-dpdk.sh: must run as root" >&2
	exit 1
fi

pkgs=(libdpdk-dev dpdk pkg-config openvswitch-switch openvswitch-switch-dpdk openvswitch-common
	iproute2 iputils-ping iperf3 ethtool)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Debian alternative for ovs-vswitchd must point at the DPDK build.
dpdk_vswitchd=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
if [[ $(readlink -f /etc/alternatives/ovs-vswitchd 2>/dev/null || true) != "$dpdk_vswitchd" ]]; then
	update-alternatives --set ovs-vswitchd "$dpdk_vswitchd"
fi

# At least 1.5 GiB of 2 MB hugepages: OVS-DPDK alone took ~756 MiB for one vhost-user port, the
# spray's EAL takes its own, and other suites may run an OVS-DPDK of their own. Never lower a
# larger reservation someone else made.
want_pages=${CONFLUO_HUGEPAGES:-1536}
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
have=$(cat "$hp")
if ((have < want_pages)); then
	echo "$want_pages" >"$hp"
	have=$(cat "$hp")
	if ((have < 768)); then
		echo "30-dpdk.sh: could reserve only $have 2 MB hugepages (need >= 768 = 1.5 GiB)" >&2
		exit 1
	fi
fi

if ! mount -t hugetlbfs | grep -q ' /dev/hugepages '; then
	mkdir -p /dev/hugepages
	mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages
fi

pkg-config --exists libdpdk || {
	echo "30-dpdk.sh: pkg-config cannot find libdpdk after installing libdpdk-dev" >&2
	exit 1
}
echo "30-dpdk.sh: DPDK $(pkg-config --modversion libdpdk), $(cat "$hp") hugepages of 2 MB, ovs-vswitchd -> $(readlink -f /etc/alternatives/ovs-vswitchd)"
