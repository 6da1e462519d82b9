#!/usr/bin/env bash
# Start or stop a private Open vSwitch instance (ovsdb-server + ovs-vswitchd) in its own run
# directory, so tests never touch the system's OVS or each other's.
#
#   ovs-dpdk.sh start RUNDIR [--dpdk] [--netns NAME] [--prefix NAME] [--socket-mem MB] [--pmd-mask HEX]
#   ovs-dpdk.sh stop RUNDIR
#   ovs-dpdk.sh vsctl RUNDIR ARGS...      # ovs-vsctl against the instance
#
# RUNDIR holds conf.db, db.sock, the control sockets, pid and log files (keep it short: unix
# socket paths are limited to 107 bytes). With --dpdk the DPDK build of ovs-vswitchd runs with
# dpdk-init=true, --no-pci, --no-telemetry, a unique --file-prefix (default: spr + the RUNDIR's
# name) and a small socket-mem; its PMD thread keeps one core busy, so stop it when done. stop is
# idempotent and removes the instance's hugepage files and DPDK runtime directory.
# With --netns, ovs-vswitchd runs in that network namespace (created, and deleted by stop):
# the userspace datapath's "ovs-netdev" tap and every bridge and internal port live there, so
# concurrent instances cannot collide on those names.
set -euo pipefail

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1 dir=$2
shift 2

vswitchd_dpdk=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
schema=/usr/share/openvswitch/vswitch.ovsschema
vsctl() { ovs-vsctl --db="unix:$dir/db.sock" --timeout=30 "$@"; }

start() {
	local dpdk=0 prefix="" socket_mem=256 pmd_mask="" netns=""
	while [[ $# -gt 0 ]]; do
		case $1 in
		--dpdk) dpdk=1 ;;
		--netns) netns=$2; shift ;;
		--prefix) prefix=$2; shift ;;
		--socket-mem) socket_mem=$2; shift ;;
		--pmd-mask) pmd_mask=$2; shift ;;
		*) usage ;;
		esac
		shift
	done
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[[ -n $prefix ]] || prefix="spr$(basename "$dir" | tr -cd 'a-zA-Z0-9')"
	echo "$prefix" >"$dir/file-prefix"
	export OVS_RUNDIR=$dir OVS_LOGDIR=$dir OVS_DBDIR=$dir
	[[ -f $dir/conf.db ]] || ovsdb-tool create "$dir/conf.db" "$schema"
	ovsdb-server "$dir/conf.db" --remote="punix:$dir/db.sock" --pidfile="$dir/ovsdb-server.pid" \
		--unixctl="$dir/ovsdb-server.ctl" --log-file="$dir/ovsdb-server.log" -vconsole:emer --detach --no-chdir
	vsctl --no-wait init
	local bin=/usr/sbin/ovs-vswitchd
	if ((dpdk)); then
		[[ -x $vswitchd_dpdk ]] || { echo "ovs-dpdk.sh: $vswitchd_dpdk missing (apt-get install openvswitch-switch-dpdk)" >&2; exit 1; }
		bin=$vswitchd_dpdk
		local free
		free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0)
		if ((free * 2 < socket_mem + 512)); then
			echo "ovs-dpdk.sh: only $free free 2 MB hugepages; OVS-DPDK needs ~756 MiB (run scripts/setup.d/30-dpdk.sh)" >&2
			exit 1
		fi
		vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true \
			"other_config:dpdk-extra=--no-pci --no-telemetry --file-prefix=$prefix --huge-dir=/dev/hugepages" \
			"other_config:dpdk-socket-mem=$socket_mem" "other_config:dpdk-socket-limit=$((socket_mem * 4))" \
			other_config:vhost-iommu-support=false
		[[ -z $pmd_mask ]] || vsctl --no-wait set Open_vSwitch . "other_config:pmd-cpu-mask=$pmd_mask"
	else
		vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=false
		# The DPDK build also runs without DPDK; prefer the plain build when both exist.
		[[ -x /usr/lib/openvswitch-switch/ovs-vswitchd ]] && bin=/usr/lib/openvswitch-switch/ovs-vswitchd
	fi
	local exec_in=()
	if [[ -n $netns ]]; then
		ip netns list | grep -qw "$netns" || ip netns add "$netns"
		echo "$netns" >"$dir/netns"
		ip -n "$netns" link set lo up
		exec_in=(ip netns exec "$netns")
	fi
	echo "$bin" >"$dir/vswitchd-bin" # for restarting it (pkg/ovstest StartVSwitchd)
	# The control socket is the default $dir/ovs-vswitchd.<pid>.ctl, so that
	# `OVS_RUNDIR=$dir ovs-appctl -t ovs-vswitchd` (the controller's revalidator/purge) finds it.
	"${exec_in[@]}" "$bin" "unix:$dir/db.sock" --pidfile="$dir/ovs-vswitchd.pid" \
		--log-file="$dir/ovs-vswitchd.log" -vconsole:emer --detach --no-chdir
	if ((dpdk)); then
		for _ in $(seq 1 120); do
			[[ $(vsctl get Open_vSwitch . dpdk_initialized 2>/dev/null || true) == true ]] && break
			kill -0 "$(cat "$dir/ovs-vswitchd.pid" 2>/dev/null || echo 0)" 2>/dev/null || break
			sleep 0.5
		done
		if [[ $(vsctl get Open_vSwitch . dpdk_initialized 2>/dev/null || true) != true ]]; then
			echo "ovs-dpdk.sh: DPDK did not initialize; tail of $dir/ovs-vswitchd.log:" >&2
			tail -20 "$dir/ovs-vswitchd.log" >&2 || true
			stop
			exit 1
		fi
	fi
	echo "ovs-dpdk.sh: started in $dir (dpdk=$dpdk prefix=$prefix)"
}

kill_pidfile() {
	local f=$1 pid
	[[ -f $f ]] || return 0
	pid=$(cat "$f" 2>/dev/null || true)
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

stop() {
	[[ -d $dir ]] || return 0
	# Userspace-datapath bridges and internal ports are persistent tap devices that outlive
	# ovs-vswitchd (with their counters): note their names now, delete them after it exits.
	local taps=()
	if [[ -S $dir/db.sock ]]; then
		mapfile -t taps < <(timeout 10 ovs-vsctl --db="unix:$dir/db.sock" --timeout=5 --bare --columns=name \
			find interface type=internal 2>/dev/null | grep -v '^$' || true)
	fi
	local ctl=$dir/ovs-vswitchd.ctl # before the default control socket was used
	[[ -f $dir/ovs-vswitchd.pid ]] && [[ ! -S $ctl ]] && ctl=$dir/ovs-vswitchd.$(cat "$dir/ovs-vswitchd.pid" 2>/dev/null).ctl
	if [[ -S $ctl ]]; then
		timeout 10 ovs-appctl -t "$ctl" exit --cleanup >/dev/null 2>&1 || true
	fi
	kill_pidfile "$dir/ovs-vswitchd.pid"
	kill_pidfile "$dir/ovsdb-server.pid"
	local tap ns=""
	[[ -f $dir/netns ]] && ns=$(cat "$dir/netns")
	for tap in "${taps[@]}"; do
		if [[ -n $ns ]]; then
			ip -n "$ns" link del "$tap" 2>/dev/null || true
		else
			ip link del "$tap" 2>/dev/null || true
		fi
	done
	if [[ -n $ns ]]; then
		ip netns del "$ns" 2>/dev/null || true
		rm -f "$dir/netns"
	fi
	if [[ -f $dir/file-prefix ]]; then
		local prefix
		prefix=$(cat "$dir/file-prefix")
		if [[ -n $prefix ]]; then
			rm -f /dev/hugepages/"$prefix"map_* /dev/hugepages/"$prefix"seg_* 2>/dev/null || true
			rm -rf "/var/run/dpdk/$prefix"
		fi
	fi
	rm -f "$dir"/*.sock "$dir"/*.ctl "$dir"/*.pid "$dir/vswitchd-bin"
}

case $cmd in
start) start "$@" ;;
stop) stop ;;
vsctl) vsctl "$@" ;;
*) usage ;;
esac
