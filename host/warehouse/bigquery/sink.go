package bigquery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// Sink is the `bigquery_load` upload sink: an upload's key is the destination table
// (relative to the bound dataset) and its bytes are the source of one load job, run at
// Commit. It implements runtime.ObjectStore.
type Sink struct{ c *Capability }

// Sink returns the capability's bigquery_load sink.
func (c *Capability) Sink() *Sink { return &Sink{c: c} }

var _ runtime.ObjectStore = (*Sink)(nil)

// LoadOptions are the UploadSpec.options of a bigquery_load upload.
type LoadOptions struct {
	// Format: PARQUET or NEWLINE_DELIMITED_JSON (also "parquet", "jsonl").
	Format string
	// JobIDPrefix makes the load job id deterministic ({prefix}, then {prefix}_2... after
	// failed jobs): a retry whose job already succeeded does not load again.
	JobIDPrefix string
	// WriteDisposition: WRITE_APPEND (default), WRITE_TRUNCATE (stage_* tables only),
	// WRITE_EMPTY.
	WriteDisposition string
	// Schema, when given, is the load's schema (and the created table's).
	Schema []Column
	// PartitionField partitions a table the load creates (DAY).
	PartitionField string
	// IgnoreUnknownValues drops source fields the table lacks.
	IgnoreUnknownValues bool
}

func parseLoadOptions(table string, m map[string]any) (LoadOptions, error) {
	var o LoadOptions
	str := func(k string) (string, error) {
		v, ok := m[k]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", badArg("bigquery_load: option %s must be a string", k)
		}
		return s, nil
	}
	var err error
	if o.Format, err = str("format"); err != nil {
		return o, err
	}
	switch strings.ToUpper(o.Format) {
	case "PARQUET":
		o.Format = string(bigquery.Parquet)
	case "NEWLINE_DELIMITED_JSON", "JSONL", "NDJSON", "JSON":
		o.Format = string(bigquery.JSON)
	default:
		return o, badArg("bigquery_load: option format must be PARQUET or NEWLINE_DELIMITED_JSON, got %q", o.Format)
	}
	if o.JobIDPrefix, err = str("job_id_prefix"); err != nil {
		return o, err
	}
	if !jobPrefixRE.MatchString(o.JobIDPrefix) {
		return o, badArg("bigquery_load: option job_id_prefix must match [A-Za-z0-9_-]{1,1000}, got %q", truncate(o.JobIDPrefix, 100))
	}
	if o.WriteDisposition, err = str("write_disposition"); err != nil {
		return o, err
	}
	switch strings.ToUpper(o.WriteDisposition) {
	case "", "WRITE_APPEND":
		o.WriteDisposition = string(bigquery.WriteAppend)
	case "WRITE_TRUNCATE":
		if !isStage(table) {
			return o, denied("bigquery_load: WRITE_TRUNCATE is only allowed on stage_* tables (got %s)", table)
		}
		o.WriteDisposition = string(bigquery.WriteTruncate)
	case "WRITE_EMPTY":
		o.WriteDisposition = string(bigquery.WriteEmpty)
	default:
		return o, badArg("bigquery_load: unsupported write_disposition %q", o.WriteDisposition)
	}
	if o.PartitionField, err = str("partition_field"); err != nil {
		return o, err
	}
	if v, ok := m["ignore_unknown_values"].(bool); ok {
		o.IgnoreUnknownValues = v
	}
	if raw, ok := m["schema"]; ok && raw != nil {
		list, ok := raw.([]any)
		if !ok {
			return o, badArg("bigquery_load: option schema must be a list of {name, type, mode}")
		}
		for _, it := range list {
			f, ok := it.(map[string]any)
			if !ok {
				return o, badArg("bigquery_load: option schema must be a list of {name, type, mode}")
			}
			col := Column{}
			col.Name, _ = f["name"].(string)
			col.Type, _ = f["type"].(string)
			col.Mode, _ = f["mode"].(string)
			o.Schema = append(o.Schema, col)
		}
	}
	return o, nil
}

// Create starts a load into table key. The load job starts with the first bytes written
// and streams them through a pipe to the client's upload (multipart when they fit one
// chunk, resumable otherwise): memory stays bounded by the chunk size. If a job with the
// prefix already succeeded, the bytes are discarded and Commit reports that job.
func (s *Sink) Create(ctx context.Context, key string, opts runtime.ObjectOptions) (runtime.Upload, error) {
	c := s.c
	if err := checkTable(key); err != nil {
		return nil, err
	}
	o, err := parseLoadOptions(key, opts.Options)
	if err != nil {
		return nil, err
	}
	var schema bigquery.Schema
	if len(o.Schema) > 0 {
		if schema, err = toSchema(o.Schema); err != nil {
			return nil, err
		}
	}
	id, prev, err := c.pickJobID(ctx, o.JobIDPrefix)
	if err != nil {
		return nil, err
	}
	// The upload outlives the guest call that opened it: it is bound to its own context,
	// cancelled by Abort (the host aborts uploads left open when a run ends).
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	u := &loadUpload{c: c, table: key, opts: o, schema: schema, jobID: id, prev: prev, ctx: lctx, cancel: cancel}
	return u, nil
}

type loadResult struct {
	job *bigquery.Job
	err error
}

type loadUpload struct {
	c      *Capability
	table  string
	opts   LoadOptions
	schema bigquery.Schema
	jobID  string
	prev   *bigquery.Job // a job of this prefix that already succeeded

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	pw      *io.PipeWriter
	done    chan loadResult
	written int64
	ended   bool
}

var errAborted = errors.New("bigquery_load: upload aborted")

// start launches the load job goroutine reading from a pipe.
func (u *loadUpload) start() {
	pr, pw := io.Pipe()
	u.pw = pw
	u.done = make(chan loadResult, 1)
	src := bigquery.NewReaderSource(pr)
	src.SourceFormat = bigquery.DataFormat(u.opts.Format)
	src.IgnoreUnknownValues = u.opts.IgnoreUnknownValues
	if u.schema != nil {
		src.Schema = u.schema
	}
	l := u.c.ds.Table(u.table).LoaderFrom(src)
	l.JobID = u.jobID
	l.Location = u.c.cfg.Location
	l.WriteDisposition = bigquery.TableWriteDisposition(u.opts.WriteDisposition)
	l.CreateDisposition = bigquery.CreateIfNeeded
	if u.opts.PartitionField != "" {
		l.TimePartitioning = &bigquery.TimePartitioning{Type: bigquery.DayPartitioningType, Field: u.opts.PartitionField}
	}
	if u.c.cfg.ChunkSize > 0 {
		l.MediaOptions = append(l.MediaOptions, googleapi.ChunkSize(u.c.cfg.ChunkSize))
	}
	go func() {
		job, err := l.Run(u.ctx)
		// Unblock writers if the upload failed before reading everything.
		pr.CloseWithError(errOr(err, errors.New("bigquery_load: the load job was submitted")))
		u.done <- loadResult{job, err}
	}()
}

func errOr(err, dflt error) error {
	if err != nil {
		return err
	}
	return dflt
}

func (u *loadUpload) Write(p []byte) (int, error) {
	u.mu.Lock()
	if u.ended {
		u.mu.Unlock()
		return 0, badArg("bigquery_load: upload already ended")
	}
	if u.prev != nil { // already loaded by an earlier attempt: discard
		u.written += int64(len(p))
		u.mu.Unlock()
		return len(p), nil
	}
	if u.pw == nil {
		u.start()
	}
	pw := u.pw
	u.mu.Unlock()
	n, err := pw.Write(p)
	u.mu.Lock()
	u.written += int64(n)
	u.mu.Unlock()
	if err != nil {
		return n, mapError("bigquery_load "+u.table, err)
	}
	return n, nil
}

func (u *loadUpload) Written() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.written
}

// Commit ends the bytes, waits for the job to be created and to finish, and maps its
// error. A job id conflict (the job exists) checks that job instead of loading again.
func (u *loadUpload) Commit(ctx context.Context) (runtime.ObjectInfo, error) {
	u.mu.Lock()
	if u.ended {
		u.mu.Unlock()
		return runtime.ObjectInfo{}, badArg("bigquery_load: upload already ended")
	}
	u.ended = true
	pw, done, prev := u.pw, u.done, u.prev
	written := u.written
	u.mu.Unlock()
	defer u.cancel()
	info := runtime.ObjectInfo{Key: u.table, Bytes: written, ETag: u.jobID}
	if prev != nil {
		return info, nil
	}
	if pw == nil {
		// Nothing written: no job (an empty load would be a wasted load quota unit).
		info.ETag = ""
		return info, nil
	}
	_ = pw.Close()
	var res loadResult
	select {
	case res = <-done:
	case <-ctx.Done():
		u.cancel()
		<-done
		return info, ctx.Err()
	}
	job, err := res.job, res.err
	if err != nil && isDuplicate(err) {
		job, err = u.c.client.JobFromIDLocation(ctx, u.jobID, u.c.cfg.Location)
	}
	if err != nil {
		return info, mapError("load into "+u.table, err)
	}
	st, err := job.Wait(ctx)
	if err != nil {
		return info, mapError("load into "+u.table, err)
	}
	if err := st.Err(); err != nil {
		return info, mapError("load into "+u.table, err)
	}
	return info, nil
}

// Abort abandons the load: the upload is cut before its last chunk, so no job is created.
func (u *loadUpload) Abort(ctx context.Context) error {
	u.mu.Lock()
	if u.ended {
		u.mu.Unlock()
		return nil
	}
	u.ended = true
	pw, done := u.pw, u.done
	u.mu.Unlock()
	if pw != nil {
		_ = pw.CloseWithError(errAborted)
		u.cancel()
		<-done
	}
	u.cancel()
	return nil
}

// String describes the upload (logs).
func (u *loadUpload) String() string {
	return fmt.Sprintf("bigquery_load %s job %s", u.table, u.jobID)
}

var _ = abi.StatusOK
