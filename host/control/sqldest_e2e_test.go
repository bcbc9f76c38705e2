package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/sqlcap"
	"github.com/sluicehq/sluice/host/sqlcap/pgtest"
	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/internal/rscopy"
)

// sqldestEnv is the API host with the sql capability allowed on loopback (the test servers).
func sqldestEnv(t *testing.T) *env {
	return newEnv(t, "", func(c *control.Config) { c.SQL = sqlcap.Config{AllowLoopback: true} })
}

// sqldestProxy puts a fault proxy in front of a test server (host:port).
func sqldestProxy(t *testing.T, upstream string) (*faultproxy.TCP, string, int) {
	t.Helper()
	p, err := faultproxy.ListenTCP(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	host, port, _ := net.SplitHostPort(p.Addr())
	n, _ := strconv.Atoi(port)
	return p, host, n
}

// sqldestBackfill backfills the three hours before t0 and waits for the runs.
func (e *env) sqldestBackfill(id string, hours int) []run {
	e.t.Helper()
	end := t0.Truncate(time.Hour)
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills", map[string]any{
		"start_at": end.Add(-time.Duration(hours) * time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	return e.waitRuns(id, fmt.Sprintf("%d runs", hours), allFinished(hours))
}

// sqldestNoSecret fails the test if a secret appears in the export's API answers or in a
// run's log.
func (e *env) sqldestNoSecret(id, secret string) {
	e.t.Helper()
	check := func(what string, v any) {
		b, _ := json.Marshal(v)
		if strings.Contains(string(b), secret) {
			e.t.Fatalf("%s shows the secret: %s", what, b)
		}
	}
	check("the export", e.do("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK))
	check("the runs", e.do("GET", "/api/v1/batch_exports/"+id+"/runs?limit=500", nil, http.StatusOK))
	for _, r := range e.runs(id) {
		check("the run log", e.do("GET", "/api/v1/batch_exports/"+id+"/runs/"+r.ID+"/logs?limit=500", nil, http.StatusOK))
	}
}

// sqldestCompleted checks three Completed runs, exactly one of them retried, each reporting
// the source's count.
func (e *env) sqldestCompleted(rs []run) {
	e.t.Helper()
	retried := 0
	for _, r := range rs {
		if r.Status != "Completed" {
			e.t.Fatalf("run %+v", r)
		}
		if r.Attempt > 1 {
			retried++
		}
		if want := e.countIn(r.IntervalStart, r.IntervalEnd); r.RecordsCompleted != want {
			e.t.Errorf("run %s reports %d records, the source holds %d", r.IntervalStart, r.RecordsCompleted, want)
		}
	}
	if retried != 1 {
		e.t.Errorf("%d runs were retried, want 1 (the cut connection): %+v", retried, rs)
	}
}

// TestEndToEndClickHouseDestination drives the locked clickhouse plugin through the API
// against the real ClickHouse 18.16: a 3-hour backfill lands every source event exactly once
// although one run's move (INSERT ... SELECT) reaches the server and its answer is lost (the
// retry finds its rows and adds none); a wrong password fails the run at attempt 1 with
// ClickHouse's message; the password appears in no API answer or run log.
func TestEndToEndClickHouseDestination(t *testing.T) {
	dsn := os.Getenv("SLUICE_TEST_CLICKHOUSE_DSN")
	if dsn == "" {
		t.Skip("SLUICE_TEST_CLICKHOUSE_DSN is not set (.ci/services.sh starts ClickHouse)")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := ch.Open(&ch.Options{Addr: []string{u.Host}})
	if err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("sqldest_e2e_%d", time.Now().UnixNano())
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		conn.Close()
	})
	proxy, host, port := sqldestProxy(t, u.Host)
	proxy.CutAfter([]byte("NOT IN (SELECT"), 1, 300*time.Millisecond)
	e := sqldestEnv(t)
	config := func(password string) map[string]any {
		c := map[string]any{"host": host, "port": port, "database": db, "table_name": "events", "engine": "MergeTree"}
		if password != "" {
			c["password"] = password
		}
		return c
	}
	id := e.createExportTo("clickhouse", "ch", config(""))
	rs := e.sqldestBackfill(id, 3)
	e.sqldestCompleted(rs)
	rows, err := conn.Query(ctx, "SELECT toString(uuid) FROM "+db+".events")
	if err != nil {
		t.Fatal(err)
	}
	var uuids []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		uuids = append(uuids, s)
	}
	rows.Close()
	end := t0.Truncate(time.Hour)
	e.exactlyOnce(uuids, end.Add(-3*time.Hour), end)
	var stages uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name LIKE 'sluice_stage_%'", db).Scan(&stages); err != nil || stages != 0 {
		t.Errorf("%d stage tables left (%v)", stages, err)
	}

	const password = "ch-secret-pass-42"
	denied := e.createExportTo("clickhouse", "ch-denied", config(password))
	rs = e.sqldestBackfill(denied, 1)
	if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "password") {
		t.Fatalf("run %+v, want Failed at attempt 1 with ClickHouse's message", rs[0])
	}
	e.sqldestNoSecret(denied, password)
}

// TestEndToEndRedshiftInsert drives the locked redshift plugin in INSERT mode through the
// API against the real PostgreSQL 15 (Redshift speaks its protocol): a 3-hour backfill lands
// every source event exactly once although one run's COMMIT reaches the server and its
// answer is lost (the retry finds the committed rows and adds none, or redoes a rolled-back
// run); a wrong password (a private server with password authentication) fails the run at
// attempt 1 with the server's message; the password appears in no API answer or run log.
func TestEndToEndRedshiftInsert(t *testing.T) {
	conn, u, schema := pgtest.Schema(t, "sqldest_e2e", "e2e")
	ctx := context.Background()
	proxy, host, port := sqldestProxy(t, u.Host)
	proxy.CutAfter([]byte("commit\x00"), 1, 300*time.Millisecond)
	e := sqldestEnv(t)
	id := e.createExportTo("redshift", "rs", map[string]any{"host": host, "port": port, "database": u.Path[1:],
		"schema": schema, "user": u.User.Username(), "table_name": "events", "mode": "INSERT"})
	rs := e.sqldestBackfill(id, 3)
	e.sqldestCompleted(rs)
	end := t0.Truncate(time.Hour)
	e.exactlyOnce(pgUUIDs(t, conn, schema+".events"), end.Add(-3*time.Hour), end)
	var stages int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'sluice_stage_%'", schema).Scan(&stages); err != nil || stages != 0 {
		t.Errorf("%d stage tables left (%v)", stages, err)
	}

	srv := pgtest.Start(t)
	const password = "rs-secret-pass-42"
	denied := e.createExportTo("redshift", "rs-denied", map[string]any{"host": srv.Host, "port": srv.Port,
		"database": "postgres", "user": "postgres", "password": password, "table_name": "events"})
	rs = e.sqldestBackfill(denied, 1)
	if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "password authentication failed") {
		t.Fatalf("run %+v, want Failed at attempt 1 with the server's message", rs[0])
	}
	e.sqldestNoSecret(denied, password)
}

// TestEndToEndRedshiftCopy drives the redshift plugin in COPY mode through the API: the host
// writes each run's events as a gzipped JSON Lines file and a Redshift manifest into
// versitygw (the object capability), and the plugin's COPY ... FROM 's3://.../manifest.json'
// goes through the sql capability, which substitutes the export's keys for the statement's
// {secret:...} names. PostgreSQL cannot run Redshift's COPY: the rscopy proxy in front of
// the real PostgreSQL 15 performs it (reading the manifest and files from versitygw with the
// statement's keys) and records it. One run's COMMIT is cut (a fault proxy in front): the
// retry re-stages the same keys and adds no row. Checked: the files, the statements, every
// event once in the table, the keys in no API answer or run log. An IAM role export: the
// role's ARN in the statement, no keys.
func TestEndToEndRedshiftCopy(t *testing.T) {
	endpoint := os.Getenv("SLUICE_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("SLUICE_TEST_S3_ENDPOINT is not set (.ci/services.sh starts versitygw)")
	}
	access, secret := os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), os.Getenv("SLUICE_TEST_S3_SECRET_KEY")
	conn, u, schema := pgtest.Schema(t, "sqldest_e2e", "e2e")
	ctx := context.Background()
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, "")})
	bucket := fmt.Sprintf("sqldest-rs-%d", time.Now().UnixNano())
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	rsp, err := rscopy.Listen(u.Host, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rsp.Close() })
	const role = "arn:aws:iam::123456789012:role/sluice-copy"
	rsp.Roles[role] = [2]string{access, secret}
	proxy, host, port := sqldestProxy(t, rsp.Addr())
	proxy.CutAfter([]byte("commit\x00"), 1, 300*time.Millisecond)
	e := sqldestEnv(t)
	config := func(table, prefix string) map[string]any {
		return map[string]any{"host": host, "port": port, "database": u.Path[1:], "schema": schema, "user": u.User.Username(),
			"table_name": table, "mode": "COPY", "properties_data_type": "varchar",
			"copy_bucket_name": bucket, "copy_region": "us-east-1", "copy_prefix": prefix, "copy_endpoint_url": endpoint,
			"bucket_aws_access_key_id": access, "bucket_aws_secret_access_key": secret}
	}
	keys := config("events", "redshift/stage")
	keys["copy_aws_access_key_id"], keys["copy_aws_secret_access_key"] = access, secret
	id := e.createExportTo("redshift", "rs-copy", keys)
	rs := e.sqldestBackfill(id, 3)
	e.sqldestCompleted(rs)
	end := t0.Truncate(time.Hour)
	e.exactlyOnce(pgUUIDs(t, conn, schema+".events"), end.Add(-3*time.Hour), end)
	e.sqldestNoSecret(id, secret)

	// The statements: one COPY per attempt (4: one run was retried), keys substituted.
	stmts := rsp.Statements()
	if len(stmts) != 4 {
		t.Fatalf("%d COPY statements, want 4: %q", len(stmts), stmts)
	}
	for _, s := range stmts {
		for _, want := range []string{"FROM 's3://" + bucket + "/redshift/stage/", "/manifest.json' ACCESS_KEY_ID '" + access +
			"' SECRET_ACCESS_KEY '" + secret + "' MANIFEST FORMAT AS JSON 'auto' GZIP TIMEFORMAT 'auto' REGION 'us-east-1'"} {
			if !strings.Contains(s, want) {
				t.Errorf("statement %q lacks %q", s, want)
			}
		}
		if !strings.HasPrefix(s, `COPY "sluice_stage_`) {
			t.Errorf("statement %q does not load a stage table", s)
		}
	}
	// The files: per run a manifest naming its one gzipped JSON Lines file; every event once.
	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	var staged []string
	manifests := 0
	for _, o := range list.Contents {
		if !strings.HasSuffix(*o.Key, "/manifest.json") {
			continue
		}
		manifests++
		body := s3Get(t, client, bucket, *o.Key)
		var m struct {
			Entries []struct {
				URL       string `json:"url"`
				Mandatory bool   `json:"mandatory"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(body, &m); err != nil || len(m.Entries) != 1 || !m.Entries[0].Mandatory {
			t.Fatalf("manifest %s: %s (%v)", *o.Key, body, err)
		}
		file := strings.TrimPrefix(m.Entries[0].URL, "s3://"+bucket+"/")
		if !strings.HasPrefix(file, strings.TrimSuffix(*o.Key, "manifest.json")) || !strings.HasSuffix(file, ".jsonl.gz") {
			t.Fatalf("manifest %s names %s", *o.Key, m.Entries[0].URL)
		}
		staged = append(staged, decodeUUIDs(t, "JSONLines", s3Get(t, client, bucket, file))...)
	}
	if manifests != 3 || len(list.Contents) != 6 {
		t.Errorf("%d manifests, %d objects, want 3 and 6", manifests, len(list.Contents))
	}
	e.exactlyOnce(staged, end.Add(-3*time.Hour), end)

	// An IAM role: the statement names it and no key.
	before := len(rsp.Statements())
	roleID := e.createExportTo("redshift", "rs-copy-role", func() map[string]any {
		c := config("by_role", "redshift/role")
		c["copy_iam_role"] = role
		return c
	}())
	rs = e.sqldestBackfill(roleID, 1)
	if rs[0].Status != "Completed" || rs[0].RecordsCompleted != e.countIn(rs[0].IntervalStart, rs[0].IntervalEnd) {
		t.Fatalf("run %+v", rs[0])
	}
	stmts = rsp.Statements()[before:]
	if len(stmts) != 1 || !strings.Contains(stmts[0], "IAM_ROLE '"+role+"' MANIFEST") || strings.Contains(stmts[0], access) {
		t.Errorf("IAM role statements %q", stmts)
	}
}

func s3Get(t *testing.T, client *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pgUUIDs reads a table's uuid column.
func pgUUIDs(t *testing.T, conn *pgx.Conn, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT uuid FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	uuids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return uuids
}
