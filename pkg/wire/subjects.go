package wire

import (
	"fmt"
	"strings"
)

// Version is the wire protocol version; it is the second token of every subject.
const Version = "v1"

// Root is the subject prefix shared by every Confluo-Go subject.
const Root = "confluo." + Version

// Subject kinds (the third token).
const (
	kindAlerts    = "alerts"
	kindEvents    = "events"
	kindHost      = "host"
	kindHeartbeat = "heartbeat"
)

// MaxTokenLen bounds host, trigger and command tokens.
const MaxTokenLen = 128

// ValidateToken reports whether s can be used as one subject token (a host name, a trigger name).
// Allowed: ASCII letters, digits, '-' and '_', 1 to MaxTokenLen bytes. Dots, wildcards ('*', '>')
// and whitespace are rejected because they would change the subject's meaning. The error wraps
// ErrInvalidToken and names what was wrong.
func ValidateToken(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidToken, what)
	}
	if len(s) > MaxTokenLen {
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrInvalidToken, what, len(s), MaxTokenLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("%w: %s %q has the character %q at offset %d (allowed: letters, digits, '-', '_')",
				ErrInvalidToken, what, s, c, i)
		}
	}
	return nil
}

// AlertSubject is confluo.v1.alerts.<host>.<trigger>, where a sidecar publishes Alert messages.
func AlertSubject(host, trigger string) (string, error) {
	if err := ValidateToken("host", host); err != nil {
		return "", err
	}
	if err := ValidateToken("trigger", trigger); err != nil {
		return "", err
	}
	return Root + "." + kindAlerts + "." + host + "." + trigger, nil
}

// AlertsWildcard is the subscription for alerts: every host's when host is "", else one host's.
func AlertsWildcard(host string) string {
	if host == "" {
		return Root + "." + kindAlerts + ".*.*"
	}
	return Root + "." + kindAlerts + "." + host + ".*"
}

// FlowEventSubject is confluo.v1.events.flow.<host>, where a sidecar publishes FlowEventBatch messages.
func FlowEventSubject(host string) (string, error) {
	if err := ValidateToken("host", host); err != nil {
		return "", err
	}
	return Root + "." + kindEvents + ".flow." + host, nil
}

// CommandSubject is confluo.v1.host.<host>.<command>, the request-reply subject of one operation.
func CommandSubject(host string, cmd Command) (string, error) {
	if err := ValidateToken("host", host); err != nil {
		return "", err
	}
	if err := ValidateToken("command", string(cmd)); err != nil {
		return "", err
	}
	return Root + "." + kindHost + "." + host + "." + string(cmd), nil
}

// CommandWildcard is confluo.v1.host.<host>.*, which a sidecar subscribes to.
func CommandWildcard(host string) string {
	return Root + "." + kindHost + "." + host + ".*"
}

// HeartbeatSubject is confluo.v1.heartbeat.<host>, where a sidecar publishes Heartbeat messages.
func HeartbeatSubject(host string) (string, error) {
	if err := ValidateToken("host", host); err != nil {
		return "", err
	}
	return Root + "." + kindHeartbeat + "." + host, nil
}

// HeartbeatWildcard subscribes to every host's heartbeats.
const HeartbeatWildcard = Root + "." + kindHeartbeat + ".*"

// ParseCommandSubject splits confluo.v1.host.<host>.<command>. The command is returned even when
// it is not a known Command; check it with Command.Known.
func ParseCommandSubject(subject string) (host string, cmd Command, err error) {
	rest, ok := strings.CutPrefix(subject, Root+"."+kindHost+".")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not under %s.%s", ErrInvalidSubject, subject, Root, kindHost)
	}
	host, c, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(c, ".") {
		return "", "", fmt.Errorf("%w: %q is not %s.%s.<host>.<command>", ErrInvalidSubject, subject, Root, kindHost)
	}
	if err := ValidateToken("host", host); err != nil {
		return "", "", err
	}
	if err := ValidateToken("command", c); err != nil {
		return "", "", err
	}
	return host, Command(c), nil
}

// ParseAlertSubject splits confluo.v1.alerts.<host>.<trigger>.
func ParseAlertSubject(subject string) (host, trigger string, err error) {
	rest, ok := strings.CutPrefix(subject, Root+"."+kindAlerts+".")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not under %s.%s", ErrInvalidSubject, subject, Root, kindAlerts)
	}
	host, trigger, ok = strings.Cut(rest, ".")
	if !ok || strings.Contains(trigger, ".") {
		return "", "", fmt.Errorf("%w: %q is not %s.%s.<host>.<trigger>", ErrInvalidSubject, subject, Root, kindAlerts)
	}
	if err := ValidateToken("host", host); err != nil {
		return "", "", err
	}
	if err := ValidateToken("trigger", trigger); err != nil {
		return "", "", err
	}
	return host, trigger, nil
}
