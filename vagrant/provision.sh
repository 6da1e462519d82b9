#!/usr/bin/env bash
# Provisions one lab VM: role "coordinator" (NATS + confluo-coordinator) or "hypervisor" (OVS,
# two guest namespaces on br-lab, confluo-sidecar mirroring br-lab to a tap spray port).
set -euo pipefail
role=$1 coord_ip=$2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq golang-go make git iproute2 >/dev/null
if [ ! -x /usr/local/go/bin/go ]; then
	echo "provision: install Go 1.26 at /usr/local/go first (the Debian golang-go is too old to build the module)" >&2
fi
cd /opt/confluo
bash scripts/setup-test-env.sh
PATH=/usr/local/go/bin:$PATH make build
install -m 0755 bin/* /usr/local/bin/
mkdir -p /etc/confluo
case $role in
coordinator)
	cat >/etc/confluo/coordinator.yaml <<YAML
nats:
  embedded_host: 0.0.0.0
  embedded_port: 4222
  store_dir: /var/lib/confluo/jetstream
YAML
	systemd-run --unit confluo-coordinator /usr/local/bin/confluo-coordinator -config /etc/confluo/coordinator.yaml
	;;
hypervisor)
	systemctl enable --now openvswitch-switch
	ovs-vsctl --may-exist add-br br-lab -- set bridge br-lab datapath_type=netdev
	for g in g1 g2; do
		ip netns add "$g" 2>/dev/null || true
		ip link add "v$g" type veth peer name eth0 netns "$g" 2>/dev/null || true
		ip link set "v$g" up
		ovs-vsctl --may-exist add-port br-lab "v$g"
	done
	ip -n g1 addr replace 10.77.0.1/24 dev eth0 && ip -n g1 link set eth0 up
	ip -n g2 addr replace 10.77.0.2/24 dev eth0 && ip -n g2 link set eth0 up
	cat >/etc/confluo/sidecar.yaml <<YAML
host: $(hostname)
capture:
  source: afpacket
nats:
  urls: ["nats://${coord_ip}:4222"]
mirror:
  enabled: true
  bridge: br-lab
  name: confluo-lab
  select_all: true
  snaplen: 128
fleet:
  enabled: true
YAML
	systemd-run --unit confluo-sidecar /usr/local/bin/confluo-sidecar -config /etc/confluo/sidecar.yaml
	;;
esac
