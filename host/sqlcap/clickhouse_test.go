package sqlcap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// chParams binds the shared ClickHouse (SLUICE_TEST_CLICKHOUSE_DSN, native protocol) to a
// fresh database sqlcap_<n>, dropped when the test ends.
func chParams(t *testing.T) map[string]string {
	t.Helper()
	raw := os.Getenv("SLUICE_TEST_CLICKHOUSE_DSN")
	if raw == "" {
		t.Skip("SLUICE_TEST_CLICKHOUSE_DSN is not set (.ci/services.sh starts the server)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	user := u.User.Username()
	if user == "" {
		user = "default"
	}
	admin := map[string]string{"driver": "clickhouse", "host": u.Hostname(), "port": u.Port(), "database": "default", "user": user}
	if pw, ok := u.User.Password(); ok {
		admin["password"] = pw
	}
	ps := testPools(t)
	a := bind(t, ps, admin)
	db := fmt.Sprintf("sqlcap_%d", time.Now().UnixNano())
	// CREATE DATABASE is outside the policy: the test makes it with the driver directly.
	sess, err := a.session()
	if err != nil {
		t.Fatal(err)
	}
	chs := sess.(*chSession)
	if err := chs.c.conn.Exec(context.Background(), "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chs.c.conn.Exec(context.Background(), "DROP DATABASE "+db) })
	p := map[string]string{}
	for k, v := range admin {
		p[k] = v
	}
	p["database"] = db
	return p
}

func TestClickHouseStatementsAndLoad(t *testing.T) {
	params := chParams(t)
	b := bind(t, testPools(t), params)
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: `CREATE TABLE IF NOT EXISTS events (uuid UUID, event String, person_id Nullable(UUID),
		team_id Int32, props String, ts DateTime('UTC'), did_text String) ENGINE = ReplacingMergeTree ORDER BY uuid`}, nil, nil)
	var ld abi.SQLLoadResult
	mustCall(t, b, abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: loadCols}, eventBatch(3), &ld)
	mustCall(t, b, abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: loadCols, Start: 2}, eventBatch(3), &ld)
	if ld.Rows != 1 {
		t.Fatalf("load from 2: %d rows", ld.Rows)
	}
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: "OPTIMIZE TABLE events FINAL"}, nil, nil)
	var q abi.SQLQueryResult
	mustCall(t, b, abi.SQLRequest{Op: "query", SQL: "SELECT uuid, event, person_id, team_id, props, ts FROM events WHERE event != ? ORDER BY ts",
		Args: []any{"event_0"}}, nil, &q)
	want := `{"columns":["uuid","event","person_id","team_id","props","ts"],"rows":[` +
		`["018f0000-0000-7000-8000-000000000002","event_1","018f0000-0000-7000-8000-000000000001",7,"{\"$ip\":\"10.0.0.1\",\"n\":1}","2026-12-03T11:00:00Z"],` +
		`["018f0000-0000-7000-8000-000000000003","event_2","018f0000-0000-7000-8000-000000000001",7,"{\"$ip\":\"10.0.0.2\",\"n\":2}","2026-12-03T12:00:00Z"]],"truncated":false}`
	if got, _ := json.Marshal(q); string(got) != want {
		t.Fatalf("query:\n got %s\nwant %s", got, want)
	}
	capErr(t, call(t, b, abi.SQLRequest{Op: "query", SQL: "SELECT * FROM system.users"}, nil, nil), abi.StatusDenied, "policy", `database "system" is outside the bound database`)
	capErr(t, call(t, b, abi.SQLRequest{Op: "begin"}, nil, nil), abi.StatusUnimplemented, "", "clickhouse has no transactions")
	capErr(t, call(t, b, abi.SQLRequest{Op: "query", SQL: "SELECT * FROM missing"}, nil, nil), abi.StatusFatalIO, "clickhouse_60", "missing")
	capErr(t, call(t, b, abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: []abi.ColumnSelect{{Name: "properties", As: "team_id"}}}, eventBatch(1), nil),
		abi.StatusBadArgument, "", "json cannot be loaded into a Int32 column")

	bad := map[string]string{}
	for k, v := range params {
		bad[k] = v
	}
	bad["password"] = "not-the-password"
	bb := bind(t, testPools(t), bad)
	err := call(t, bb, abi.SQLRequest{Op: "query", SQL: "SELECT 1"}, nil, nil)
	capErr(t, err, abi.StatusFatalIO, "", "")
	if retry, known := abi.SQLCodeRetryable(errCode(err)); retry || !known {
		t.Fatalf("wrong password: code %q not a known fatal code: %v", errCode(err), err)
	}
}

func errCode(err error) string {
	var ce *runtime.CapabilityError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}
