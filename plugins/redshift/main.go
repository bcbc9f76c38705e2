// Command redshift is Sluice's Amazon Redshift destination (plugin ABI 1.1, capabilities sql
// and object), with PostHog's fields: the Postgres connection fields (port 5439),
// properties_data_type (varchar or super) and mode:
//
//   - INSERT: the host writes each batch into the run's stage table with multi-row INSERT
//     statements (sql.load_method insert: Redshift has no COPY FROM STDIN; no record enters
//     the guest);
//   - COPY: the host encodes the run's events into a gzipped JSON Lines file in S3 (the
//     object capability), and COPY ... FROM 's3://...' MANIFEST loads it into the stage.
//
// Either way one transaction creates the stage, fills it, moves its rows into the target
// (only if no earlier attempt of the same run and generation committed them: the
// _sluice_load_id column) and drops it, so a retried run never doubles a row. The COPY
// credentials are the host's: the statement names {secret:aws_access_key_id} and
// {secret:aws_secret_access_key}, which the sql capability substitutes (SPEC 6.2). See
// docs/redshift.md.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -tags sluice_abi_1_1 -o redshift.wasm ./plugins/redshift
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/plugins/internal/sqlexport"
	"github.com/sluicehq/sluice/sdk"
)

// Version of the plugin.
const Version = "0.1.0"

const driver = abi.SQLDriverPostgres

// Modes and property types (PostHog's values).
const (
	ModeInsert  = "INSERT"
	ModeCopy    = "COPY"
	TypeVarchar = "varchar"
	TypeSuper   = "super"
)

type config struct {
	Schema             string `json:"schema"`
	TableName          string `json:"table_name"`
	PropertiesDataType string `json:"properties_data_type"`
	Mode               string `json:"mode"`
	CopyBucket         string `json:"copy_bucket_name"`
	CopyRegion         string `json:"copy_region"`
	CopyPrefix         string `json:"copy_prefix"`
	CopyIAMRole        string `json:"copy_iam_role"`
}

var (
	iamRoleRE = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	bucketRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionRE  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	prefixRE  = regexp.MustCompile(`^[A-Za-z0-9!_.*'()/-]*$`)
)

func (c *config) check() error {
	if c.TableName == "" {
		c.TableName = "events"
	}
	if c.PropertiesDataType == "" {
		c.PropertiesDataType = TypeVarchar
	}
	if c.Mode == "" {
		c.Mode = ModeInsert
	}
	if err := sqlexport.CheckTable("table_name", c.TableName); err != nil {
		return err
	}
	if c.PropertiesDataType != TypeVarchar && c.PropertiesDataType != TypeSuper {
		return sdk.FieldError("properties_data_type", "%q is not varchar or super", c.PropertiesDataType)
	}
	switch c.Mode {
	case ModeInsert:
		return nil
	case ModeCopy:
	default:
		return sdk.FieldError("mode", "mode %q is not INSERT or COPY", c.Mode)
	}
	if !bucketRE.MatchString(c.CopyBucket) {
		return sdk.FieldError("copy_bucket_name", "mode COPY needs the S3 bucket COPY reads from (a valid bucket name)")
	}
	if c.CopyRegion != "" && !regionRE.MatchString(c.CopyRegion) {
		return sdk.FieldError("copy_region", "%q is not an AWS region", c.CopyRegion)
	}
	if !prefixRE.MatchString(c.CopyPrefix) || strings.Contains(c.CopyPrefix, "..") {
		return sdk.FieldError("copy_prefix", "the prefix may hold letters, digits and !_.*'()/- (no ..)")
	}
	if c.CopyIAMRole != "" && !iamRoleRE.MatchString(c.CopyIAMRole) {
		return sdk.FieldError("copy_iam_role", "%q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", c.CopyIAMRole)
	}
	return nil
}

// column is one column of the table layout and its Redshift type.
type column struct{ name, typ string }

// layout is PostHog's event columns with Redshift types; props is VARCHAR(65535) or SUPER.
func layout(props string) []column {
	return []column{
		{"uuid", "VARCHAR(200)"},
		{"event", "VARCHAR(200)"},
		{"distinct_id", "VARCHAR(200)"},
		{"person_id", "VARCHAR(200)"},
		{"team_id", "BIGINT"},
		{"properties", props},
		{"person_properties", props},
		{"elements_chain", "VARCHAR(65535)"},
		{"timestamp", "TIMESTAMP WITH TIME ZONE"},
		{"created_at", "TIMESTAMP WITH TIME ZONE"},
		{"_inserted_at", "TIMESTAMP WITH TIME ZONE"},
	}
}

// isProps tells the columns that hold JSON (SUPER with properties_data_type super).
func isProps(name string) bool { return name == "properties" || name == "person_properties" }

func columnDefs(cols []column) string {
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = q(c.name) + " " + c.typ
	}
	return strings.Join(defs, ", ")
}

func q(name string) string { return sdk.QuoteIdent(driver, name) }

type destination struct {
	sqlexport.Base // Classify: the server's code decides
	cfg            config
	rc             *sdk.RunContext
	stage          string
	loadID         string
	cols           []abi.ColumnSelect
	stageC         []column
	staged         int64
	inTx           bool
	// COPY mode: the run's file.
	up       *sdk.Upload
	enc      *sdk.Encoder
	fileKey  string
	fileRecs int64
	bytes    int64
	outputs  []abi.Output
}

func (d *destination) Validate(c *sdk.Config) error {
	if err := c.Decode(&d.cfg); err != nil {
		return err
	}
	if err := d.cfg.check(); err != nil {
		return err
	}
	if d.cfg.Mode != ModeCopy {
		return nil
	}
	keys := c.SecretSet("copy_aws_access_key_id") || c.SecretSet("copy_aws_secret_access_key")
	if keys == (d.cfg.CopyIAMRole != "") {
		return sdk.FieldError("copy_iam_role", "mode COPY authorizes Redshift with copy_iam_role or with the keys "+
			"copy_aws_access_key_id and copy_aws_secret_access_key: exactly one of them")
	}
	if keys && !(c.SecretSet("copy_aws_access_key_id") && c.SecretSet("copy_aws_secret_access_key")) {
		return sdk.FieldError("copy_aws_secret_access_key", "set both copy_aws_access_key_id and copy_aws_secret_access_key")
	}
	if !c.SecretSet("bucket_aws_access_key_id") || !c.SecretSet("bucket_aws_secret_access_key") {
		return sdk.FieldError("bucket_aws_access_key_id", "mode COPY writes the files with bucket_aws_access_key_id and bucket_aws_secret_access_key")
	}
	return nil
}

// Open creates the target if needed (adding _sluice_load_id to a table made before it),
// opens the run's transaction and creates its stage in it. COPY mode also opens the file.
func (d *destination) Open(rc *sdk.RunContext) error {
	if err := rc.Config(&d.cfg); err != nil {
		return err
	}
	if err := d.cfg.check(); err != nil {
		return err
	}
	d.rc = rc
	props := "VARCHAR(65535)"
	if d.cfg.PropertiesDataType == TypeSuper {
		props = "SUPER"
	}
	cols := layout(props)
	target := q(d.cfg.TableName)
	if _, err := sdk.SQLExec("CREATE TABLE IF NOT EXISTS " + target + " (" + columnDefs(cols) + ", " +
		q(sqlexport.LoadIDColumn) + " VARCHAR(200))"); err != nil {
		return err
	}
	have, err := sqlexport.Columns(driver, d.cfg.TableName)
	if err != nil {
		return err
	}
	if !slices.Contains(have, sqlexport.LoadIDColumn) {
		if _, err := sdk.SQLExec("ALTER TABLE " + target + " ADD COLUMN " + q(sqlexport.LoadIDColumn) + " VARCHAR(200)"); err != nil {
			return err
		}
	}
	var names []string
	for _, c := range cols {
		if slices.Contains(have, c.name) {
			names = append(names, c.name)
		}
	}
	if d.cols, err = sqlexport.LoadColumns(rc.Columns, names); err != nil {
		return sdk.FieldError("table_name", "table %s: %v", d.cfg.TableName, err)
	}
	// The stage has the loaded columns, JSON as text: the move parses it for SUPER.
	d.stageC = nil
	for _, c := range cols {
		if slices.ContainsFunc(d.cols, func(s abi.ColumnSelect) bool { return s.As == c.name }) {
			if isProps(c.name) {
				c.typ = "VARCHAR(65535)"
			}
			d.stageC = append(d.stageC, c)
		}
	}
	d.stage = sqlexport.StageName(rc.RunID, rc.Generation)
	d.loadID = sqlexport.LoadID(rc.RunID, rc.Generation)
	if err := sdk.SQLBegin(); err != nil {
		return err
	}
	d.inTx = true
	if _, err := sdk.SQLExec("DROP TABLE IF EXISTS " + q(d.stage)); err != nil {
		return err
	}
	if _, err := sdk.SQLExec("CREATE TABLE " + q(d.stage) + " (" + columnDefs(d.stageC) + ")"); err != nil {
		return err
	}
	sdk.Log(slog.LevelInfo, "redshift export starting", "mode", d.cfg.Mode, "table", d.cfg.TableName,
		"stage", d.stage, "properties_data_type", d.cfg.PropertiesDataType, "attempt", rc.Attempt, "generation", rc.Generation)
	if d.cfg.Mode == ModeCopy {
		return d.openFile()
	}
	return nil
}

// copyPrefix is where the run's files go: copy_prefix/<run>-g<generation>/ (a retry of the
// same run and generation overwrites them).
func (d *destination) copyPrefix() string {
	p := strings.Trim(d.cfg.CopyPrefix, "/")
	run := fmt.Sprintf("%s-g%d", d.rc.RunID, d.rc.Generation)
	if p == "" {
		return run
	}
	return p + "/" + run
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func (d *destination) openFile() error {
	d.fileKey = d.copyPrefix() + "/" + isoTime(d.rc.IntervalStart) + "-" + isoTime(d.rc.IntervalEnd) + ".jsonl.gz"
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: d.fileKey, ContentType: "application/jsonl", ContentEncoding: "gzip"})
	if err != nil {
		return err
	}
	enc, err := up.Encoder(abi.EncoderSpec{Format: "jsonl", Compression: "gzip", Columns: d.cols})
	if err != nil {
		_ = up.Abort()
		return err
	}
	d.up, d.enc = up, enc
	return nil
}

// WriteBatch loads the batch into the stage (INSERT) or encodes it into the file (COPY),
// on the host either way.
func (d *destination) WriteBatch(b *sdk.Batch) error {
	if b.Records() == 0 {
		return nil
	}
	if d.cfg.Mode == ModeCopy {
		if err := d.enc.WriteBatch(b); err != nil {
			return err
		}
		d.fileRecs += int64(b.Records())
		return nil
	}
	n, err := sdk.SQLLoad(b, d.stage, d.cols, 0, 0)
	if err != nil {
		return err
	}
	d.staged += n
	return nil
}

// copyFile commits the file and its Redshift manifest, then COPYs the manifest's file into
// the stage.
func (d *destination) copyFile() error {
	ci, err := d.up.Commit()
	d.up, d.enc = nil, nil
	if err != nil {
		return err
	}
	d.bytes += ci.Bytes
	d.outputs = append(d.outputs, abi.Output{Kind: "object", Name: ci.Key, Records: d.fileRecs, Bytes: ci.Bytes})
	type entry struct {
		URL       string `json:"url"`
		Mandatory bool   `json:"mandatory"`
	}
	body, err := json.Marshal(map[string][]entry{"entries": {{URL: "s3://" + d.cfg.CopyBucket + "/" + ci.Key, Mandatory: true}}})
	if err != nil {
		return err
	}
	mkey := d.copyPrefix() + "/manifest.json"
	mu, err := sdk.OpenUpload(abi.UploadSpec{Key: mkey, ContentType: "application/json"})
	if err != nil {
		return err
	}
	if _, err := mu.Write(body); err != nil {
		_ = mu.Abort()
		return err
	}
	mi, err := mu.Commit()
	if err != nil {
		return err
	}
	d.bytes += mi.Bytes
	d.outputs = append(d.outputs, abi.Output{Kind: "object", Name: mi.Key, Bytes: mi.Bytes})
	n, err := sdk.SQLExec(d.copyStatement(mi.Key))
	if err != nil {
		return err
	}
	d.staged = n
	return nil
}

// copyStatement is the COPY of the manifest at key into the stage. The keys are never the
// plugin's: {secret:NAME} is substituted by the host (sql.secret_NAME bindings).
func (d *destination) copyStatement(key string) string {
	names := make([]string, len(d.stageC))
	for i, c := range d.stageC {
		names[i] = q(c.name)
	}
	auth := "ACCESS_KEY_ID '{secret:aws_access_key_id}' SECRET_ACCESS_KEY '{secret:aws_secret_access_key}'"
	if d.cfg.CopyIAMRole != "" {
		auth = "IAM_ROLE '" + d.cfg.CopyIAMRole + "'"
	}
	s := "COPY " + q(d.stage) + " (" + strings.Join(names, ", ") + ") FROM 's3://" + d.cfg.CopyBucket + "/" + key + "' " +
		auth + " MANIFEST FORMAT AS JSON 'auto' GZIP TIMEFORMAT 'auto'"
	if d.cfg.CopyRegion != "" {
		s += " REGION '" + d.cfg.CopyRegion + "'"
	}
	return s
}

// Finish moves the stage into the target in the run's transaction, unless an earlier
// attempt of the run and generation committed (then it writes nothing), counts the run's
// rows, drops the stage and commits.
func (d *destination) Finish() (abi.Result, error) {
	if d.cfg.Mode == ModeCopy && d.fileRecs > 0 {
		if err := d.copyFile(); err != nil {
			return abi.Result{}, err
		}
	} else if d.up != nil {
		_ = d.up.Abort()
		d.up, d.enc = nil, nil
	}
	target, id := q(d.cfg.TableName), q(sqlexport.LoadIDColumn)
	if d.staged > 0 {
		sel := make([]string, len(d.stageC))
		for i, c := range d.stageC {
			sel[i] = q(c.name)
			if isProps(c.name) && d.cfg.PropertiesDataType == TypeSuper {
				sel[i] = "JSON_PARSE(" + q(c.name) + ")"
			}
		}
		names := make([]string, len(d.stageC))
		for i, c := range d.stageC {
			names[i] = q(c.name)
		}
		if _, err := sdk.SQLExec("INSERT INTO "+target+" ("+strings.Join(names, ", ")+", "+id+") SELECT "+
			strings.Join(sel, ", ")+", $1 FROM "+q(d.stage)+" WHERE NOT EXISTS (SELECT 1 FROM "+target+
			" WHERE "+id+" = $2)", d.loadID, d.loadID); err != nil {
			return abi.Result{}, err
		}
	}
	r, err := sdk.SQLQuery("SELECT count(*) FROM "+target+" WHERE "+id+" = $1", 1, d.loadID)
	if err != nil {
		return abi.Result{}, err
	}
	rows, err := sqlexport.Rows(r)
	if err != nil {
		return abi.Result{}, err
	}
	if _, err := sdk.SQLExec("DROP TABLE " + q(d.stage)); err != nil {
		return abi.Result{}, err
	}
	if err := sdk.SQLCommit(); err != nil {
		d.inTx = false
		return abi.Result{}, err
	}
	d.inTx = false
	if rows != d.staged {
		sdk.Log(slog.LevelInfo, "the table holds a different number of this run's rows than were staged "+
			"(an earlier attempt of the run committed them)", "rows", rows, "staged", d.staged)
	}
	outputs := append(d.outputs, abi.Output{Kind: "table", Name: d.cfg.TableName, Records: rows})
	return abi.Result{Records: rows, Bytes: d.bytes, Outputs: outputs}, nil
}

// Close rolls back a transaction the run left open (the host would too): the stage and
// everything it held go with it.
func (d *destination) Close() error {
	if d.inTx {
		d.inTx = false
		if err := sdk.SQLRollback(); err != nil {
			sdk.Log(slog.LevelWarn, "rollback failed", "err", err.Error())
		}
	}
	return nil
}

// Test connects and reads the table's columns, if it exists.
func (d *destination) Test(rc *sdk.RunContext) (abi.TestReport, error) {
	var t sdk.TestSteps
	err := rc.Config(&d.cfg)
	if err == nil {
		err = d.cfg.check()
	}
	if !t.Step("config", err, "config is valid") {
		return t.Report, nil
	}
	_, err = sdk.SQLQuery("SELECT 1", 1)
	if !t.Step("connection", err, "connected") {
		return t.Report, nil
	}
	sqlexport.TableStep(&t, driver, d.cfg.TableName, "42P01") // undefined_table
	return t.Report, nil
}

func manifest() abi.Manifest {
	conn := sqlexport.Connection(driver, 5439, "")
	return abi.Manifest{
		Name:         "redshift",
		Version:      Version,
		Description:  "Amazon Redshift table: INSERT through the sql capability, or COPY from S3 files",
		Capabilities: []string{abi.CapSQL, abi.CapObject},
		Formats:      []string{"jsonl"},
		Config: slices.Concat(conn, []abi.Field{
			{Name: "schema", Type: abi.TypeString, Default: "public", Binding: "sql.schema",
				Description: "Schema of the table."},
			{Name: "table_name", Type: abi.TypeString, Default: "events",
				Description: "Table to write to, created if it does not exist."},
			{Name: "has_self_signed_cert", Type: abi.TypeBoolean, Default: false, Binding: "sql.has_self_signed_cert",
				Description: "Encrypt without verifying the server's certificate."},
			{Name: "load_method", Type: abi.TypeString, Default: "insert", Enum: []string{"insert", "copy"}, Binding: "sql.load_method",
				Description: "INSERT mode: how the host writes batches into the stage: insert (multi-row INSERT statements; " +
					"Redshift has no COPY FROM STDIN) or copy (COPY FROM STDIN, for a PostgreSQL-protocol server that has it)."},
			{Name: "properties_data_type", Type: abi.TypeString, Default: TypeVarchar, Enum: []string{TypeVarchar, TypeSuper},
				Description: "Type of properties and person_properties in a new table: VARCHAR(65535) or SUPER (parsed with JSON_PARSE)."},
			{Name: "mode", Type: abi.TypeString, Default: ModeInsert, Enum: []string{ModeInsert, ModeCopy},
				Description: "INSERT: batches loaded through the database connection; COPY: a gzipped JSON Lines file in S3, " +
					"then COPY ... FROM 's3://...' (the copy_* fields)."},
			{Name: "copy_bucket_name", Type: abi.TypeString, Binding: "object.bucket",
				Description: "COPY: the S3 bucket the files are written to and COPY reads (copy_inputs.s3_bucket)."},
			{Name: "copy_region", Type: abi.TypeString, Binding: "object.region",
				Description: "COPY: the bucket's region (copy_inputs.region_name)."},
			{Name: "copy_prefix", Type: abi.TypeString, Default: "",
				Description: "COPY: key prefix of the files (copy_inputs.s3_key_prefix)."},
			{Name: "copy_endpoint_url", Type: abi.TypeString, Binding: "object.endpoint_url",
				Description: "COPY: endpoint of an S3-compatible store the files are written to (tests; Redshift itself reads s3://)."},
			{Name: "bucket_aws_access_key_id", Type: abi.TypeString, Secret: true, Binding: "object.access_key_id",
				Description: "COPY: access key id Sluice writes the files with (copy_inputs.bucket_credentials)."},
			{Name: "bucket_aws_secret_access_key", Type: abi.TypeString, Secret: true, Binding: "object.secret_access_key",
				Description: "COPY: secret access key Sluice writes the files with."},
			{Name: "copy_iam_role", Type: abi.TypeString,
				Description: "COPY: IAM role ARN Redshift reads the files with (copy_inputs.authorization), or set the two keys below."},
			{Name: "copy_aws_access_key_id", Type: abi.TypeString, Secret: true, Binding: "sql.secret_aws_access_key_id",
				Description: "COPY: access key id Redshift reads the files with (copy_inputs.authorization); the host puts it into the COPY statement."},
			{Name: "copy_aws_secret_access_key", Type: abi.TypeString, Secret: true, Binding: "sql.secret_aws_secret_access_key",
				Description: "COPY: secret access key Redshift reads the files with; the host puts it into the COPY statement."},
		}),
	}
}

func init() {
	sdk.Register(manifest(), func() sdk.Destination { return &destination{} })
}

func main() {}
