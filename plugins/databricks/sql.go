package main

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/abi"
)

// column is one column of the target table: its name (also the Parquet column's, the event
// column it comes from) and Databricks types.
type column struct {
	name    string
	typ     string // in the target table
	json    bool   // properties-like: VARIANT when use_variant_type, else STRING
	fromRun bool   // false: computed in the MERGE (databricks_ingested_timestamp)
	uuid    bool   // a uuid column of the run, encoded as text (cast "string")
}

// columns are PostHog's events columns for Databricks (uuid as text, JSON as VARIANT or
// STRING), plus the event schema's person and element columns, and the time the row
// landed.
var columns = []column{
	{name: "uuid", typ: "STRING", fromRun: true, uuid: true},
	{name: "event", typ: "STRING", fromRun: true},
	{name: "distinct_id", typ: "STRING", fromRun: true},
	{name: "person_id", typ: "STRING", fromRun: true, uuid: true},
	{name: "team_id", typ: "BIGINT", fromRun: true},
	{name: "properties", json: true, fromRun: true},
	{name: "person_properties", json: true, fromRun: true},
	{name: "elements_chain", typ: "STRING", fromRun: true},
	{name: "timestamp", typ: "TIMESTAMP", fromRun: true},
	{name: "created_at", typ: "TIMESTAMP", fromRun: true},
	{name: "inserted_at", typ: "TIMESTAMP", fromRun: true},
	{name: "databricks_ingested_timestamp", typ: "TIMESTAMP"},
}

// fileColumns selects the event columns the Parquet files carry, in order: uuids as text,
// because Databricks' (Spark's) Parquet reader refuses the UUID logical type
// ([PARQUET_TYPE_ILLEGAL], apache/spark#55684).
func fileColumns() []abi.ColumnSelect {
	var out []abi.ColumnSelect
	for _, c := range columns {
		if !c.fromRun {
			continue
		}
		sel := abi.ColumnSelect{Name: c.name}
		if c.uuid {
			sel.Cast = "string"
		}
		out = append(out, sel)
	}
	return out
}

// quote quotes an identifier with backticks (config.check refuses backticks in names).
func quote(parts ...string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = "`" + strings.ReplaceAll(p, "`", "``") + "`"
	}
	return strings.Join(q, ".")
}

// literal is a SQL string literal.
func literal(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// statements builds the SQL of one run.
type statements struct {
	cfg   config
	stage string // stage table name (in the same schema)
	dir   string // the run's volume directory, /Volumes/<catalog>/<schema>/<volume>/...
}

var nonWord = regexp.MustCompile(`[^a-z0-9_]+`)

// newStatements names the run's stage table and volume directory after the run and its
// attempt: every attempt starts clean, and a stage left behind by a killed attempt is never
// reused.
func newStatements(cfg config, runID string, attempt int) statements {
	id := nonWord.ReplaceAllString(strings.ToLower(runID), "_")
	if len(id) > 64 {
		id = id[:64]
	}
	suffix := fmt.Sprintf("_sluice_stage_%s_a%d", id, attempt)
	table := cfg.TableName
	if len(table)+len(suffix) > 255 {
		table = table[:255-len(suffix)]
	}
	return statements{cfg: cfg, stage: table + suffix,
		dir: "/Volumes/" + cfg.Catalog + "/" + cfg.Schema + "/" + cfg.Volume + "/sluice/" + cfg.TableName + "/" + id + "-a" + strconv.Itoa(attempt)}
}

func (s statements) target() string        { return quote(s.cfg.Catalog, s.cfg.Schema, s.cfg.TableName) }
func (s statements) stageTable() string    { return quote(s.cfg.Catalog, s.cfg.Schema, s.stage) }
func (s statements) filePath(n int) string { return fmt.Sprintf("%s/part-%05d.parquet", s.dir, n) }

func (s statements) createVolume() string {
	return "CREATE VOLUME IF NOT EXISTS " + quote(s.cfg.Catalog, s.cfg.Schema, s.cfg.Volume)
}

func (s statements) jsonType() string {
	if s.cfg.UseVariantType {
		return "VARIANT"
	}
	return "STRING"
}

func (s statements) createTarget() string {
	defs := make([]string, len(columns))
	for i, c := range columns {
		typ := c.typ
		if c.json {
			typ = s.jsonType()
		}
		defs[i] = quote(c.name) + " " + typ
	}
	return "CREATE TABLE IF NOT EXISTS " + s.target() + " (" + strings.Join(defs, ", ") + ")"
}

// createStage: the stage holds the files' columns as loaded (JSON as STRING text).
func (s statements) createStage() string {
	var defs []string
	for _, c := range columns {
		if !c.fromRun {
			continue
		}
		typ := c.typ
		if c.json {
			typ = "STRING"
		}
		defs = append(defs, quote(c.name)+" "+typ)
	}
	return "CREATE TABLE " + s.stageTable() + " (" + strings.Join(defs, ", ") + ")"
}

func (s statements) copyInto() string {
	return "COPY INTO " + s.stageTable() + " FROM " + literal(s.dir+"/") + " FILEFORMAT = PARQUET"
}

// merge inserts the stage's rows whose uuid the target does not hold yet: a retried run, or
// a re-run of the interval, never doubles a row. With use_automatic_schema_evolution the
// MERGE adds the columns the target lacks (INSERT *); without it, the target must have
// every column.
func (s statements) merge() string {
	sel := make([]string, len(columns))
	names := make([]string, len(columns))
	vals := make([]string, len(columns))
	for i, c := range columns {
		q := quote(c.name)
		switch {
		case !c.fromRun:
			sel[i] = "current_timestamp() AS " + q
		case c.json && s.cfg.UseVariantType:
			sel[i] = "PARSE_JSON(" + q + ") AS " + q
		default:
			sel[i] = q
		}
		names[i], vals[i] = q, "s."+q
	}
	var b strings.Builder
	b.WriteString("MERGE ")
	if s.cfg.SchemaEvolution {
		b.WriteString("WITH SCHEMA EVOLUTION ")
	}
	b.WriteString("INTO " + s.target() + " AS t USING (SELECT " + strings.Join(sel, ", ") + " FROM " + s.stageTable() +
		") AS s ON t.`uuid` = s.`uuid` WHEN NOT MATCHED THEN INSERT ")
	if s.cfg.SchemaEvolution {
		b.WriteString("*")
	} else {
		b.WriteString("(" + strings.Join(names, ", ") + ") VALUES (" + strings.Join(vals, ", ") + ")")
	}
	return b.String()
}

func (s statements) dropStage() string { return "DROP TABLE IF EXISTS " + s.stageTable() }

// filesURL is the Files API URL of a volume path (each segment escaped).
func filesURL(kind, path string) string {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range segs {
		segs[i] = url.PathEscape(p)
	}
	return "/api/2.0/fs/" + kind + "/" + strings.Join(segs, "/")
}
