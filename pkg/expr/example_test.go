package expr_test

import (
	"fmt"

	"github.com/confluo-go/confluo/pkg/expr"
	"github.com/confluo-go/confluo/pkg/schema"
)

func ExampleCompile() {
	s, _ := schema.Parse("{src_ip: IPV4, dst_port: USHORT, ip_proto: UCHAR, rtt: FLOAT}")
	f, err := expr.Compile("src_ip in 10.0.0.0/8 and ip_proto = tcp and (dst_port = 80 or dst_port = 443)", s)
	if err != nil {
		panic(err)
	}
	fmt.Println(f)

	rec, _ := s.Encode("10.1.2.3", 443, 6, 0.25)
	fmt.Println(f.Match(rec))

	_, err = expr.Compile("rtt > 0.1 && dst_port > 70000", s)
	fmt.Println(err)
	// Output:
	// src_ip in 10.0.0.0/8 && ip_proto == 6 && (dst_port == 80 || dst_port == 443)
	// true
	// expr: 1:25: int literal 70000 does not fit column "dst_port" (USHORT): out of range 0..65535
}

func ExampleColumnKeyRanges() {
	s, _ := schema.Parse("{port: USHORT, len: UINT}")
	f, _ := expr.Compile("(port >= 1000 && port < 2000 && len > 64) || port == 22", s)
	port, _ := s.Column("port")
	ranges, ok := expr.ColumnKeyRanges(f.Root, port)
	fmt.Println(ranges, ok)
	// Output:
	// [[0016, 0016] [03e8, 07cf]] true
}

func ExampleParseTrigger() {
	t, err := expr.ParseTrigger("syn_count >= 10")
	if err != nil {
		panic(err)
	}
	fmt.Println(t.Aggregate, t.Op, t.Threshold, t.Eval(12))

	a, _ := expr.ParseAggregate("sum(len)")
	fmt.Println(a.Func, a.ColumnName)
	// Output:
	// syn_count >= 10 true
	// SUM len
}
