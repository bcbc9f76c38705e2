package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// Stage file formats, as the config names them.
const (
	FormatParquet   = "Parquet"
	FormatJSONLines = "JSONLines"
)

var (
	projectRE = regexp.MustCompile(`^[a-z][a-z0-9:.-]{3,127}$`)
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9_]{1,900}$`)
	unsafeRE  = regexp.MustCompile(`[^A-Za-z0-9_-]`)
	tableRE   = regexp.MustCompile(`[^A-Za-z0-9_]`)
)

// maxTableID is BigQuery's limit on a table id (bytes).
const maxTableID = 1024

type config struct {
	ProjectID   string `json:"project_id"`
	DatasetID   string `json:"dataset_id"`
	TableID     string `json:"table_id"`
	Location    string `json:"location"`
	UseJSONType bool   `json:"use_json_type"`
	FileFormat  string `json:"file_format"`
}

func (c *config) check() error {
	if c.TableID == "" {
		c.TableID = "events"
	}
	if c.FileFormat == "" {
		c.FileFormat = FormatParquet
	}
	if !projectRE.MatchString(c.ProjectID) {
		return sdk.FieldError("project_id", "invalid project id %q", c.ProjectID)
	}
	if !nameRE.MatchString(c.DatasetID) {
		return sdk.FieldError("dataset_id", "invalid dataset id %q: letters, digits and underscores", c.DatasetID)
	}
	if !nameRE.MatchString(c.TableID) {
		return sdk.FieldError("table_id", "invalid table id %q: letters, digits and underscores", c.TableID)
	}
	if c.FileFormat != FormatParquet && c.FileFormat != FormatJSONLines {
		return sdk.FieldError("file_format", "unsupported file_format %q (want Parquet or JSONLines)", c.FileFormat)
	}
	return nil
}

// column is a BigQuery column as the capability's ensure_table and load options take it.
type column struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Mode string `json:"mode,omitempty"`
}

// finalSchema is PostHog's BigQuery events table.
func finalSchema(useJSON bool) []column {
	jt := "STRING"
	if useJSON {
		jt = "JSON"
	}
	return []column{{"uuid", "STRING", ""}, {"event", "STRING", ""}, {"properties", jt, ""},
		{"elements", "STRING", ""}, {"set", jt, ""}, {"set_once", jt, ""}, {"distinct_id", "STRING", ""},
		{"team_id", "INT64", ""}, {"ip", "STRING", ""}, {"site_url", "STRING", ""},
		{"timestamp", "TIMESTAMP", ""}, {"bq_ingested_timestamp", "TIMESTAMP", ""}}
}

// stageColumns are the run columns loaded into the stage table, in order.
var stageColumns = []string{"uuid", "event", "distinct_id", "team_id", "properties", "elements_chain", "timestamp"}

// stageSchema is the stage table for a load format: Parquet carries uuid as 16 bytes
// (BYTES) and properties as text; JSON Lines carries uuid as text and properties as an
// inline object (JSON).
func stageSchema(parquet bool) []column {
	uuidT, propsT := "STRING", "JSON"
	if parquet {
		uuidT, propsT = "BYTES", "STRING"
	}
	return []column{{"uuid", uuidT, ""}, {"event", "STRING", ""}, {"distinct_id", "STRING", ""},
		{"team_id", "INT64", ""}, {"properties", propsT, ""}, {"elements_chain", "STRING", ""},
		{"timestamp", "TIMESTAMP", ""}}
}

// insertSQL is the one statement copying the stage into the final table, deriving the
// PostHog columns in SQL: set/set_once from properties.$set/$set_once, ip from
// properties.$ip, elements as the JSON string of elements_chain, site_url empty (as
// PostHog), bq_ingested_timestamp the statement's time.
func insertSQL(cfg *config, stage string, parquet bool) string {
	q := func(t string) string { return "`" + cfg.ProjectID + "." + cfg.DatasetID + "." + t + "`" }
	uuid := "uuid"
	propsText, propsJSON := "TO_JSON_STRING(properties)", "properties"
	if parquet {
		uuid = `REGEXP_REPLACE(TO_HEX(uuid), r'^(.{8})(.{4})(.{4})(.{4})(.{12})$', r'\1-\2-\3-\4-\5')`
		propsText, propsJSON = "properties", "PARSE_JSON(properties)"
	}
	props := propsText
	if cfg.UseJSONType {
		props = propsJSON
	}
	path := func(k string) string { return `'$."` + k + `"'` }
	exprs := []string{
		uuid + " AS uuid",
		"event",
		props + " AS properties",
		"TO_JSON_STRING(elements_chain) AS elements",
		"JSON_QUERY(" + props + ", " + path("$set") + ") AS set",
		"JSON_QUERY(" + props + ", " + path("$set_once") + ") AS set_once",
		"distinct_id",
		"team_id",
		"JSON_VALUE(" + propsText + ", " + path("$ip") + ") AS ip",
		"'' AS site_url",
		"timestamp",
		"CURRENT_TIMESTAMP() AS bq_ingested_timestamp",
	}
	var cols []string
	for _, c := range finalSchema(false) {
		cols = append(cols, c.Name)
	}
	return "INSERT INTO " + q(cfg.TableID) + " (" + strings.Join(cols, ", ") + ") SELECT " +
		strings.Join(exprs, ", ") + " FROM " + q(stage)
}

type destination struct {
	sdk.Base
	cfg      config
	runID    string
	attempt  int
	gen      int
	parquet  bool
	useStage bool
	stage    string
	jobBase  string // sluice_{run id}[_g{generation}]: per run and generation, not per attempt
	up       *sdk.Upload
	enc      *sdk.Encoder
	records  int64
	loaded   bool // the stage table holds this attempt's load
	dropped  bool
	now      func() time.Time
	line     []byte
	badProps int64  // events whose properties are not valid JSON (direct load)
	badFirst string // the first such event's uuid
}

// jobBase is the prefix of a run's job ids: the insert's and the direct load's ids are
// per (run, generation), so an automatic retry (same generation) finds the job that
// already succeeded while a deliberate re-run (a higher generation) loads again.
// Generation 0 keeps the ids of hosts before generations (sluice_{run id}).
func jobBase(runID string, gen int) string {
	b := "sluice_" + unsafeRE.ReplaceAllString(runID, "_")
	if gen > 0 {
		b += fmt.Sprintf("_g%d", gen)
	}
	return b
}

// stageName is the stage table of one attempt: unique per run (so per export: two exports
// into one table never share a stage), generation and attempt (WRITE_TRUNCATE never
// truncates another attempt's stage). A name over BigQuery's limit is shortened with a
// hash of the full name.
func stageName(table, runID string, gen, attempt int) string {
	name := fmt.Sprintf("stage_%s_%s_g%d_%d", table, tableRE.ReplaceAllString(runID, "_"), gen, attempt)
	if len(name) <= maxTableID {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxTableID-33] + "_" + hex.EncodeToString(sum[:16])
}

func (d *destination) Validate(c *sdk.Config) error {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return err
	}
	for _, f := range []string{"private_key", "client_email"} {
		if !c.SecretSet(f) {
			return sdk.FieldError(f, "%s is required (service account key)", f)
		}
	}
	return nil
}

// call runs one bigquery capability operation.
func call(req map[string]any, resp any) error { return sdk.Call(abi.CapBigQuery, req, resp) }

func (d *destination) Open(rc *sdk.RunContext) error {
	if err := rc.Config(&d.cfg); err != nil {
		return err
	}
	if err := d.cfg.check(); err != nil {
		return err
	}
	for _, name := range stageColumns {
		if !slices.ContainsFunc(rc.Columns, func(c abi.Column) bool { return c.Name == name }) {
			return fmt.Errorf("this export's schema lacks column %q, which the BigQuery events table needs", name)
		}
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.runID, d.attempt, d.gen = rc.RunID, max(rc.Attempt, 1), max(rc.Generation, 0)
	d.parquet = d.cfg.FileFormat == FormatParquet
	d.jobBase = jobBase(rc.RunID, d.gen)
	d.stage = stageName(d.cfg.TableID, rc.RunID, d.gen, d.attempt)

	var et struct {
		Created      bool     `json:"created"`
		AddedColumns []string `json:"added_columns"`
	}
	err := call(map[string]any{"op": "ensure_table", "table": d.cfg.TableID, "schema": finalSchema(d.cfg.UseJSONType),
		"partition_field": "timestamp", "add_missing_columns": true}, &et)
	if err != nil {
		return err
	}
	var perm struct {
		Allowed bool   `json:"allowed"`
		Reason  string `json:"reason"`
	}
	if err := call(map[string]any{"op": "check_query_permission", "table": d.cfg.TableID}, &perm); err != nil {
		if !sdk.IsStatus(err, abi.StatusUnimplemented) {
			return err
		}
		perm.Allowed = true // an older host: assume the usual stage flow
	}
	d.useStage = perm.Allowed
	if !d.useStage {
		sdk.Log(slog.LevelWarn, "no query permission: loading straight into the final table", "reason", perm.Reason)
	}
	sdk.Log(slog.LevelInfo, "bigquery export starting", "table", d.cfg.DatasetID+"."+d.cfg.TableID,
		"created", et.Created, "stage", d.useStage, "format", d.cfg.FileFormat, "attempt", d.attempt, "generation", d.gen)
	return nil
}

func (d *destination) openUpload() error {
	if d.useStage {
		format, encFormat := "NEWLINE_DELIMITED_JSON", "jsonl"
		if d.parquet {
			format, encFormat = "PARQUET", "parquet"
		}
		up, err := sdk.OpenUpload(abi.UploadSpec{Sink: abi.SinkBigQueryLoad, Key: d.stage, Options: map[string]any{
			"format": format, "job_id_prefix": fmt.Sprintf("%s_%d_stage", d.jobBase, d.attempt),
			"write_disposition": "WRITE_TRUNCATE", "schema": stageSchema(d.parquet)}})
		if err != nil {
			return err
		}
		spec := abi.EncoderSpec{Format: encFormat}
		for _, c := range stageColumns {
			spec.Columns = append(spec.Columns, abi.ColumnSelect{Name: c})
		}
		enc, err := up.Encoder(spec)
		if err != nil {
			up.Abort()
			return err
		}
		d.up, d.enc = up, enc
		return nil
	}
	// Direct load: the rows are built by the plugin (the derived columns cannot be
	// computed by a load job), once per run whatever the attempt.
	up, err := sdk.OpenUpload(abi.UploadSpec{Sink: abi.SinkBigQueryLoad, Key: d.cfg.TableID, Options: map[string]any{
		"format": "NEWLINE_DELIMITED_JSON", "job_id_prefix": d.jobBase + "_load", "write_disposition": "WRITE_APPEND"}})
	if err != nil {
		return err
	}
	d.up = up
	return nil
}

func (d *destination) WriteBatch(b *sdk.Batch) error {
	if b.Records() == 0 {
		return nil
	}
	if d.up == nil {
		if err := d.openUpload(); err != nil {
			return err
		}
	}
	if d.enc != nil {
		if err := d.enc.WriteBatch(b); err != nil {
			return err
		}
	} else if err := d.writeRows(b); err != nil {
		return err
	}
	d.records += int64(b.Records())
	return nil
}

// writeRows writes the final table's rows as JSON Lines (direct load only).
func (d *destination) writeRows(b *sdk.Batch) error {
	ingested := d.now().UTC().Format("2006-01-02T15:04:05.000000Z")
	return b.Events(func(e *abi.Event) error {
		var props map[string]json.RawMessage
		properties := any(nil)
		if json.Valid([]byte(e.Properties)) {
			_ = json.Unmarshal([]byte(e.Properties), &props) // not an object: nothing to derive
		} else {
			// Not JSON: kept as text (a STRING column holds it as is, a JSON column as a
			// JSON string, as the host's JSON Lines encoder does), never nulled; logged.
			properties = e.Properties
			if d.badProps == 0 {
				d.badFirst = uuidString(e.UUID)
			}
			d.badProps++
		}
		jsonField := func(raw json.RawMessage) any {
			if raw == nil || string(raw) == "null" {
				return nil
			}
			if d.cfg.UseJSONType {
				return raw
			}
			return string(raw)
		}
		var ip any
		var s string
		if json.Unmarshal(props["$ip"], &s) == nil && props["$ip"] != nil {
			ip = s
		}
		elements, _ := json.Marshal(e.ElementsChain)
		row := struct {
			UUID       string `json:"uuid"`
			Event      string `json:"event"`
			Properties any    `json:"properties"`
			Elements   string `json:"elements"`
			Set        any    `json:"set"`
			SetOnce    any    `json:"set_once"`
			DistinctID string `json:"distinct_id"`
			TeamID     int64  `json:"team_id"`
			IP         any    `json:"ip"`
			SiteURL    string `json:"site_url"`
			Timestamp  string `json:"timestamp"`
			Ingested   string `json:"bq_ingested_timestamp"`
		}{uuidString(e.UUID), e.Event, properties, string(elements),
			jsonField(props["$set"]), jsonField(props["$set_once"]), e.DistinctID, e.TeamID, ip, "",
			e.Timestamp.UTC().Format("2006-01-02T15:04:05.000000Z"), ingested}
		if properties == nil {
			row.Properties = jsonField(json.RawMessage(e.Properties))
		}
		line, err := json.Marshal(row)
		if err != nil {
			return err
		}
		d.line = append(append(d.line[:0], line...), '\n')
		_, err = d.up.Write(d.line)
		return err
	})
}

func uuidString(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (d *destination) Finish() (abi.Result, error) {
	if d.badProps > 0 {
		sdk.Log(slog.LevelWarn, "some events' properties are not valid JSON: their text is kept as a string",
			"events", d.badProps, "first_uuid", d.badFirst)
		_ = sdk.Metric("invalid_properties", d.badProps)
	}
	if d.up == nil {
		sdk.Log(slog.LevelInfo, "no events in the interval: nothing loaded")
		return abi.Result{}, nil
	}
	ci, err := d.up.Commit()
	d.up, d.enc = nil, nil
	if err != nil {
		return abi.Result{}, err
	}
	target := d.cfg.DatasetID + "." + d.cfg.TableID
	var loaded int64
	if d.useStage {
		d.loaded = true
		var qr struct {
			JobID        string `json:"job_id"`
			RowsAffected int64  `json:"rows_affected"`
			Existing     bool   `json:"existing"`
		}
		err := call(map[string]any{"op": "query", "sql": insertSQL(&d.cfg, d.stage, d.parquet),
			"job_id_prefix": d.jobBase + "_insert"}, &qr)
		if err != nil {
			return abi.Result{}, err
		}
		// The INSERT's DML affected rows: this attempt's, or those of the job an earlier
		// attempt of this generation ran (the capability reports that finished job).
		loaded = qr.RowsAffected
		if qr.Existing {
			sdk.Log(slog.LevelInfo, "an earlier attempt of this run already inserted its rows: not inserting again",
				"job_id", qr.JobID, "rows_inserted", qr.RowsAffected, "generation", d.gen)
		}
		if err := d.dropStage(); err != nil {
			sdk.Log(slog.LevelWarn, "could not drop the stage table", "table", d.stage, "error", err.Error())
		}
	} else if ci.ETag != "" {
		// The load job's output rows (the job this attempt ran, or the one an earlier
		// attempt of this generation ran: the sink then reports that job).
		var js struct {
			OutputRows int64 `json:"output_rows"`
		}
		if err := call(map[string]any{"op": "job_status", "job_id": ci.ETag}, &js); err != nil {
			return abi.Result{}, err
		}
		loaded = js.OutputRows
	}
	if loaded != d.records {
		sdk.Log(slog.LevelInfo, "BigQuery loaded a different number of rows than the run streamed",
			"rows_loaded", loaded, "records_streamed", d.records)
	}
	_ = sdk.Metric("load_jobs", 1)
	return abi.Result{Records: loaded, Bytes: ci.Bytes,
		Outputs: []abi.Output{{Kind: "bigquery_table", Name: target, Records: loaded, Bytes: ci.Bytes}}}, nil
}

func (d *destination) dropStage() error {
	err := call(map[string]any{"op": "query", "sql": "DROP TABLE IF EXISTS `" + d.cfg.DatasetID + "." + d.stage + "`"}, nil)
	if err == nil {
		d.dropped = true
	}
	return err
}

// Close drops a stage table this attempt loaded but did not drop (a failed INSERT).
func (d *destination) Close() error {
	if d.loaded && !d.dropped {
		_ = d.dropStage()
	}
	return nil
}

// bigqueryCodes lists BigQuery error reasons (Error.code).
var bigqueryCodes = sdk.ErrorCodes{Destination: "BigQuery",
	Retryable: map[string]bool{"quotaExceeded": true, "rateLimitExceeded": true, "backendError": true,
		"internalError": true, "jobRateLimitExceeded": true, "jobBackendError": true, "jobInternalError": true,
		"tableUnavailable": true, "timeout": true},
	Fatal: map[string]bool{"notFound": true, "accessDenied": true, "invalid": true, "invalidQuery": true,
		"billingNotEnabled": true, "billingTierLimitExceeded": true, "responseTooLarge": true, "duplicate": true,
		"unauthorized": true},
}

// Classify follows PostHog's BigQuery destination: quota, rate limits and backend errors
// are retried; a missing table or dataset, denied access and an invalid schema or query
// fail the run.
func (d *destination) Classify(e *abi.Error, attempt int) abi.Classification {
	if c, ok := bigqueryCodes.Classify(e); ok {
		return c
	}
	if code, err := strconv.Atoi(e.Code); err == nil && code >= 500 {
		return abi.Classification{Outcome: abi.OutcomeRetry, Reason: "BigQuery HTTP " + e.Code}
	}
	return sdk.DefaultClassify(e, attempt)
}

// Test checks the config and the dataset access (no data written).
func (d *destination) Test(rc *sdk.RunContext) (abi.TestReport, error) {
	var t sdk.TestSteps
	step := t.Step
	err := rc.Config(&d.cfg)
	if err == nil {
		err = d.cfg.check()
	}
	if !step("config", err, "config is valid") {
		return t.Report, nil
	}
	var acc struct {
		Location string `json:"location"`
	}
	if !step("dataset access", call(map[string]any{"op": "check_access"}, &acc),
		"the credentials can read dataset "+d.cfg.ProjectID+"."+d.cfg.DatasetID) {
		return t.Report, nil
	}
	var info struct {
		Exists bool `json:"exists"`
	}
	if err := call(map[string]any{"op": "table_info", "table": d.cfg.TableID}, &info); err != nil {
		step("table", err, "")
		return t.Report, nil
	}
	msg := "table " + d.cfg.TableID + " exists"
	if !info.Exists {
		msg = "table " + d.cfg.TableID + " does not exist yet; the first run creates it"
	}
	step("table", nil, msg)
	var perm struct {
		Allowed bool   `json:"allowed"`
		Reason  string `json:"reason"`
	}
	if info.Exists {
		err := call(map[string]any{"op": "check_query_permission", "table": d.cfg.TableID}, &perm)
		switch {
		case err != nil:
			step("query permission", err, "")
		case perm.Allowed:
			step("query permission", nil, "query jobs allowed: stage table + INSERT ... SELECT")
		default:
			step("query permission", nil, "no query permission: runs will load straight into the table ("+perm.Reason+")")
		}
	}
	return t.Report, nil
}
