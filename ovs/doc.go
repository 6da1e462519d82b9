// Package ovs programs Open vSwitch for Confluo-Go: it creates the mirrors
// that copy packet headers to a spray port, keeps them as declared, and
// reports what they did. It speaks OVSDB (RFC 7047) through libovsdb with
// typed models generated from Open vSwitch's own schema
// (internal/vswitch, `go generate ./ovs/internal/vswitch`).
//
// # Use
//
// One-shot, as confluoctl does:
//
//	c, _ := ovs.New(ovs.DefaultOptions())
//	if err := c.Connect(ctx); err != nil { ... }      // ErrNotRunning, ErrPermission
//	res, err := c.EnsureMirror(ctx, ovs.MirrorSpec{
//		Bridge: "br-int", Name: "confluo", SrcPorts: []string{"vm1"}, Snaplen: 128,
//	})
//	list, err := c.ListMirrors(ctx)                   // statistics and spray port state
//	c.Close()
//
// As a daemon (the sidecar): call Run in a goroutine, then EnsureSprayPort and
// EnsureMirror. Run reconnects with exponential backoff, watches the database
// through a monitor and restores a managed mirror or spray port that someone
// else removed or changed, usually within milliseconds of the change and at
// the latest after Options.ResyncInterval. Every change is logged with what
// changed and why ("requested" or "reconcile" plus the differing columns).
//
// # Ownership
//
// Rows the controller creates carry external_ids:confluo-managed-by=confluo-go
// (and confluo-role=mirror or spray-port). It never edits or deletes a Mirror,
// Port or Interface without that mark: EnsureMirror and RemoveMirror return
// ErrUnmanaged for a mirror of the same name made by someone else. An existing
// port named as output is used as it is.
//
// # Transactions
//
// Each change is one OVSDB transaction, for example creating a mirror and its
// spray port:
//
//	+-------------------------------------------------------------------+
//	| insert Interface @iface {name, type, options, external_ids}       |
//	| insert Port      @port  {name, interfaces=[@iface], external_ids} |
//	| mutate Bridge    ports   insert [@port]     where _uuid == bridge |
//	| insert Mirror    @mirror {name, select_*, output_port=@port,      |
//	|                           snaplen, external_ids}                  |
//	| mutate Bridge    mirrors insert [@mirror]   where _uuid == bridge |
//	+-------------------------------------------------------------------+
//
// The planner (internal/mirrorspec) is pure and golden-tested; OVSDB errors of
// single operations come back joined, each naming its operation
// (ErrTransaction).
//
// # Spray ports
//
// EnsureSprayPort(ctx, bridge) creates the port DefaultSprayPortName(bridge)
// ("cf-" + bridge, cut to 15 bytes). On a bridge with datapath_type=netdev
// while Open_vSwitch.dpdk_initialized is true it is a dpdkvhostuserclient
// interface with options:vhost-server-path=<Options.VhostDir>/<port>.sock:
// OVS is the vhost-user client, the spray process must be the server
// (DPDK net_virtio_user with server=1 on that path) and OVS connects when the
// socket appears. Otherwise it is an internal port (a tap device on netdev
// bridges) that the controller sets up (IFF_UP), in Options.VSwitchdNetNS if
// ovs-vswitchd runs in another network namespace. A spray setup calls:
//
//	o := ovs.DefaultOptions()
//	o.Endpoint = "unix:" + rundir + "/db.sock"
//	o.OVSRunDir = rundir                 // where ovs-vswitchd.<pid>.ctl and <br>.mgmt live
//	o.VhostDir = "/run/confluo/vhost"    // the spray's vhost-user server socket directory
//	c, _ := ovs.New(o); c.Connect(ctx)
//	port, _, err := c.EnsureSprayPort(ctx, "br0")   // port.VhostServerPath is the socket to serve
//	_, err = c.EnsureMirror(ctx, ovs.MirrorSpec{Bridge: "br0", Name: "all", SelectAll: true, Snaplen: 128})
//
// # Selection by flow
//
// Open vSwitch 3.1 as shipped by Debian 12 (schema 8.3.1) has no Mirror
// "filter" column (it appeared in OVS 3.3), so a MirrorSpec's Flows are
// realised with OpenFlow, through ovs-ofctl: each match becomes a table-0 rule
//
//	cookie=0xcf10<48-bit hash of bridge/name>,priority=40000,<match>,
//	    actions=NORMAL,output:<spray ofport>        (or output(port=N,max_len=snaplen))
//
// which forwards the packet exactly like the bridge's default
// "priority=0 actions=NORMAL" rule and also copies it to the spray port. The
// Mirror row is still written (with no port selection, so OVS mirrors nothing
// through it) and records the matches in external_ids:confluo-flows, so
// ListMirrors and a restarted controller see them. Interaction with existing
// flows: a higher-priority rule would bypass any pipeline an SDN controller
// installed, so the controller refuses (ErrFlowSelection) to install flow
// selection on a bridge whose table 0 holds rules other than its own and the
// default NORMAL rule, and checks this before writing anything. Rules deleted
// behind its back (or lost when ovs-vswitchd restarts) are reinstalled by Run.
// Port and VLAN selection stay with OVSDB mirrors, which work on every bridge.
//
// # Changes and cached flows
//
// ovs-vswitchd does not apply every mirror change to datapath flows it already
// cached: in the integration test, without a purge, a removed mirror kept
// copying a running ping (tens of copies in the second after its removal). After each change the controller runs
// "ovs-appctl revalidator/purge" (Options.Purge, default on) so the change
// applies to existing traffic at once. If ovs-vswitchd is down the purge fails
// fast; the failure is logged and counted (the OVSDB change is committed).
//
// # Deadlines
//
// Nothing blocks without a deadline: every OVSDB call and every ovs-appctl or
// ovs-ofctl run is bounded by Options.CallTimeout (and the tools get
// --timeout), the controller never waits for ovs-vswitchd to apply a
// database change, and while OVSDB is down calls fail with ErrNotConnected.
//
// # Locking
//
// Lock order: Controller.applyMu, then Controller.mu. applyMu serialises
// plan, transaction and cache verification; mu guards the desired state.
package ovs
