#!/usr/bin/env bash
# make demo: builds confluo-sidecar and confluoctl, starts a sidecar (with its embedded NATS server)
# replaying sidecar/testdata/dev_sample.pcap (real traffic between two network namespaces: ICMP,
# two iperf3 TCP streams to port 5301, an iperf3 UDP stream to port 5302), installs example
# filters, aggregates and triggers with confluoctl, prints the alerts as a NATS subscriber
# receives them, answers a diagnosis query, and says how to go on.
#
#   make demo            finishes within a minute
#   make demo KEEP=1     leaves the sidecar running until Ctrl-C
#
# Environment: KEEP (see above), DEMO_DIR (work directory, default a fresh temp dir),
# NATS_PORT / HTTP_PORT (default: the first free ports from 14222 / 17480).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

KEEP=${KEEP:-0}
DEMO_DIR=${DEMO_DIR:-$(mktemp -d /tmp/confluo-demo.XXXXXX)}
BIN=$DEMO_DIR/bin
PCAP=sidecar/testdata/dev_sample.pcap
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}
NATS_PORT=${NATS_PORT:-$(free_port 14222)}
HTTP_PORT=${HTTP_PORT:-$(free_port 17480)}
NATS_URL=nats://127.0.0.1:$NATS_PORT
HOST=demo

bold "building confluo-sidecar and confluoctl"
CGO_ENABLED=0 go build -o "$BIN/" ./sidecar/cmd/confluo-sidecar ./sidecar/cmd/confluoctl
ctl() { "$BIN/confluoctl" --nats "$NATS_URL" --host "$HOST" "$@"; }
show() { printf '\033[2m$ confluoctl'; printf " %q" "$@"; printf '\033[0m\n'; ctl "$@"; }

cat >"$DEMO_DIR/sidecar.yaml" <<YAML
host: $HOST
labels: {demo: "true"}
capture:
  source: pcap
  file: $PWD/$PCAP
  retime: true        # timestamps start now, so "--from -5m" finds the packets
  rings: 2
nats:
  embedded_host: 127.0.0.1
  embedded_port: $NATS_PORT
http:
  listen: 127.0.0.1:$HTTP_PORT
store:
  indexes: [dst_port]
YAML

bold "starting the sidecar (embedded NATS on $NATS_URL, HTTP API on 127.0.0.1:$HTTP_PORT)"
"$BIN/confluo-sidecar" -config "$DEMO_DIR/sidecar.yaml" >"$DEMO_DIR/sidecar.log" 2>&1 &
SIDECAR=$!
TAIL=""
cleanup() {
	[ -n "$TAIL" ] && kill "$TAIL" 2>/dev/null || true
	if kill -0 "$SIDECAR" 2>/dev/null; then
		kill -TERM "$SIDECAR" 2>/dev/null || true
		wait "$SIDECAR" 2>/dev/null || true
	fi
}
trap cleanup EXIT
ready=0
for _ in $(seq 1 300); do
	kill -0 "$SIDECAR" 2>/dev/null || { echo "the sidecar exited:"; cat "$DEMO_DIR/sidecar.log"; exit 1; }
	if ctl stats --json --timeout 1s 2>/dev/null | grep -q '"done": true'; then ready=1; break; fi
	sleep 0.1
done
[ "$ready" = 1 ] || { echo "the sidecar did not finish loading the capture:"; cat "$DEMO_DIR/sidecar.log"; exit 1; }
ctl stats

bold "a NATS subscriber listens on confluo.v1.alerts.$HOST.* (confluoctl tail)"
ctl tail >"$DEMO_DIR/alerts.txt" 2>&1 &
TAIL=$!
sleep 0.5

bold "installing filters, aggregates and triggers"
show filter add iperf_tcp 'ip_proto == tcp && dst_port == 5301'
show filter add iperf_udp 'ip_proto == udp && dst_port == 5302'
show aggregate add tcp_bytes --filter iperf_tcp 'SUM(frame_len)'
show aggregate add udp_pkts --filter iperf_udp 'COUNT(*)'
show trigger add tcp_heavy 'tcp_bytes >= 200000' --period 100ms
show trigger add udp_burst 'udp_pkts >= 80' --period 100ms

bold "alerts as the subscriber receives them"
# The replay is stored, so every window is complete: wait until the published count settles.
published() { ctl stats --json | sed -n 's/.*"alerts_published": \([0-9]*\).*/\1/p'; }
last=-1
for _ in $(seq 1 50); do
	sleep 0.3
	now=$(published)
	[ "$now" = "$last" ] && [ "$now" != 0 ] && break
	last=$now
done
sleep 0.3
kill "$TAIL" 2>/dev/null || true
TAIL=""
grep -v '^listening on' "$DEMO_DIR/alerts.txt" || true

bold "diagnosis: who sent the heavy TCP traffic, and how much?"
FIRST=$(ctl alerts --trigger tcp_heavy --json | sed -n 's/.*"window_start": "\(.*\)",/\1/p' | head -1)
END=$(ctl alerts --trigger tcp_heavy --json | sed -n 's/.*"window_end": "\(.*\)",/\1/p' | head -1)
show query 'ip_proto == tcp && dst_port == 5301' --from "$FIRST" --to "$END" --limit 5
show aggregate 'SUM(frame_len)' 'src_ip == 10.88.0.1 && dst_port == 5301'
show aggregate 'COUNT(*)' 'ip_proto == udp && frame_len < 300'
show stats

if [ "$KEEP" = "0" ]; then
	cat <<TXT

The demo sidecar stops now. To query it further, keep it running with \`make demo KEEP=1\`, then:
TXT
else
	printf '\nQuery it further:\n'
fi
cat <<TXT
  $BIN/confluoctl --nats $NATS_URL --host $HOST query 'icmp_type == 8' --columns timestamp,src_ip,dst_ip,ttl
  $BIN/confluoctl --nats $NATS_URL --host $HOST query 'ip_proto == udp' --all --output pcap -o /tmp/udp.pcap
  $BIN/confluoctl --nats $NATS_URL --host $HOST alerts
  curl -s -XPOST 127.0.0.1:$HTTP_PORT/v1/aggregate -d '{"func":"AVG(frame_len)","expr":"ip_proto == tcp"}'
  curl -s 127.0.0.1:$HTTP_PORT/metrics | grep confluo_sidecar
Sidecar log: $DEMO_DIR/sidecar.log
TXT

if [ "$KEEP" != "0" ]; then
	bold "the sidecar keeps running (KEEP=$KEEP); Ctrl-C stops it"
	wait "$SIDECAR"
fi
