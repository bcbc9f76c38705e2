// Command clickhouse is Sluice's ClickHouse destination (plugin ABI 1.1, capability sql,
// PostHog issue #38903): events land in a ClickHouse table of PostHog's event columns,
// created with a MergeTree or ReplacingMergeTree engine ordered by uuid when it does not
// exist. Each run bulk-loads its batches on the host (a native block insert per batch, no
// record enters the guest) into its stage table sluice_stage_<run>_g<generation>, then moves
// them with one INSERT ... SELECT that skips the rows an earlier attempt of the same run and
// generation already moved (the _sluice_load_id column), so an automatic retry never doubles
// a row. See docs/clickhouse-destination.md.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -tags sluice_abi_1_1 -o clickhouse.wasm ./plugins/clickhouse
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/plugins/internal/sqlexport"
	"github.com/sluicehq/sluice/sdk"
)

// Version of the plugin.
const Version = "0.1.0"

const driver = abi.SQLDriverClickHouse

// Engines for a new table.
const (
	EngineMergeTree          = "MergeTree"
	EngineReplacingMergeTree = "ReplacingMergeTree"
)

type config struct {
	TLS       string `json:"tls"`
	TableName string `json:"table_name"`
	Engine    string `json:"engine"`
}

func (c *config) check() error {
	if c.TableName == "" {
		c.TableName = "events"
	}
	if c.Engine == "" {
		c.Engine = EngineMergeTree
	}
	if err := sqlexport.CheckTable("table_name", c.TableName); err != nil {
		return err
	}
	if c.Engine != EngineMergeTree && c.Engine != EngineReplacingMergeTree {
		return sdk.FieldError("engine", "engine %q is not supported (want MergeTree or ReplacingMergeTree)", c.Engine)
	}
	return nil
}

// column is one column of the table layout: its run column (empty: none) and type.
type column struct {
	name, typ string
}

// layout is the table's columns for a server: DateTime64(6, 'UTC') (microseconds, like
// PostHog's own events table) from ClickHouse 20.1, DateTime('UTC') (seconds) before it.
func layout(dateTime64 bool) []column {
	ts := "DateTime('UTC')"
	if dateTime64 {
		ts = "DateTime64(6, 'UTC')"
	}
	return []column{
		{"uuid", "UUID"},
		{"event", "String"},
		{"distinct_id", "String"},
		{"person_id", "Nullable(UUID)"},
		{"team_id", "Int64"},
		{"properties", "String"},
		{"person_properties", "Nullable(String)"},
		{"elements_chain", "String"},
		{"timestamp", ts},
		{"created_at", "Nullable(" + ts + ")"},
		{"_inserted_at", ts},
	}
}

func columnDefs(cols []column) string {
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = sdk.QuoteIdent(driver, c.name) + " " + c.typ
	}
	return strings.Join(defs, ", ")
}

type destination struct {
	sqlexport.Base // Classify: the server's code decides
	cfg            config
	stage          string
	loadID         string
	cols           []abi.ColumnSelect
	staged         int64
	created        bool // the stage exists (Close drops it)
}

func (d *destination) Validate(c *sdk.Config) error {
	if err := c.Decode(&d.cfg); err != nil {
		return err
	}
	return d.cfg.check()
}

func (d *destination) q(name string) string { return sdk.QuoteIdent(driver, name) }

// dateTime64 asks the server's version: DateTime64 exists from ClickHouse 20.1.
func dateTime64() (bool, error) {
	r, err := sdk.SQLQuery("SELECT version()", 1)
	if err != nil {
		return false, err
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 1 {
		return false, fmt.Errorf("SELECT version() answered %d rows", len(r.Rows))
	}
	v, _ := r.Rows[0][0].(string)
	major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if err != nil {
		return false, fmt.Errorf("unexpected ClickHouse version %q", v)
	}
	return major >= 20, nil
}

// Open creates the target table if needed (and adds _sluice_load_id to a table made before
// it), then creates the run's empty stage table.
func (d *destination) Open(rc *sdk.RunContext) error {
	if err := rc.Config(&d.cfg); err != nil {
		return err
	}
	if err := d.cfg.check(); err != nil {
		return err
	}
	dt64, err := dateTime64()
	if err != nil {
		return err
	}
	cols := layout(dt64)
	target := d.q(d.cfg.TableName)
	engine := d.cfg.Engine + "()"
	if _, err := sdk.SQLExec("CREATE TABLE IF NOT EXISTS " + target + " (" + columnDefs(cols) + ", " +
		d.q(sqlexport.LoadIDColumn) + " String) ENGINE = " + engine +
		" PARTITION BY toYYYYMM(" + d.q("timestamp") + ") ORDER BY (" + d.q("uuid") + ")"); err != nil {
		return err
	}
	have, err := sqlexport.Columns(driver, d.cfg.TableName)
	if err != nil {
		return err
	}
	// A query of no rows answers no column names over some HTTP fronts (chDB's): then
	// assume the layout, and add the load id column unless it is there (DUPLICATE_COLUMN).
	known := len(have) > 0
	if !known {
		for _, c := range cols {
			have = append(have, c.name)
		}
	}
	if !known || !slices.Contains(have, sqlexport.LoadIDColumn) {
		_, err := sdk.SQLExec("ALTER TABLE " + target + " ADD COLUMN " + d.q(sqlexport.LoadIDColumn) + " String DEFAULT ''")
		var he *sdk.HostError
		if err != nil && !(errors.As(err, &he) && he.Err.Code == "clickhouse_15") {
			return err
		}
	}
	// The stage holds the run columns the target has, with the layout's types.
	var stageCols []column
	for _, c := range cols {
		if slices.Contains(have, c.name) {
			stageCols = append(stageCols, c)
		}
	}
	names := make([]string, len(stageCols))
	for i, c := range stageCols {
		names[i] = c.name
	}
	if d.cols, err = sqlexport.LoadColumns(rc.Columns, names); err != nil {
		return sdk.FieldError("table_name", "table %s: %v", d.cfg.TableName, err)
	}
	loaded := map[string]bool{}
	for _, c := range d.cols {
		loaded[c.As] = true
	}
	stageCols = slices.DeleteFunc(stageCols, func(c column) bool { return !loaded[c.name] })
	d.stage = sqlexport.StageName(rc.RunID, rc.Generation)
	d.loadID = sqlexport.LoadID(rc.RunID, rc.Generation)
	if _, err := sdk.SQLExec("DROP TABLE IF EXISTS " + d.q(d.stage)); err != nil {
		return err
	}
	if _, err := sdk.SQLExec("CREATE TABLE " + d.q(d.stage) + " (" + columnDefs(stageCols) + ") ENGINE = Log"); err != nil {
		return err
	}
	d.created = true
	sdk.Log(slog.LevelInfo, "clickhouse export starting", "table", d.cfg.TableName, "stage", d.stage,
		"engine", d.cfg.Engine, "attempt", rc.Attempt, "generation", rc.Generation)
	return nil
}

// WriteBatch loads the batch into the stage on the host: one native block insert.
func (d *destination) WriteBatch(b *sdk.Batch) error {
	if b.Records() == 0 {
		return nil
	}
	n, err := sdk.SQLLoad(b, d.stage, d.cols, 0, 0)
	if err != nil {
		return err
	}
	d.staged += n
	return nil
}

// Finish moves the stage's rows into the target, skipping those of this run and generation
// that an earlier attempt already moved, counts the run's rows in the target and drops the
// stage.
func (d *destination) Finish() (abi.Result, error) {
	names := sqlexport.Names(driver, d.cols)
	target, stage, id, uuid := d.q(d.cfg.TableName), d.q(d.stage), d.q(sqlexport.LoadIDColumn), d.q("uuid")
	if d.staged > 0 {
		_, err := sdk.SQLExec("INSERT INTO "+target+" ("+names+", "+id+") SELECT "+names+", ? FROM "+stage+
			" WHERE "+uuid+" NOT IN (SELECT "+uuid+" FROM "+target+" WHERE "+id+" = ? AND "+uuid+
			" IN (SELECT "+uuid+" FROM "+stage+"))", d.loadID, d.loadID)
		if err != nil {
			return abi.Result{}, err
		}
	}
	r, err := sdk.SQLQuery("SELECT count() FROM "+target+" WHERE "+id+" = ?", 1, d.loadID)
	if err != nil {
		return abi.Result{}, err
	}
	rows, err := sqlexport.Rows(r)
	if err != nil {
		return abi.Result{}, err
	}
	if rows != d.staged {
		sdk.Log(slog.LevelWarn, "the table holds a different number of this run's rows than were staged",
			"table", d.cfg.TableName, "rows", rows, "staged", d.staged)
	}
	if _, err := sdk.SQLExec("DROP TABLE IF EXISTS " + stage); err != nil {
		return abi.Result{}, err
	}
	d.created = false
	return abi.Result{Records: rows, Outputs: []abi.Output{{Kind: "table", Name: d.cfg.TableName, Records: rows}}}, nil
}

// Close drops the stage of a run that failed before Finish (best effort: the next attempt
// drops and recreates it anyway).
func (d *destination) Close() error {
	if d.created {
		d.created = false
		if _, err := sdk.SQLExec("DROP TABLE IF EXISTS " + d.q(d.stage)); err != nil {
			sdk.Log(slog.LevelWarn, "dropping the stage table failed", "stage", d.stage, "err", err.Error())
		}
	}
	return nil
}

// Test connects and reads the server's version and, if the table exists, its columns.
func (d *destination) Test(rc *sdk.RunContext) (abi.TestReport, error) {
	var t sdk.TestSteps
	err := rc.Config(&d.cfg)
	if err == nil {
		err = d.cfg.check()
	}
	if !t.Step("config", err, "config is valid") {
		return t.Report, nil
	}
	dt64, err := dateTime64()
	msg := "connected; timestamps as DateTime('UTC') (a server before 20.1)"
	if dt64 {
		msg = "connected; timestamps as DateTime64(6, 'UTC')"
	}
	if !t.Step("connection", err, msg) {
		return t.Report, nil
	}
	sqlexport.TableStep(&t, driver, d.cfg.TableName, "clickhouse_60") // UNKNOWN_TABLE
	return t.Report, nil
}

func manifest() abi.Manifest {
	return abi.Manifest{
		Name:         "clickhouse",
		Version:      Version,
		Description:  "ClickHouse table: PostHog's event columns, MergeTree or ReplacingMergeTree ordered by uuid",
		Capabilities: []string{abi.CapSQL},
		Config: slices.Concat(sqlexport.Connection(driver, 9000, "default"), []abi.Field{
			{Name: "protocol", Type: abi.TypeString, Default: "native", Enum: []string{"native", "http"}, Binding: "sql.protocol",
				Description: "native (port 9000, 9440 with TLS) or http (the HTTP interface, port 8123, 8443 with TLS)."},
			{Name: "tls", Type: abi.TypeString, Default: "disable", Enum: []string{"disable", "require", "verify-full"},
				Binding: "sql.tls",
				Description: "TLS (the secure native port, usually 9440): require encrypts without verifying " +
					"the certificate, verify-full checks it against the system roots and the host name."},
			{Name: "table_name", Type: abi.TypeString, Default: "events",
				Description: "Table to write to, in the database; created if it does not exist."},
			{Name: "engine", Type: abi.TypeString, Default: EngineMergeTree,
				Enum: []string{EngineMergeTree, EngineReplacingMergeTree},
				Description: "Engine of a new table, ordered by uuid: ReplacingMergeTree keeps one row per uuid " +
					"after merges (a deliberate re-run of an interval then replaces its rows instead of adding them)."},
		}),
	}
}

func init() {
	sdk.Register(manifest(), func() sdk.Destination { return &destination{} })
}

func main() {}
