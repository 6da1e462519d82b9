package coordinator

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/confluo-go/confluo/pkg/fleet"
	"github.com/confluo-go/confluo/pkg/wire"
)

// NATS security. Three kinds of users share one account:
//
//	coordinator   everything (it writes the bucket and sends every command)
//	operator      confluoctl: coordinator API and sidecar commands, read replies
//	host <h>      publishes only under its own host subjects, reads only its own commands and
//	              desired state, answers requests (allow_responses), replies on _INBOX.<h>.>
//
// A host therefore cannot impersonate another host (its heartbeats, acks, alerts and flow events
// are denied on any other host's subject), cannot send commands to hosts or the coordinator,
// and cannot write the bucket. Hosts must connect with nats.CustomInboxPrefix(fleet.InboxPrefix(h)).

// HostPermissions are the NATS permissions of the sidecar of host in the given bucket.
func HostPermissions(host, bucket string) (*server.Permissions, error) {
	if err := wire.ValidateToken("host", host); err != nil {
		return nil, err
	}
	if err := wire.ValidateToken("bucket", bucket); err != nil {
		return nil, err
	}
	stream := "KV_" + bucket
	kvHost := "$KV." + bucket + ".host." + host
	hb, _ := wire.HeartbeatSubject(host)
	ack, _ := wire.AckSubject(host)
	flow, _ := wire.FlowEventSubject(host)
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			hb, ack, flow,
			wire.Root + ".alerts." + host + ".*",
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + stream,
			"$JS.API.CONSUMER.CREATE." + stream + ".*." + kvHost,
			"$JS.API.CONSUMER.DELETE." + stream + ".*",
			"$JS.API.CONSUMER.INFO." + stream + ".*",
			"$JS.API.DIRECT.GET." + stream + ".$KV." + bucket + ".config.*",
			"$JS.API.DIRECT.GET." + stream + "." + kvHost,
			"$JS.FC." + stream + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			wire.AgentWildcard(host),
			wire.CommandWildcard(host),
			fleet.InboxPrefix(host) + ".>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1},
	}, nil
}

// CoordinatorPermissions allow everything: the coordinator owns the bucket and the commands.
func CoordinatorPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{">"}},
		Subscribe: &server.SubjectPermission{Allow: []string{">"}},
	}
}

// OperatorPermissions are confluoctl's: the coordinator API and sidecar commands, and replies.
func OperatorPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			wire.Root + ".coordinator.*", wire.Root + ".host.*.*",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>", wire.Root + ".alerts.>", wire.Root + ".heartbeat.*"}},
	}
}

// User is one NATS user of a generated configuration.
type User struct {
	Name, Password string
	Permissions    *server.Permissions
}

// AuthorizationConfig renders users as a nats-server configuration "authorization" block (to
// include in the server's config file). Passwords should be bcrypt hashes in production.
func AuthorizationConfig(users []User) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		fmt.Fprintf(&b, "    {user: %q, password: %q, permissions: {\n", u.Name, u.Password)
		p := u.Permissions
		if p.Publish != nil {
			fmt.Fprintf(&b, "      publish: {allow: %s}\n", quoteList(p.Publish.Allow))
		}
		if p.Subscribe != nil {
			fmt.Fprintf(&b, "      subscribe: {allow: %s}\n", quoteList(p.Subscribe.Allow))
		}
		if p.Response != nil {
			fmt.Fprintf(&b, "      allow_responses: {max: %d}\n", p.Response.MaxMsgs)
		}
		b.WriteString("    }}\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	sort.Strings(q)
	return "[" + strings.Join(q, ", ") + "]"
}
