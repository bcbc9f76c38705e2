package main

import (
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// Authentication types and staged file formats, as the config names them.
const (
	AuthPassword    = "password"
	AuthKeyPair     = "keypair"
	FormatJSONLines = "JSONLines"
	FormatParquet   = "Parquet"
)

var (
	accountRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)
	identRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,254}$`)
	unsafeRE  = regexp.MustCompile(`[^A-Za-z0-9_=-]`)
)

type config struct {
	Account            string `json:"account"`
	User               string `json:"user"`
	AuthenticationType string `json:"authentication_type"`
	Database           string `json:"database"`
	Schema             string `json:"schema"`
	TableName          string `json:"table_name"`
	Warehouse          string `json:"warehouse"`
	Role               string `json:"role"`
	FileFormat         string `json:"file_format"`
	Compression        string `json:"compression"`
	MaxFileSizeMB      int    `json:"max_file_size_mb"`
}

func (c *config) check() error {
	if c.TableName == "" {
		c.TableName = "events"
	}
	if c.AuthenticationType == "" {
		c.AuthenticationType = AuthPassword
	}
	if c.FileFormat == "" {
		c.FileFormat = FormatJSONLines
	}
	if c.Compression == "" {
		c.Compression = "gzip"
	}
	if c.MaxFileSizeMB == 0 {
		c.MaxFileSizeMB = 200
	}
	if !accountRE.MatchString(c.Account) {
		return sdk.FieldError("account", "invalid account identifier %q", c.Account)
	}
	if c.User == "" {
		return sdk.FieldError("user", "user is required")
	}
	for _, f := range []struct{ name, v string }{{"database", c.Database}, {"schema", c.Schema}} {
		if f.v == "" || len(f.v) > 255 || strings.ContainsAny(f.v, "\"\x00\n") {
			return sdk.FieldError(f.name, "invalid %s %q", f.name, f.v)
		}
	}
	if !identRE.MatchString(c.TableName) {
		return sdk.FieldError("table_name", "invalid table name %q: letters, digits, _ and $, not starting with a digit", c.TableName)
	}
	if c.AuthenticationType != AuthPassword && c.AuthenticationType != AuthKeyPair {
		return sdk.FieldError("authentication_type", "unsupported authentication_type %q (want password or keypair)", c.AuthenticationType)
	}
	if c.FileFormat != FormatJSONLines && c.FileFormat != FormatParquet {
		return sdk.FieldError("file_format", "unsupported file_format %q (want JSONLines or Parquet)", c.FileFormat)
	}
	if c.Compression != "gzip" && c.Compression != "zstd" && c.Compression != "none" {
		return sdk.FieldError("compression", "unsupported compression %q (want gzip, zstd or none)", c.Compression)
	}
	if c.MaxFileSizeMB < 1 || c.MaxFileSizeMB > 4096 {
		return sdk.FieldError("max_file_size_mb", "max_file_size_mb must be between 1 and 4096")
	}
	return nil
}

// boundIdent quotes a database or schema name as the host's capability resolves it: a plain
// identifier as if unquoted (upper case), anything else as written.
func boundIdent(s string) string {
	if identRE.MatchString(s) {
		s = strings.ToUpper(s)
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// qualified is "DATABASE"."SCHEMA"."table" (the table name as configured: case-sensitive).
func (c *config) qualified() string {
	return boundIdent(c.Database) + "." + boundIdent(c.Schema) + "." + quote(c.TableName)
}

// createSQL is PostHog's Snowflake events table.
func createSQL(cfg *config) string {
	return "CREATE TABLE IF NOT EXISTS " + cfg.qualified() + ` (
    uuid STRING,
    event STRING,
    properties VARIANT,
    elements VARIANT,
    people_set VARIANT,
    people_set_once VARIANT,
    distinct_id STRING,
    team_id INTEGER,
    ip STRING,
    site_url STRING,
    timestamp TIMESTAMP
)
COMMENT = 'PostHog generated events table'`
}

// stageColumns are the run columns encoded into the staged files, in order.
var stageColumns = []string{"uuid", "event", "distinct_id", "team_id", "properties", "elements_chain", "timestamp"}

// finalColumns are the table's columns, in the COPY's order.
var finalColumns = []string{"uuid", "event", "properties", "elements", "people_set", "people_set_once",
	"distinct_id", "team_id", "ip", "site_url", "timestamp"}

// copySQL loads the named files of the run's stage path: the transformation derives
// people_set, people_set_once and ip from properties, as PostHog's producer does. JSON
// Lines carry properties as an object; Parquet as text (PARSE_JSON) and uuid as 16 bytes
// with the UUID logical type (read as text).
func copySQL(cfg *config, stagePath string, files []string) string {
	props, uuid, format := "$1:properties", "$1:uuid", "JSON"
	if cfg.FileFormat == FormatParquet {
		props, uuid, format = "PARSE_JSON($1:properties)", "$1:uuid::VARCHAR", "PARQUET"
	}
	exprs := []string{uuid, "$1:event", props, "$1:elements_chain", props + `:"$set"`, props + `:"$set_once"`,
		"$1:distinct_id", "$1:team_id", props + `:"$ip"`, "''", "$1:timestamp"}
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = "'" + f + "'"
	}
	return "COPY INTO " + cfg.qualified() + " (" + strings.Join(finalColumns, ", ") + ")\nFROM (SELECT " +
		strings.Join(exprs, ", ") + " FROM '@%" + quote(cfg.TableName) + "/" + stagePath + "/')\n" +
		"FILES = (" + strings.Join(quoted, ", ") + ")\n" +
		"FILE_FORMAT = (TYPE = '" + format + "')\nPURGE = TRUE"
}

// maxCopyFiles is Snowflake's limit on a COPY's FILES list.
const maxCopyFiles = 1000

type destination struct {
	sdk.Base
	cfg       config
	stagePath string // sluice/{run id}[_g{generation}]: a retried attempt rewrites the same files
	gen       int
	up        *sdk.Upload
	enc       *sdk.Encoder
	part      int
	files     []string // staged file names of this attempt, in order
	fileRows  []int64  // records encoded into each of files
	partRows  int64    // records encoded into the open file
	records   int64
	bytes     int64
	maxBytes  int64
}

// stagePath is the run's directory in the table stage, per (run, generation): an automatic
// retry (same generation) rewrites byte-identical files that Snowflake's load metadata skips,
// while a deliberate re-run (a higher generation) stages new paths that load again. Run ids
// are unique per export and interval, so two exports into one table never share a path.
// Generation 0 keeps the path of hosts before generations (sluice/{run id}). The REMOVE of
// a path ends with "/", so sluice/{run} never matches sluice/{run}_g1.
func stagePath(runID string, gen int) string {
	p := "sluice/" + unsafeRE.ReplaceAllString(runID, "_")
	if gen > 0 {
		p += fmt.Sprintf("_g%d", gen)
	}
	return p
}

func (d *destination) Validate(c *sdk.Config) error {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return err
	}
	switch cfg.AuthenticationType {
	case AuthPassword:
		if !c.SecretSet("password") {
			return sdk.FieldError("password", "password is required with authentication_type password")
		}
	case AuthKeyPair:
		if !c.SecretSet("private_key") {
			return sdk.FieldError("private_key", "private_key is required with authentication_type keypair")
		}
	}
	return nil
}

// call runs one snowflake capability operation.
func call(req map[string]any, resp any) error { return sdk.Call(abi.CapSnowflake, req, resp) }

type execResult struct {
	QueryID      string `json:"query_id"`
	RowsLoaded   int64  `json:"rows_loaded"`
	RowsAffected int64  `json:"rows_affected"`
	Files        []struct {
		File       string `json:"file"`
		Status     string `json:"status"`
		RowsLoaded int64  `json:"rows_loaded"`
		FirstError string `json:"first_error"`
	} `json:"files"`
}

func execute(sql string, res *execResult) error {
	req := map[string]any{"op": "execute", "sql": sql}
	if res == nil {
		return call(req, nil)
	}
	return call(req, res)
}

func (d *destination) Open(rc *sdk.RunContext) error {
	if err := rc.Config(&d.cfg); err != nil {
		return err
	}
	if err := d.cfg.check(); err != nil {
		return err
	}
	for _, name := range stageColumns {
		if !slices.ContainsFunc(rc.Columns, func(c abi.Column) bool { return c.Name == name }) {
			return fmt.Errorf("this export's schema lacks column %q, which the Snowflake events table needs", name)
		}
	}
	d.stagePath = stagePath(rc.RunID, rc.Generation)
	d.gen = max(rc.Generation, 0)
	d.maxBytes = int64(d.cfg.MaxFileSizeMB) << 20
	if err := execute(createSQL(&d.cfg), nil); err != nil {
		return err
	}
	sdk.Log(slog.LevelInfo, "snowflake export starting", "table", d.cfg.Database+"."+d.cfg.Schema+"."+d.cfg.TableName,
		"stage", "@%"+d.cfg.TableName+"/"+d.stagePath, "format", d.cfg.FileFormat, "attempt", rc.Attempt)
	return nil
}

// fileName is the deterministic name of the n-th staged file of a run.
func (d *destination) fileName(n int) string {
	if d.cfg.FileFormat == FormatParquet {
		return fmt.Sprintf("part-%05d.parquet", n)
	}
	ext := map[string]string{"gzip": ".jsonl.gz", "zstd": ".jsonl.zst", "none": ".jsonl"}[d.cfg.Compression]
	return fmt.Sprintf("part-%05d%s", n, ext)
}

func (d *destination) openUpload() error {
	name := d.fileName(d.part)
	spec := abi.EncoderSpec{Format: "jsonl", Compression: d.cfg.Compression}
	if spec.Compression == "none" {
		spec.Compression = ""
	}
	if d.cfg.FileFormat == FormatParquet {
		spec = abi.EncoderSpec{Format: "parquet", Compression: "zstd"}
	}
	for _, c := range stageColumns {
		spec.Columns = append(spec.Columns, abi.ColumnSelect{Name: c})
	}
	up, err := sdk.OpenUpload(abi.UploadSpec{Sink: abi.SinkSnowflakeStage, Key: d.stagePath + "/" + name,
		Options: map[string]any{"table": d.cfg.TableName, "overwrite": true}})
	if err != nil {
		return err
	}
	enc, err := up.Encoder(spec)
	if err != nil {
		up.Abort()
		return err
	}
	d.up, d.enc = up, enc
	return nil
}

// commitFile PUTs the open file into the stage.
func (d *destination) commitFile() error {
	ci, err := d.up.Commit()
	d.up, d.enc = nil, nil
	if err != nil {
		return err
	}
	d.files = append(d.files, d.fileName(d.part))
	d.fileRows = append(d.fileRows, d.partRows)
	d.part, d.partRows = d.part+1, 0
	d.bytes += ci.Bytes
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
	if err := d.enc.WriteBatch(b); err != nil {
		return err
	}
	d.records += int64(b.Records())
	d.partRows += int64(b.Records())
	// Split files at about max_file_size_mb, compressed (checked between batches).
	if n := d.up.Bytes(); n >= d.maxBytes {
		return d.commitFile()
	}
	return nil
}

func (d *destination) Finish() (abi.Result, error) {
	if d.up != nil {
		if err := d.commitFile(); err != nil {
			return abi.Result{}, err
		}
	}
	if len(d.files) == 0 {
		sdk.Log(slog.LevelInfo, "no events in the interval: nothing loaded")
		return abi.Result{}, nil
	}
	// Records is what Snowflake loaded: the COPY's rows_loaded, plus, for a file the load
	// metadata skipped, the rows an earlier attempt of this generation loaded from it (a
	// file is skipped only when a file of that path with the same checksum was loaded into
	// the table: the same bytes, so exactly the rows this attempt encoded into it).
	var loaded, skipped int64
	for start := 0; start < len(d.files); start += maxCopyFiles {
		end := min(start+maxCopyFiles, len(d.files))
		batch := d.files[start:end]
		var res execResult
		if err := execute(copySQL(&d.cfg, d.stagePath, batch), &res); err != nil {
			return abi.Result{}, err
		}
		reported := map[string]bool{}
		for _, f := range res.Files {
			if f.Status != "LOADED" {
				return abi.Result{}, sdk.WithCode(fmt.Errorf("COPY INTO %s: file %s %s: %s", d.cfg.TableName, f.File, f.Status, f.FirstError),
					"copy_"+strings.ToLower(f.Status), abi.StatusFatalIO)
			}
			reported[path.Base(f.File)] = true
			loaded += f.RowsLoaded
		}
		for i, name := range batch {
			if !reported[name] {
				skipped += d.fileRows[start+i]
			}
		}
	}
	if skipped > 0 {
		sdk.Log(slog.LevelInfo, "some staged files were already loaded by an earlier attempt of this run: Snowflake skipped them",
			"rows_loaded", loaded, "rows_loaded_before", skipped, "records", d.records, "generation", d.gen)
	}
	loaded += skipped
	// Files skipped by the load metadata are not purged: remove what is left of this run.
	if err := execute("REMOVE '@%"+quote(d.cfg.TableName)+"/"+d.stagePath+"/'", nil); err != nil {
		sdk.Log(slog.LevelWarn, "could not clean the run's stage path", "error", err.Error())
	}
	_ = sdk.Metric("staged_files", int64(len(d.files)))
	target := d.cfg.Database + "." + d.cfg.Schema + "." + d.cfg.TableName
	return abi.Result{Records: loaded, Bytes: d.bytes,
		Outputs: []abi.Output{{Kind: "snowflake_table", Name: target, Records: loaded, Bytes: d.bytes}}}, nil
}

// Close aborts a file left open by a failed run (nothing staged).
func (d *destination) Close() error {
	if d.up != nil {
		_ = d.up.Abort()
		d.up, d.enc = nil, nil
	}
	return nil
}

// snowflakeCodes lists Snowflake error codes (abi.Error.code, as the capability reports them).
var snowflakeCodes = sdk.ErrorCodes{Destination: "Snowflake",
	Retryable: map[string]bool{"000608": true, "000604": true, "000630": true, "000625": true,
		"390112": true, "390114": true, "260007": true, "261000": true, "261001": true, "http_5xx": true},
	Fatal: map[string]bool{"390100": true, "390101": true, "390102": true, "390144": true, "390189": true,
		"390201": true, "002003": true, "002043": true, "000904": true, "002023": true, "001003": true, "000606": true,
		"003001": true, "100069": true, "100038": true, "100071": true, "100072": true, "260008": true, "261004": true,
		"invalid_private_key": true, "missing_password": true},
}

// Classify follows PostHog's Snowflake destination: a suspended warehouse, cancelled or
// timed-out statements, expired sessions and network or 5xx faults are retried;
// authentication failures, a missing database, schema or table, an incompatible schema,
// malformed data and an invalid private key fail the run.
func (d *destination) Classify(e *abi.Error, attempt int) abi.Classification {
	if c, ok := snowflakeCodes.Classify(e); ok {
		return c
	}
	if strings.HasPrefix(e.Code, "copy_") { // the COPY itself reported rows it could not load
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: "Snowflake COPY error " + e.Code + " is not retryable"}
	}
	return sdk.DefaultClassify(e, attempt)
}

// Test checks the config, the login and access to the database, schema and warehouse, and
// whether the table exists (no data written).
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
		Database  string `json:"database"`
		Schema    string `json:"schema"`
		Warehouse string `json:"warehouse"`
		Role      string `json:"role"`
	}
	if !step("access", call(map[string]any{"op": "check_access"}, &acc),
		"logged in; database "+d.cfg.Database+", schema "+d.cfg.Schema+" and a warehouse are usable") {
		return t.Report, nil
	}
	var info struct {
		Exists bool `json:"exists"`
	}
	if err := call(map[string]any{"op": "table_info", "table": d.cfg.TableName}, &info); err != nil {
		step("table", err, "")
		return t.Report, nil
	}
	msg := "table " + d.cfg.TableName + " exists"
	if !info.Exists {
		msg = "table " + d.cfg.TableName + " does not exist yet; the first run creates it"
	}
	step("table", nil, msg)
	return t.Report, nil
}
