// Package bigquery is the host side of Sluice's `bigquery` capability (abi/SPEC.md section
// 9, docs/bigquery.md): a BigQuery client bound to ONE project and dataset, with the
// export's service-account credentials, that serves the plugin's `call("bigquery", ...)`
// operations (Capability.Call) and the `bigquery_load` upload sink (Capability.Sink).
//
// The plugin names tables relative to the bound dataset ([A-Za-z0-9_]{1,1024}); the
// statements it may run are checked by a policy (checkStatement) so that every table they
// reference is in that dataset. The plugin never sees a credential.
package bigquery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/sluicehq/sluice/abi"
)

// Config binds a Capability to one project and dataset.
type Config struct {
	ProjectID string
	DatasetID string
	// Location of the dataset (US, EU, europe-west1...); jobs run there. Empty: the
	// dataset's location (BigQuery infers it).
	Location string
	// CredentialsJSON is a service-account key (secret). Ignored when Endpoint is set.
	CredentialsJSON []byte
	// Endpoint, when set, points the client at a BigQuery-compatible REST endpoint (the
	// bqfake loopback server, an emulator) without authentication.
	Endpoint string
	// HTTPClient, when set, is the HTTP client used (it then carries the authentication).
	HTTPClient *http.Client
	// ChunkSize is the upload chunk size of load jobs (0: the client's 16 MiB). A load
	// whose bytes fit one chunk is a multipart upload, larger ones are resumable; memory
	// used per load is about one chunk.
	ChunkSize int
	// MaxJobRetries bounds the job ids tried per prefix after failed jobs (0: 5).
	MaxJobRetries int
}

var jobIDRE = lenRE{regexp.MustCompile(`^[A-Za-z0-9_-]+$`), 1024}

var projectRE = regexp.MustCompile(`^[a-z][a-z0-9:.-]{3,127}$`)

// Capability is the bigquery capability of one export.
type Capability struct {
	cfg    Config
	client *bigquery.Client
	ds     *bigquery.Dataset

	mu        sync.Mutex
	dsChecked bool
}

// New builds a Capability. It does no I/O.
func New(ctx context.Context, cfg Config) (*Capability, error) {
	if !projectRE.MatchString(cfg.ProjectID) {
		return nil, fmt.Errorf("bigquery: invalid project id %q", cfg.ProjectID)
	}
	if !tableIDRE.MatchString(cfg.DatasetID) {
		return nil, fmt.Errorf("bigquery: invalid dataset id %q", cfg.DatasetID)
	}
	var opts []option.ClientOption
	switch {
	case cfg.Endpoint != "":
		opts = append(opts, option.WithEndpoint(cfg.Endpoint), option.WithoutAuthentication())
		if cfg.HTTPClient != nil {
			opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
		}
	case cfg.HTTPClient != nil:
		opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
	case len(cfg.CredentialsJSON) > 0:
		opts = append(opts, option.WithAuthCredentialsJSON(option.ServiceAccount, cfg.CredentialsJSON))
	default:
		return nil, errors.New("bigquery: no credentials: a service-account key is required")
	}
	client, err := bigquery.NewClient(ctx, cfg.ProjectID, opts...)
	if err != nil {
		return nil, fmt.Errorf("bigquery: %w", err)
	}
	if cfg.Location != "" {
		client.Location = cfg.Location
	}
	if cfg.MaxJobRetries <= 0 {
		cfg.MaxJobRetries = 5
	}
	return &Capability{cfg: cfg, client: client, ds: client.Dataset(cfg.DatasetID)}, nil
}

// Close releases the client.
func (c *Capability) Close() error { return c.client.Close() }

// Client is the underlying client (tests).
func (c *Capability) Client() *bigquery.Client { return c.client }

// qualified is `project.dataset.table`, quoted.
func (c *Capability) qualified(table string) string {
	return "`" + c.cfg.ProjectID + "." + c.cfg.DatasetID + "." + table + "`"
}

// Call serves one `call("bigquery", request)` operation: a JSON object {"op": ...}.
func (c *Capability) Call(ctx context.Context, req []byte) ([]byte, error) {
	var head struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(req, &head); err != nil {
		return nil, badArg("bigquery: request is not a JSON object: %v", err)
	}
	var (
		out any
		err error
	)
	switch head.Op {
	case "ensure_table":
		var r EnsureTableRequest
		if err = decode(req, &r); err == nil {
			out, err = c.EnsureTable(ctx, r)
		}
	case "query":
		var r QueryRequest
		if err = decode(req, &r); err == nil {
			out, err = c.Query(ctx, r)
		}
	case "drop_table":
		var r struct {
			Table string `json:"table"`
		}
		if err = decode(req, &r); err == nil {
			out, err = c.DropTable(ctx, r.Table)
		}
	case "job_status":
		var r struct {
			JobID string `json:"job_id"`
		}
		if err = decode(req, &r); err == nil {
			out, err = c.JobStatus(ctx, r.JobID)
		}
	case "check_query_permission", "has_query_permission":
		var r struct {
			Table string `json:"table"`
		}
		if err = decode(req, &r); err == nil {
			out, err = c.CheckQueryPermission(ctx, r.Table)
		}
	case "check_access":
		out, err = c.CheckAccess(ctx)
	case "table_info":
		var r struct {
			Table string `json:"table"`
		}
		if err = decode(req, &r); err == nil {
			out, err = c.TableInfo(ctx, r.Table)
		}
	default:
		return nil, errorf(abi.StatusUnimplemented, "bigquery: unknown operation %q", truncate(head.Op, 64))
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

func decode(req []byte, v any) error {
	if err := json.Unmarshal(req, v); err != nil {
		return badArg("bigquery: invalid request: %v", err)
	}
	return nil
}

// ---- ensure_table ----------------------------------------------------------------------------

// Column is one column of a table schema: type is a BigQuery type (STRING, BYTES,
// INTEGER/INT64, FLOAT/FLOAT64, BOOLEAN/BOOL, TIMESTAMP, DATE, DATETIME, NUMERIC, JSON),
// mode NULLABLE (default), REQUIRED or REPEATED.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Mode string `json:"mode,omitempty"`
}

// EnsureTableRequest is the ensure_table operation.
type EnsureTableRequest struct {
	Table  string   `json:"table"`
	Schema []Column `json:"schema"`
	// PartitionField day-partitions a created table on that TIMESTAMP/DATE column.
	PartitionField string `json:"partition_field,omitempty"`
	// PartitionType: DAY (default), HOUR, MONTH, YEAR.
	PartitionType string `json:"partition_type,omitempty"`
	// AddMissingColumns adds the schema's columns an existing table lacks (as NULLABLE).
	AddMissingColumns bool `json:"add_missing_columns,omitempty"`
	// ExpirationHours sets an expiration on a created table (stage tables).
	ExpirationHours int `json:"expiration_hours,omitempty"`
}

// EnsureTableResult answers ensure_table.
type EnsureTableResult struct {
	Created        bool     `json:"created"`
	AddedColumns   []string `json:"added_columns,omitempty"`
	MissingColumns []string `json:"missing_columns,omitempty"`
}

var typeNames = map[string]bigquery.FieldType{
	"STRING": bigquery.StringFieldType, "BYTES": bigquery.BytesFieldType,
	"INTEGER": bigquery.IntegerFieldType, "INT64": bigquery.IntegerFieldType,
	"FLOAT": bigquery.FloatFieldType, "FLOAT64": bigquery.FloatFieldType,
	"BOOLEAN": bigquery.BooleanFieldType, "BOOL": bigquery.BooleanFieldType,
	"TIMESTAMP": bigquery.TimestampFieldType, "DATE": bigquery.DateFieldType,
	"DATETIME": bigquery.DateTimeFieldType, "NUMERIC": bigquery.NumericFieldType,
	"JSON": bigquery.JSONFieldType,
}

var columnRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,299}$`)

func toSchema(cols []Column) (bigquery.Schema, error) {
	var s bigquery.Schema
	seen := map[string]bool{}
	for _, col := range cols {
		if !columnRE.MatchString(col.Name) || seen[strings.ToLower(col.Name)] {
			return nil, badArg("bigquery: invalid or duplicate column name %q", truncate(col.Name, 100))
		}
		seen[strings.ToLower(col.Name)] = true
		t, ok := typeNames[strings.ToUpper(col.Type)]
		if !ok {
			return nil, badArg("bigquery: column %s: unsupported type %q", col.Name, col.Type)
		}
		f := &bigquery.FieldSchema{Name: col.Name, Type: t}
		switch strings.ToUpper(col.Mode) {
		case "", "NULLABLE":
		case "REQUIRED":
			f.Required = true
		case "REPEATED":
			f.Repeated = true
		default:
			return nil, badArg("bigquery: column %s: unsupported mode %q", col.Name, col.Mode)
		}
		s = append(s, f)
	}
	return s, nil
}

func fromSchema(s bigquery.Schema) []Column {
	out := make([]Column, 0, len(s))
	for _, f := range s {
		mode := "NULLABLE"
		if f.Required {
			mode = "REQUIRED"
		} else if f.Repeated {
			mode = "REPEATED"
		}
		out = append(out, Column{Name: f.Name, Type: string(f.Type), Mode: mode})
	}
	return out
}

// ensureDataset checks the bound dataset once per Capability, creating it if missing.
func (c *Capability) ensureDataset(ctx context.Context) error {
	c.mu.Lock()
	done := c.dsChecked
	c.mu.Unlock()
	if done {
		return nil
	}
	if _, err := c.ds.Metadata(ctx); err != nil {
		if !isNotFound(err) {
			return mapError("dataset "+c.cfg.DatasetID, err)
		}
		err = c.ds.Create(ctx, &bigquery.DatasetMetadata{Location: c.cfg.Location})
		if err != nil && !isDuplicate(err) {
			return mapError("create dataset "+c.cfg.DatasetID, err)
		}
	}
	c.mu.Lock()
	c.dsChecked = true
	c.mu.Unlock()
	return nil
}

// EnsureTable creates the table if missing (partitioned when asked) or, with
// AddMissingColumns, adds the columns it lacks.
func (c *Capability) EnsureTable(ctx context.Context, r EnsureTableRequest) (*EnsureTableResult, error) {
	if err := checkTable(r.Table); err != nil {
		return nil, err
	}
	schema, err := toSchema(r.Schema)
	if err != nil {
		return nil, err
	}
	if len(schema) == 0 {
		return nil, badArg("bigquery: ensure_table %s: empty schema", r.Table)
	}
	if err := c.ensureDataset(ctx); err != nil {
		return nil, err
	}
	t := c.ds.Table(r.Table)
	md, err := t.Metadata(ctx)
	if err != nil && !isNotFound(err) {
		return nil, mapError("table "+r.Table, err)
	}
	if err != nil { // not found: create
		tm := &bigquery.TableMetadata{Schema: schema}
		if r.PartitionField != "" {
			pt := bigquery.TimePartitioningType(strings.ToUpper(r.PartitionType))
			if pt == "" {
				pt = bigquery.DayPartitioningType
			}
			switch pt {
			case bigquery.DayPartitioningType, bigquery.HourPartitioningType, bigquery.MonthPartitioningType, bigquery.YearPartitioningType:
			default:
				return nil, badArg("bigquery: unsupported partition_type %q", r.PartitionType)
			}
			tm.TimePartitioning = &bigquery.TimePartitioning{Type: pt, Field: r.PartitionField}
		}
		if r.ExpirationHours > 0 {
			tm.ExpirationTime = time.Now().Add(time.Duration(r.ExpirationHours) * time.Hour)
		}
		err = t.Create(ctx, tm)
		if err == nil {
			return &EnsureTableResult{Created: true}, nil
		}
		if !isDuplicate(err) {
			return nil, mapError("create table "+r.Table, err)
		}
		// Created concurrently: check its columns like an existing table.
		if md, err = t.Metadata(ctx); err != nil {
			return nil, mapError("table "+r.Table, err)
		}
	}
	have := map[string]bool{}
	for _, f := range md.Schema {
		have[strings.ToLower(f.Name)] = true
	}
	var missing bigquery.Schema
	var names []string
	for _, f := range schema {
		if !have[strings.ToLower(f.Name)] {
			nf := *f
			nf.Required = false // a column added to an existing table must be NULLABLE
			missing = append(missing, &nf)
			names = append(names, f.Name)
		}
	}
	res := &EnsureTableResult{}
	if len(missing) == 0 {
		return res, nil
	}
	if !r.AddMissingColumns {
		res.MissingColumns = names
		return res, nil
	}
	upd := bigquery.TableMetadataToUpdate{Schema: append(md.Schema, missing...)}
	if _, err := t.Update(ctx, upd, md.ETag); err != nil {
		return nil, mapError("add columns to "+r.Table, err)
	}
	res.AddedColumns = names
	return res, nil
}

// ---- query -------------------------------------------------------------------------------------

// QueryRequest is the query operation.
type QueryRequest struct {
	SQL string `json:"sql"`
	// Params are named query parameters (@name), scalar JSON values.
	Params map[string]any `json:"params,omitempty"`
	// JobIDPrefix, when set, makes the query job id deterministic: a retry finds the job
	// that already succeeded and does not run the statement again.
	JobIDPrefix string `json:"job_id_prefix,omitempty"`
}

// QueryResult answers query.
type QueryResult struct {
	JobID         string `json:"job_id"`
	StatementType string `json:"statement_type,omitempty"`
	RowsAffected  int64  `json:"rows_affected"`
	// Existing is true when a job with the prefix had already succeeded (nothing ran).
	Existing bool `json:"existing,omitempty"`
}

// Query runs one statement allowed by the policy (see checkStatement) and waits for it.
func (c *Capability) Query(ctx context.Context, r QueryRequest) (*QueryResult, error) {
	if _, _, err := c.checkStatement(r.SQL, false); err != nil {
		return nil, err
	}
	if r.JobIDPrefix != "" && !jobPrefixRE.MatchString(r.JobIDPrefix) {
		return nil, badArg("bigquery: invalid job_id_prefix %q", truncate(r.JobIDPrefix, 100))
	}
	q := c.client.Query(r.SQL)
	q.DefaultProjectID = c.cfg.ProjectID
	q.DefaultDatasetID = c.cfg.DatasetID
	q.Location = c.cfg.Location
	for name, v := range r.Params {
		if !columnRE.MatchString(name) {
			return nil, badArg("bigquery: invalid parameter name %q", truncate(name, 64))
		}
		switch v.(type) {
		case string, float64, bool, nil:
		default:
			return nil, badArg("bigquery: parameter %s: only scalar values", name)
		}
		q.Parameters = append(q.Parameters, bigquery.QueryParameter{Name: name, Value: v})
	}
	var job *bigquery.Job
	if r.JobIDPrefix != "" {
		id, prev, err := c.pickJobID(ctx, r.JobIDPrefix)
		if err != nil {
			return nil, err
		}
		if prev != nil {
			return queryResult(prev, true), nil
		}
		q.JobID = id
		job, err = q.Run(ctx)
		if err != nil && isDuplicate(err) {
			// Raced with another attempt: that job decides.
			if job, err = c.client.JobFromIDLocation(ctx, id, c.cfg.Location); err == nil {
				st, werr := waitJob(ctx, job)
				if werr != nil {
					return nil, mapError("query", werr)
				}
				if st.Err() != nil {
					return nil, mapError("query", st.Err())
				}
				return queryResult(job, true), nil
			}
		}
		if err != nil {
			return nil, mapError("query", err)
		}
	} else {
		var err error
		if job, err = q.Run(ctx); err != nil {
			return nil, mapError("query", err)
		}
	}
	st, err := waitJob(ctx, job)
	if err != nil {
		return nil, mapError("query", err)
	}
	if err := st.Err(); err != nil {
		return nil, mapError("query", err)
	}
	return queryResult(job, false), nil
}

// waitJob polls the job's status until it is done. Unlike Job.Wait, which for a query job
// reads its results and retries a job that ended in a retryable-looking error (backendError)
// until the context ends, it returns at once when the job has ended, failed or not: the
// caller reads st.Err() and the plugin decides about a retry.
func waitJob(ctx context.Context, job *bigquery.Job) (*bigquery.JobStatus, error) {
	delay := 20 * time.Millisecond
	for {
		st, err := job.Status(ctx)
		if err != nil {
			return nil, err
		}
		if st.Done() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

func queryResult(job *bigquery.Job, existing bool) *QueryResult {
	res := &QueryResult{JobID: job.ID(), Existing: existing}
	if st := job.LastStatus(); st != nil && st.Statistics != nil {
		if qs, ok := st.Statistics.Details.(*bigquery.QueryStatistics); ok {
			res.RowsAffected = qs.NumDMLAffectedRows
			res.StatementType = qs.StatementType
		}
	}
	return res
}

// pickJobID finds the job id to use for prefix: prefix, then prefix_2, prefix_3... past
// jobs that failed. If a job with one of these ids succeeded (or is still running and
// then succeeds), it is returned as prev and nothing must run again.
func (c *Capability) pickJobID(ctx context.Context, prefix string) (id string, prev *bigquery.Job, err error) {
	for n := 1; n <= c.cfg.MaxJobRetries; n++ {
		id = prefix
		if n > 1 {
			id = fmt.Sprintf("%s_%d", prefix, n)
		}
		job, err := c.client.JobFromIDLocation(ctx, id, c.cfg.Location)
		if err != nil {
			if isNotFound(err) {
				return id, nil, nil
			}
			return "", nil, mapError("job "+id, err)
		}
		st := job.LastStatus()
		if st == nil || !st.Done() {
			if st, err = waitJob(ctx, job); err != nil {
				return "", nil, mapError("job "+id, err)
			}
		}
		if st.Err() == nil {
			return id, job, nil
		}
	}
	return "", nil, errorf(abi.StatusFatalIO, "bigquery: %d jobs with prefix %s failed; giving up", c.cfg.MaxJobRetries, prefix)
}

// ---- other operations -----------------------------------------------------------------------

// DropTable drops a stage table of the bound dataset; a missing table is not an error.
func (c *Capability) DropTable(ctx context.Context, table string) (map[string]bool, error) {
	if err := checkTable(table); err != nil {
		return nil, err
	}
	if !isStage(table) {
		return nil, denied("bigquery: only stage_* tables may be dropped (got %s)", table)
	}
	err := c.ds.Table(table).Delete(ctx)
	if err != nil && !isNotFound(err) {
		return nil, mapError("drop table "+table, err)
	}
	return map[string]bool{"dropped": err == nil}, nil
}

// JobStatusResult answers job_status.
type JobStatusResult struct {
	JobID        string    `json:"job_id"`
	State        string    `json:"state"` // PENDING, RUNNING, DONE
	Error        *JobError `json:"error,omitempty"`
	OutputRows   int64     `json:"output_rows,omitempty"`
	RowsAffected int64     `json:"rows_affected,omitempty"`
}

// JobError is a failed job's error.
type JobError struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// JobStatus reports a job of the bound project (jobs are not scoped to a dataset; the
// plugin only learns what it could have learnt from its own jobs).
func (c *Capability) JobStatus(ctx context.Context, id string) (*JobStatusResult, error) {
	if !jobIDRE.MatchString(id) {
		return nil, badArg("bigquery: invalid job id %q", truncate(id, 100))
	}
	job, err := c.client.JobFromIDLocation(ctx, id, c.cfg.Location)
	if err != nil {
		return nil, mapError("job "+id, err)
	}
	return jobStatus(job), nil
}

func jobStatus(job *bigquery.Job) *JobStatusResult {
	res := &JobStatusResult{JobID: job.ID()}
	st := job.LastStatus()
	if st == nil {
		return res
	}
	switch st.State {
	case bigquery.Pending:
		res.State = "PENDING"
	case bigquery.Running:
		res.State = "RUNNING"
	case bigquery.Done:
		res.State = "DONE"
	}
	if err := st.Err(); err != nil {
		reason, msg, _ := reasonOf(err)
		res.Error = &JobError{Reason: reason, Message: msg}
	}
	if st.Statistics != nil {
		switch d := st.Statistics.Details.(type) {
		case *bigquery.LoadStatistics:
			res.OutputRows = d.OutputRows
		case *bigquery.QueryStatistics:
			res.RowsAffected = d.NumDMLAffectedRows
		}
	}
	return res
}

// CheckQueryPermission reports whether the credentials may run query jobs on the table
// (a dry run of SELECT 1 FROM it): {"allowed": bool, "reason": ...}. Only access denied
// answers false; other faults are errors.
func (c *Capability) CheckQueryPermission(ctx context.Context, table string) (map[string]any, error) {
	if err := checkTable(table); err != nil {
		return nil, err
	}
	q := c.client.Query("SELECT 1 FROM " + c.qualified(table) + " LIMIT 1")
	q.DryRun = true
	q.Location = c.cfg.Location
	_, err := q.Run(ctx)
	if err == nil {
		return map[string]any{"allowed": true}, nil
	}
	if isReason(err, "accessDenied", http.StatusForbidden) && !isReason(err, "quotaExceeded", 0) && !isReason(err, "rateLimitExceeded", 0) {
		_, msg, _ := reasonOf(err)
		return map[string]any{"allowed": false, "reason": msg}, nil
	}
	return nil, mapError("query permission check", err)
}

// CheckAccess reads the bound dataset's metadata (sluice_test).
func (c *Capability) CheckAccess(ctx context.Context) (map[string]any, error) {
	md, err := c.ds.Metadata(ctx)
	if err != nil {
		return nil, mapError("dataset "+c.cfg.ProjectID+"."+c.cfg.DatasetID, err)
	}
	return map[string]any{"project_id": c.cfg.ProjectID, "dataset_id": c.cfg.DatasetID, "location": md.Location}, nil
}

// TableInfo reports whether a table exists, its schema and partitioning.
func (c *Capability) TableInfo(ctx context.Context, table string) (map[string]any, error) {
	if err := checkTable(table); err != nil {
		return nil, err
	}
	md, err := c.ds.Table(table).Metadata(ctx)
	if err != nil {
		if isNotFound(err) {
			return map[string]any{"exists": false}, nil
		}
		return nil, mapError("table "+table, err)
	}
	out := map[string]any{"exists": true, "schema": fromSchema(md.Schema), "num_rows": md.NumRows}
	if md.TimePartitioning != nil {
		out["partition_field"] = md.TimePartitioning.Field
		out["partition_type"] = string(md.TimePartitioning.Type)
	}
	return out, nil
}
