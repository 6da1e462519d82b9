// Package e2e holds the sidecar's end-to-end tests with real components: a private Open vSwitch
// (userspace bridge) in network namespaces, a mirror owned by the sidecar, AF_PACKET capture,
// real traffic, triggers, alerts received by a NATS subscriber and queries over NATS. They need
// root, Open vSwitch and iproute2 (scripts/setup.d) and fail, naming what is missing, without them.
package e2e
