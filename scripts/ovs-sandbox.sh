#!/usr/bin/env bash
# A private Open vSwitch for trying the controller and confluoctl by hand: its own database,
# run directory and sockets under DIR, never touching the system's OVS. ovs-vswitchd runs in a
# network namespace of its own (cfo6-<basename of DIR>): the userspace datapath creates a tap
# called "ovs-netdev", so two userspace OVS instances cannot share a namespace. It is a thin
# wrapper over scripts/ovs-dpdk.sh (which the tests use through pkg/ovstest) for use by hand.
#
#   scripts/ovs-sandbox.sh start DIR [BRIDGE]   # ovsdb-server + ovs-vswitchd, a netdev bridge
#   eval "$(scripts/ovs-sandbox.sh env DIR)"     # OVS_RUNDIR etc. for ovs-vsctl/ovs-appctl
#   confluoctl mirror --db unix:DIR/db.sock --ovs-rundir DIR --vswitchd-netns /run/netns/cfo6-NAME list
#   scripts/ovs-sandbox.sh stop DIR
#
# Keep DIR short (unix socket paths are limited to 107 bytes). Root; needs scripts/setup.d/10-ovs.sh.
set -euo pipefail

usage() {
	echo "usage: $0 start DIR [BRIDGE] | stop DIR | env DIR" >&2
	exit 2
}
[[ $# -ge 2 ]] || usage
cmd=$1
dir=$(realpath -m "$2")
export OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir
db=unix:$dir/db.sock
netns=cfo6-$(basename "$dir")

case $cmd in
start)
	bridge=${3:-}
	# scripts/ovs-dpdk.sh does the work (the same private instance the tests start through
	# pkg/ovstest); this script adds idempotence, a bridge and the env helper for use by hand.
	if ! ovs-appctl --timeout=2 -t "$dir/ovsdb-server.ctl" version >/dev/null 2>&1; then
		bash "$(dirname "$0")/ovs-dpdk.sh" start "$dir" --netns "$netns" --prefix "cfo6$(basename "$dir" | tr -cd 'a-zA-Z0-9')"
	fi
	if [[ -n $bridge ]]; then
		ovs-vsctl --db="$db" --timeout=10 --may-exist add-br "$bridge" -- set Bridge "$bridge" datapath_type=netdev
	fi
	echo "sandbox running in $dir (db $db, ovs-vswitchd in netns $netns)"
	;;
stop)
	bash "$(dirname "$0")/ovs-dpdk.sh" stop "$dir"
	ip netns del "$netns" 2>/dev/null || true
	echo "sandbox in $dir stopped"
	;;
env)
	echo "export OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir DB_SOCK=$dir/db.sock VSWITCHD_NETNS=/run/netns/$netns"
	;;
*) usage ;;
esac
