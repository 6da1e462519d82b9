// Package memovsdb runs libovsdb's in-memory OVSDB server with the
// Open_vSwitch schema for fast unit tests of the OVS controller and its CLI.
// It is test support only. A Server is safe for concurrent use by the tests'
// goroutines as far as libovsdb's client is.
package memovsdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/stdr"
	"github.com/ovn-org/libovsdb/client"
	"github.com/ovn-org/libovsdb/database/inmemory"
	"github.com/ovn-org/libovsdb/model"
	"github.com/ovn-org/libovsdb/ovsdb"
	"github.com/ovn-org/libovsdb/server"

	"github.com/confluo-go/confluo/ovs/internal/vswitch"
)

// Server is libovsdb's in-memory OVSDB server with the vswitch schema,
// listening on a unix socket in a temp dir.
type Server struct {
	Endpoint string
	srv      *server.OvsdbServer
	Admin    client.Client // a second client, playing "someone else"
}

// Start starts a server for the test and stops it at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	clientModel, err := vswitch.FullDatabaseModel()
	if err != nil {
		t.Fatal(err)
	}
	dbModel, errs := model.NewDatabaseModel(vswitch.Schema(), clientModel)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	db := inmemory.NewDatabase(map[string]model.ClientDBModel{"Open_vSwitch": clientModel})
	srv, err := server.NewOvsdbServer(db, dbModel)
	if err != nil {
		t.Fatal(err)
	}
	// libovsdb's server package turns the global stdr verbosity to 5, which
	// makes the in-memory database log every row to stderr.
	stdr.SetVerbosity(0)
	sock := filepath.Join(t.TempDir(), "db.sock")
	go func() { _ = srv.Serve("unix", sock) }()
	deadline := time.Now().Add(5 * time.Second)
	for !srv.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("in-memory OVSDB server not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ms := &Server{Endpoint: "unix:" + sock, srv: srv}
	quiet := logr.Discard()
	admin, err := client.NewOVSDBClient(clientModel, client.WithEndpoint(ms.Endpoint), client.WithLogger(&quiet))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.MonitorAll(ctx); err != nil {
		t.Fatal(err)
	}
	ms.Admin = admin
	t.Cleanup(func() {
		ms.Admin.Close()
		srv.Close()
	})
	return ms
}

// Transact runs raw ops as the admin client and fails the test on error.
func (ms *Server) Transact(t testing.TB, ops ...ovsdb.Operation) []ovsdb.OperationResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := ms.Admin.Transact(ctx, ops...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ovsdb.CheckOperationResults(res, ops); err != nil {
		t.Fatalf("%v: %v", err, res)
	}
	return res
}

// AddBridge creates the root row (once) and a bridge with the given ports.
func (ms *Server) AddBridge(t testing.TB, name, datapath string, dpdk bool, ports ...string) {
	t.Helper()
	var roots []vswitch.OpenvSwitch
	if err := ms.Admin.List(context.Background(), &roots); err != nil {
		t.Fatal(err)
	}
	var ops []ovsdb.Operation
	var portRefs []any
	for i, p := range ports {
		ifName, portName := fmt.Sprintf("if%d", i), fmt.Sprintf("port%d", i)
		ops = append(ops,
			ovsdb.Operation{Op: ovsdb.OperationInsert, Table: "Interface", UUIDName: ifName, Row: ovsdb.Row{"name": p}},
			ovsdb.Operation{Op: ovsdb.OperationInsert, Table: "Port", UUIDName: portName, Row: ovsdb.Row{"name": p,
				"interfaces": ovsdb.OvsSet{GoSet: []any{ovsdb.UUID{GoUUID: ifName}}}}})
		portRefs = append(portRefs, ovsdb.UUID{GoUUID: portName})
	}
	ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationInsert, Table: "Bridge", UUIDName: "br", Row: ovsdb.Row{
		"name": name, "datapath_type": datapath, "ports": ovsdb.OvsSet{GoSet: portRefs}}})
	if len(roots) == 0 {
		ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationInsert, Table: "Open_vSwitch", Row: ovsdb.Row{
			"bridges": ovsdb.OvsSet{GoSet: []any{ovsdb.UUID{GoUUID: "br"}}}, "dpdk_initialized": dpdk}})
	} else {
		ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationMutate, Table: "Open_vSwitch",
			Where:     []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: roots[0].UUID})},
			Mutations: []ovsdb.Mutation{{Column: "bridges", Mutator: ovsdb.MutateOperationInsert, Value: ovsdb.OvsSet{GoSet: []any{ovsdb.UUID{GoUUID: "br"}}}}}})
	}
	ms.Transact(t, ops...)
}

// Mirrors lists the Mirror table.
func (ms *Server) Mirrors(t testing.TB) []vswitch.Mirror {
	t.Helper()
	var ms2 []vswitch.Mirror
	if err := ms.Admin.List(context.Background(), &ms2); err != nil {
		t.Fatal(err)
	}
	return ms2
}

// Bridge returns the bridge row called name.
func (ms *Server) Bridge(t testing.TB, name string) vswitch.Bridge {
	t.Helper()
	var bs []vswitch.Bridge
	if err := ms.Admin.WhereCache(func(b *vswitch.Bridge) bool { return b.Name == name }).List(context.Background(), &bs); err != nil || len(bs) != 1 {
		t.Fatalf("bridge %s: %v %v", name, bs, err)
	}
	return bs[0]
}
