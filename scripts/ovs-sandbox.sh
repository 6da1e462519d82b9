#!/usr/bin/env bash
# A private Open vSwitch for trying the controller and confluoctl by hand: its own database,
# run directory and sockets under DIR, never touching the system's OVS. ovs-vswitchd runs in a
# network namespace of its own (cfo6-<basename of DIR>): the userspace datapath creates a tap
# called "ovs-netdev", so two userspace OVS instances cannot share a namespace.
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
	mkdir -p "$dir"
	[[ -e $dir/conf.db ]] || ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema
	if ! ovs-appctl --timeout=2 -t "$dir/ovsdb-server.ctl" version >/dev/null 2>&1; then
		ovsdb-server "$dir/conf.db" --remote="punix:$dir/db.sock" --unixctl="$dir/ovsdb-server.ctl" \
			--pidfile="$dir/ovsdb-server.pid" --log-file="$dir/ovsdb-server.log" --detach --no-chdir
	fi
	ovs-vsctl --db="$db" --no-wait init
	if [[ ! -e /run/netns/$netns ]]; then
		ip netns add "$netns"
		ip netns exec "$netns" ip link set lo up
	fi
	if ! ovs-appctl --timeout=2 -t ovs-vswitchd version >/dev/null 2>&1; then
		ip netns exec "$netns" ovs-vswitchd "$db" --pidfile="$dir/ovs-vswitchd.pid" \
			--log-file="$dir/ovs-vswitchd.log" --detach --no-chdir
	fi
	if [[ -n $bridge ]]; then
		ovs-vsctl --db="$db" --timeout=10 --may-exist add-br "$bridge" -- set Bridge "$bridge" datapath_type=netdev
	fi
	echo "sandbox running in $dir (db $db, ovs-vswitchd in netns $netns)"
	;;
stop)
	for d in ovs-vswitchd ovsdb-server; do
		if [[ -r $dir/$d.pid ]]; then
			pid=$(cat "$dir/$d.pid")
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
	done
	ip netns del "$netns" 2>/dev/null || true
	echo "sandbox in $dir stopped"
	;;
env)
	echo "export OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir DB_SOCK=$dir/db.sock VSWITCHD_NETNS=/run/netns/$netns"
	;;
*) usage ;;
esac
