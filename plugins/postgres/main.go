// Command postgres is Sluice's PostgreSQL destination (plugin ABI 1.1, capability sql),
// written only against the ABI and the SDK, as a third party would: PostHog's Postgres
// batch export fields (host, port, database, schema, table_name, user, password,
// has_self_signed_cert), PostHog's table and column types. Each run is bulk-loaded by the
// host (COPY, no record enters the guest) into an unlogged stage table
// sluice_stage_<run>, then moved into the target in one transaction that first deletes
// the target's rows with the same uuids: a retried run never doubles rows. The password
// never reaches the plugin: the host binds it to the connection. See docs/sql.md.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -tags sluice_abi_1_1 -o postgres.wasm ./plugins/postgres
package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

type config struct {
	Schema    string `json:"schema"`
	TableName string `json:"table_name"`
}

var tableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func (c config) check() error {
	if !tableRE.MatchString(c.TableName) {
		return sdk.FieldError("table_name", "must match [A-Za-z_][A-Za-z0-9_]{0,62}, got %q", c.TableName)
	}
	return nil
}

// tableColumns are PostHog's Postgres events table (postgres_batch_export.py).
const tableColumns = `"uuid" VARCHAR(200), "event" VARCHAR(200), "properties" JSONB, "elements" JSONB,
	"set" JSONB, "set_once" JSONB, "distinct_id" VARCHAR(200), "team_id" INTEGER, "ip" VARCHAR(200),
	"site_url" VARCHAR(200), "timestamp" TIMESTAMP WITH TIME ZONE`

// stageColumns receive the run's columns as the host loads them. properties stays text in
// the stage: the move parses it once (COPY into a jsonb column would parse it too, and
// cost a second pass: docs/performance.md).
const stageColumns = `"uuid" UUID, "event" TEXT, "distinct_id" TEXT, "team_id" BIGINT, "properties" TEXT,
	"elements_chain" TEXT, "timestamp" TIMESTAMPTZ`

var loadColumns = []abi.ColumnSelect{{Name: "uuid"}, {Name: "event"}, {Name: "distinct_id"}, {Name: "team_id"},
	{Name: "properties"}, {Name: "elements_chain"}, {Name: "timestamp"}}

// moveRows fills PostHog's columns from the stage: set and set_once from the properties'
// $set and $set_once, ip from $ip, elements the chain as a JSON string, site_url empty. The
// properties are parsed once per row (the LATERAL subquery with OFFSET 0 is not inlined).
const moveRows = `INSERT INTO %[1]s ("uuid", "event", "properties", "elements", "set", "set_once", "distinct_id",
	"team_id", "ip", "site_url", "timestamp")
	SELECT s."uuid"::text, s."event", l.p, to_jsonb(s."elements_chain"), l.p->'$set', l.p->'$set_once',
	s."distinct_id", s."team_id", l.p->>'$ip', '', s."timestamp"
	FROM %[2]s s, LATERAL (SELECT s."properties"::jsonb AS p OFFSET 0) l`

type destination struct {
	sdk.Base
	cfg     config
	target  string // quoted
	stage   string // unquoted, sluice_stage_<run>
	staged  bool
	loaded  int64
	records int64
}

func q(name string) string { return sdk.QuoteIdent(abi.SQLDriverPostgres, name) }

func (d *destination) Validate(c *sdk.Config) error {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	return cfg.check()
}

// stageName is sluice_stage_<run id>, lower-case letters, digits and underscores, at most
// 63 bytes.
func stageName(runID string) string {
	var b strings.Builder
	b.WriteString(abi.SQLStagePrefix)
	for _, r := range strings.ToLower(runID) {
		if b.Len() >= 63 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func (d *destination) Open(rc *sdk.RunContext) error {
	if err := rc.Config(&d.cfg); err != nil {
		return err
	}
	if err := d.cfg.check(); err != nil {
		return err
	}
	d.target = q(d.cfg.TableName)
	d.stage = stageName(rc.RunID)
	if _, err := sdk.SQLExec(fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s)", d.target, tableColumns)); err != nil {
		return err
	}
	// A stage left by a failed attempt of this run is dropped: this attempt reloads it all.
	if _, err := sdk.SQLExec("DROP TABLE IF EXISTS " + q(d.stage)); err != nil {
		return err
	}
	if _, err := sdk.SQLExec(fmt.Sprintf("CREATE UNLOGGED TABLE %s (%s)", q(d.stage), stageColumns)); err != nil {
		return err
	}
	d.staged = true
	return nil
}

// WriteBatch has the host copy the batch into the stage (COPY FROM STDIN).
func (d *destination) WriteBatch(b *sdk.Batch) error {
	n, err := sdk.SQLLoad(b, d.stage, loadColumns, 0, 0)
	d.loaded += n
	return err
}

// Finish moves the stage into the target in one transaction: the target's rows with the
// stage's uuids are deleted first, so a retried run (or a re-run of the interval) replaces
// its rows instead of doubling them.
func (d *destination) Finish() (abi.Result, error) {
	if err := sdk.SQLBegin(); err != nil {
		return abi.Result{}, err
	}
	if _, err := sdk.SQLExec(fmt.Sprintf(`DELETE FROM %s t USING %s s WHERE t."uuid" = s."uuid"::text`, d.target, q(d.stage))); err != nil {
		return abi.Result{}, err
	}
	n, err := sdk.SQLExec(fmt.Sprintf(moveRows, d.target, q(d.stage)))
	if err != nil {
		return abi.Result{}, err
	}
	if _, err := sdk.SQLExec("DROP TABLE " + q(d.stage)); err != nil {
		return abi.Result{}, err
	}
	if err := sdk.SQLCommit(); err != nil {
		return abi.Result{}, err
	}
	d.staged = false
	d.records = n
	return abi.Result{Records: n, Outputs: []abi.Output{{Kind: "table", Name: d.cfg.Schema + "." + d.cfg.TableName, Records: n}}}, nil
}

// Close drops the stage of a failed run (best effort: the next attempt drops it too).
func (d *destination) Close() error {
	if d.staged {
		_ = sdk.SQLRollback()
		_, _ = sdk.SQLExec("DROP TABLE IF EXISTS " + q(d.stage))
		d.staged = false
	}
	return nil
}

// Classify: the database's code decides (sdk.ClassifySQL: authentication, permissions,
// missing objects, bad SQL fail; connection losses, serialization failures, deadlocks,
// lock timeouts and shutdowns retry); otherwise the host's status.
func (d *destination) Classify(e *abi.Error, attempt int) abi.Classification {
	if c, ok := sdk.ClassifySQL(e); ok {
		return c
	}
	return sdk.DefaultClassify(e, attempt)
}

// Test connects and checks that the user may create the table in the schema; it writes
// nothing.
func (d *destination) Test(rc *sdk.RunContext) (abi.TestReport, error) {
	var t sdk.TestSteps
	var cfg config
	err := rc.Config(&cfg)
	if err == nil {
		err = cfg.check()
	}
	if !t.Step("config", err, "the config is valid") {
		return t.Report, nil
	}
	_, err = sdk.SQLQuery("SELECT 1", 1)
	if !t.Step("connect", err, "connected and authenticated") {
		return t.Report, nil
	}
	res, err := sdk.SQLQuery("SELECT has_schema_privilege(current_schema(), 'CREATE') AS can_create", 1)
	if err == nil && (len(res.Rows) != 1 || res.Rows[0][0] != true) {
		err = fmt.Errorf("the user may not create tables in schema %q", cfg.Schema)
	}
	t.Step("privileges", err, "the user may create tables in the schema")
	return t.Report, nil
}

func init() {
	sdk.Register(abi.Manifest{
		Name:         "postgres",
		Version:      "0.1.0",
		Description:  "PostgreSQL destination: each run is copied into a stage table by the host and moved into the target table in one transaction (PostHog's Postgres batch export)",
		Capabilities: []string{abi.CapSQL},
		Config: []abi.Field{
			{Name: "host", Type: abi.TypeString, Required: true, Binding: "sql.host", Description: "the PostgreSQL server's host name or address"},
			{Name: "port", Type: abi.TypeInteger, Default: float64(5432), Binding: "sql.port", Description: "the server's port"},
			{Name: "database", Type: abi.TypeString, Required: true, Binding: "sql.database", Description: "the database"},
			{Name: "schema", Type: abi.TypeString, Default: "public", Binding: "sql.schema", Description: "the schema of the table (the only one the plugin may touch)"},
			{Name: "table_name", Type: abi.TypeString, Required: true, Description: "the table events are exported to; created if missing"},
			{Name: "user", Type: abi.TypeString, Required: true, Binding: "sql.user", Description: "the user to connect as"},
			{Name: "password", Type: abi.TypeString, Secret: true, Binding: "sql.password", Description: "the user's password"},
			{Name: "has_self_signed_cert", Type: abi.TypeBoolean, Default: false, Binding: "sql.has_self_signed_cert",
				Description: "the server's TLS certificate is self-signed: encrypt without verifying it"},
			{Name: "driver", Type: abi.TypeString, Default: abi.SQLDriverPostgres, Enum: []string{abi.SQLDriverPostgres}, Binding: "sql.driver",
				Description: "the database protocol: postgres (fixed)"},
		},
	}, func() sdk.Destination { return &destination{} })
}

func main() {}
