package sqlcap

import (
	"strings"
	"testing"
)

// TestProtocolBinding: sql.protocol picks clickhouse's HTTP interface (default port 8123);
// it is clickhouse-only, and part of the pool's key.
func TestProtocolBinding(t *testing.T) {
	base := func(driver, protocol string) map[string]string {
		return map[string]string{"driver": driver, "host": "127.0.0.1", "database": "d", "user": "u", "protocol": protocol}
	}
	s, err := parseSettings(base("clickhouse", "http"))
	if err != nil || s.protocol != "http" || s.port != 8123 {
		t.Fatalf("%+v %v", s, err)
	}
	n, err := parseSettings(base("clickhouse", ""))
	if err != nil || n.protocol != "native" || n.port != 9000 || n.key() == s.key() {
		t.Fatalf("%+v %v", n, err)
	}
	for _, c := range []struct{ driver, protocol, msg string }{
		{"clickhouse", "grpc", `sql.protocol "grpc" is not supported`},
		{"postgres", "http", "sql.protocol is clickhouse-only"},
	} {
		if _, err := parseSettings(base(c.driver, c.protocol)); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %s: %v", c.driver, c.protocol, err)
		}
	}
}
