package mirrorspec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ovn-org/libovsdb/ovsdb"
)

// FormatOps renders operations one per line in a stable order-independent
// form (sets and maps sorted, named UUIDs as @name), for logs and golden files.
func FormatOps(ops []ovsdb.Operation) string {
	var b strings.Builder
	for _, op := range ops {
		b.WriteString(FormatOp(op))
		b.WriteByte('\n')
	}
	return b.String()
}

// FormatOp renders one operation on one line.
func FormatOp(op ovsdb.Operation) string {
	var b strings.Builder
	b.WriteString(op.Op)
	b.WriteByte(' ')
	b.WriteString(op.Table)
	if op.UUIDName != "" {
		b.WriteString(" as @" + op.UUIDName)
	}
	for i, c := range op.Where {
		if i == 0 {
			b.WriteString(" where ")
		} else {
			b.WriteString(" and ")
		}
		fmt.Fprintf(&b, "%s %s %s", c.Column, c.Function, formatValue(c.Value))
	}
	for _, m := range op.Mutations {
		fmt.Fprintf(&b, " %s %s %s", m.Column, m.Mutator, formatValue(m.Value))
	}
	if len(op.Row) > 0 {
		cols := make([]string, 0, len(op.Row))
		for k := range op.Row {
			cols = append(cols, k)
		}
		slices.Sort(cols)
		b.WriteString(" {")
		for i, k := range cols {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k + "=" + formatValue(op.Row[k]))
		}
		b.WriteString("}")
	}
	return b.String()
}

func formatValue(v any) string {
	switch v := v.(type) {
	case ovsdb.UUID:
		if ovsdb.IsNamedUUID(v.GoUUID) {
			return "@" + v.GoUUID
		}
		return v.GoUUID
	case ovsdb.OvsSet:
		elems := make([]string, 0, len(v.GoSet))
		for _, e := range v.GoSet {
			elems = append(elems, formatValue(e))
		}
		slices.Sort(elems)
		return "[" + strings.Join(elems, " ") + "]"
	case ovsdb.OvsMap:
		pairs := make([]string, 0, len(v.GoMap))
		for k, e := range v.GoMap {
			pairs = append(pairs, formatValue(k)+":"+formatValue(e))
		}
		slices.Sort(pairs)
		return "{" + strings.Join(pairs, " ") + "}"
	case string:
		return fmt.Sprintf("%q", v)
	default:
		return fmt.Sprint(v)
	}
}
