package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovn-org/libovsdb/ovsdb"

	"github.com/confluo-go/confluo/ovs"
	"github.com/confluo-go/confluo/ovs/internal/memovsdb"
)

// run executes "mirror args..." against endpoint and returns stdout, stderr and the exit code.
func run(t *testing.T, endpoint string, args ...string) (string, string, int) {
	t.Helper()
	cmd := NewMirrorCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	full := append([]string{"--db", endpoint, "--ovs-rundir", t.TempDir(), "--vhost-dir", t.TempDir(),
		"--timeout", "4s", "--no-purge"}, args...)
	cmd.SetArgs(full)
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintf(&stderr, "error: %v\n", err)
	}
	return stdout.String(), stderr.String(), ExitCode(err)
}

func TestMirrorCommands(t *testing.T) {
	ms := memovsdb.Start(t)
	ms.AddBridge(t, "br0", "system", false, "vm1", "vm2")
	ep := ms.Endpoint

	out, errOut, code := run(t, ep, "enable", "-b", "br0", "-n", "m1", "--src-port", "vm1", "--snaplen", "128", "--json")
	if code != ExitOK {
		t.Fatalf("enable: exit %d\n%s%s", code, out, errOut)
	}
	var enabled struct {
		Result struct {
			Change string `json:"change"`
		} `json:"result"`
		Mirror ovs.MirrorStatus `json:"mirror"`
	}
	if err := json.Unmarshal([]byte(out), &enabled); err != nil {
		t.Fatalf("enable --json output %q: %v", out, err)
	}
	if enabled.Result.Change != "created" || enabled.Mirror.Spec.Snaplen != 128 || !enabled.Mirror.Managed ||
		enabled.Mirror.Spray.Name != "cf-br0" {
		t.Fatalf("enable --json = %+v", enabled)
	}

	out, _, code = run(t, ep, "enable", "-b", "br0", "-n", "m1", "--src-port", "vm1", "--snaplen", "128")
	if code != ExitOK || !strings.Contains(out, "mirror m1 on br0: unchanged") || !strings.Contains(out, "src=vm1") {
		t.Fatalf("second enable: exit %d\n%s", code, out)
	}

	out, _, code = run(t, ep, "status", "-b", "br0", "-n", "m1")
	if code != ExitOK || !strings.Contains(out, "snaplen:") || !strings.Contains(out, "128") || !strings.Contains(out, "managed:") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}

	out, _, code = run(t, ep, "list", "--json")
	var list []ovs.MirrorStatus
	if code != ExitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Spec.Name != "m1" {
		t.Fatalf("list --json: exit %d\n%s", code, out)
	}
	out, _, code = run(t, ep, "list")
	if code != ExitOK || !strings.HasPrefix(out, "BRIDGE") || !strings.Contains(out, "m1") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}

	out, _, code = run(t, ep, "disable", "-b", "br0", "-n", "m1")
	if code != ExitOK || !strings.Contains(out, "removed") {
		t.Fatalf("disable: exit %d\n%s", code, out)
	}
	if _, _, code = run(t, ep, "disable", "-b", "br0", "-n", "m1"); code != ExitNotFound {
		t.Fatalf("second disable: exit %d, want %d", code, ExitNotFound)
	}
	if _, _, code = run(t, ep, "disable", "-b", "br0", "-n", "m1", "--ignore-missing"); code != ExitOK {
		t.Fatalf("disable --ignore-missing: exit %d", code)
	}
}

func TestMirrorCommandErrors(t *testing.T) {
	ms := memovsdb.Start(t)
	ms.AddBridge(t, "br0", "system", false, "vm1")
	br := ms.Bridge(t, "br0")
	ms.Transact(t,
		ovsdb.Operation{Op: ovsdb.OperationInsert, Table: "Mirror", UUIDName: "m", Row: ovsdb.Row{"name": "theirs", "select_all": true}},
		ovsdb.Operation{Op: ovsdb.OperationMutate, Table: "Bridge",
			Where:     []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: br.UUID})},
			Mutations: []ovsdb.Mutation{{Column: "mirrors", Mutator: ovsdb.MutateOperationInsert, Value: ovsdb.OvsSet{GoSet: []any{ovsdb.UUID{GoUUID: "m"}}}}}})
	ep := ms.Endpoint
	missing := "unix:" + filepath.Join(t.TempDir(), "nothing.sock")
	cases := []struct {
		name     string
		endpoint string
		args     []string
		want     int
		stderr   string
	}{
		{"bridge not found", ep, []string{"enable", "-b", "nope", "-n", "m", "--select-all"}, ExitNotFound, "bridge not found"},
		{"port not found", ep, []string{"enable", "-b", "br0", "-n", "m", "--src-port", "ghost"}, ExitNotFound, "port not found"},
		{"snaplen", ep, []string{"enable", "-b", "br0", "-n", "m", "--select-all", "--snaplen", "5"}, ExitUsage, "snaplen out of range"},
		{"no selection", ep, []string{"enable", "-b", "br0", "-n", "m"}, ExitUsage, "selects nothing"},
		{"missing name", ep, []string{"enable", "-b", "br0", "--select-all"}, ExitUsage, "--name"},
		{"bad vlan", ep, []string{"enable", "-b", "br0", "-n", "m", "--select-all", "--vlan", "x"}, ExitUsage, "vlan"},
		{"bad flow", ep, []string{"enable", "-b", "br0", "-n", "m", "--flow", "tcp,actions=drop"}, ExitUsage, "invalid flow"},
		{"unmanaged", ep, []string{"enable", "-b", "br0", "-n", "theirs", "--select-all"}, ExitConflict, "not managed"},
		{"unmanaged disable", ep, []string{"disable", "-b", "br0", "-n", "theirs"}, ExitConflict, "not managed"},
		{"status missing", ep, []string{"status", "-b", "br0", "-n", "ghost"}, ExitNotFound, "mirror not found"},
		{"not running", missing, []string{"list"}, ExitNotRunning, "not reachable"},
		{"unknown command", ep, []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"unknown flag", ep, []string{"list", "--bogus"}, ExitUsage, "bogus"},
		{"extra args", ep, []string{"list", "x"}, ExitUsage, "no arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(t, tc.endpoint, tc.args...)
			if code != tc.want || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q), stdout %q", code, tc.want, errOut, tc.stderr, out)
			}
		})
	}
	// --json reports the error on stdout too.
	out, _, code := run(t, missing, "list", "--json")
	var e struct {
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if code != ExitNotRunning || json.Unmarshal([]byte(out), &e) != nil || e.ExitCode != ExitNotRunning || e.Error == "" {
		t.Fatalf("list --json on a dead endpoint: exit %d, stdout %q", code, out)
	}
}

func TestExitCode(t *testing.T) {
	cases := map[error]int{
		nil:                   ExitOK,
		errors.New("x"):       ExitFailure,
		ovs.ErrTransaction:    ExitFailure,
		ovs.ErrPermission:     ExitPermission,
		ovs.ErrNotRunning:     ExitNotRunning,
		ovs.ErrNotConnected:   ExitNotRunning,
		ovs.ErrBridgeNotFound: ExitNotFound,
		ovs.ErrPortNotFound:   ExitNotFound,
		ovs.ErrMirrorNotFound: ExitNotFound,
		ovs.ErrUnmanaged:      ExitConflict,
		ovs.ErrFlowSelection:  ExitConflict,
		ovs.ErrVSwitchd:       ExitNotRunning,
		ovs.ErrSnaplen:        ExitUsage,
		ovs.ErrInvalidSpec:    ExitUsage,
		fmt.Errorf("wrapped: %w", ovs.ErrPermission): ExitPermission,
	}
	for err, want := range cases {
		if got := ExitCode(err); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", err, got, want)
		}
		if want != ExitOK && want != ExitFailure && want != ExitUsage && Hint(err) == "" {
			t.Errorf("Hint(%v) is empty", err)
		}
	}
}
