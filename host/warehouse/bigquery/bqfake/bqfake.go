// Package bqfake is a loopback fake of the BigQuery REST API (v2) as the official Go client
// (cloud.google.com/go/bigquery) calls it, for tests: point the client at Server.Endpoint()
// with option.WithEndpoint + option.WithoutAuthentication.
//
// It implements datasets get/insert; tables get/insert/patch/delete; jobs insert (plain,
// multipart upload and resumable upload on /upload/bigquery/v2/projects/{p}/jobs), jobs get,
// jobs getQueryResults and jobs query. It stores tables (schema, partitioning and rows),
// decodes loaded NEWLINE_DELIMITED_JSON and PARQUET into rows, and evaluates the statements
// Sluice's bigquery plugin issues (see sql.go): INSERT INTO t [(cols)] SELECT exprs FROM s,
// DROP TABLE [IF EXISTS], and dry runs. Errors have BigQuery's JSON shape
// {"error":{"code","message","errors":[{"reason","message","domain"}],"status"}}; Fail
// injects them per endpoint, FailJobs makes jobs end with an errorResult. Every job
// received is recorded (Jobs).
package bqfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bq "google.golang.org/api/bigquery/v2"
)

// Row is one stored row: column name → value (string, int64, float64, bool, time.Time,
// []byte, JSON columns as their JSON text string, nil).
type Row map[string]any

// Table is a stored table.
type Table struct {
	Meta bq.Table
	Rows []Row
}

type dataset struct {
	meta   bq.Dataset
	tables map[string]*Table
}

// Fault is an injected error.
type Fault struct {
	Code    int    // HTTP status; 0: from the reason (ReasonCode)
	Reason  string // BigQuery reason: quotaExceeded, rateLimitExceeded, backendError, notFound, accessDenied, invalid...
	Message string
}

type session struct {
	project string
	job     bq.Job
	data    bytes.Buffer
}

// Server is the fake.
type Server struct {
	srv *httptest.Server
	// URL is the server's base URL (http://127.0.0.1:port).
	URL string

	mu        sync.Mutex
	datasets  map[string]*dataset // "project:dataset"
	jobs      map[string]*bq.Job  // "project:jobid"
	jobOrder  []*bq.Job
	faults    map[string][]Fault
	jobFaults map[string][]Fault // "load", "query"
	sessions  map[string]*session
	requests  []string
	nextID    int
	onJob     func(job *bq.Job)
	// Location reported for datasets and jobs (default US).
	Location string
}

// New starts a fake on a loopback port.
func New() *Server {
	s := &Server{datasets: map[string]*dataset{}, jobs: map[string]*bq.Job{}, faults: map[string][]Fault{},
		jobFaults: map[string][]Fault{}, sessions: map[string]*session{}, Location: "US"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	s.srv.Start()
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Endpoint is the value for option.WithEndpoint.
func (s *Server) Endpoint() string { return s.URL + "/bigquery/v2/" }

// AddDataset creates a dataset.
func (s *Server) AddDataset(project, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addDataset(project, id)
}

func (s *Server) addDataset(project, id string) *dataset {
	d := &dataset{meta: bq.Dataset{Id: project + ":" + id, Kind: "bigquery#dataset", Location: s.Location,
		DatasetReference: &bq.DatasetReference{ProjectId: project, DatasetId: id},
		CreationTime:     time.Now().UnixMilli(), Etag: s.etag()}, tables: map[string]*Table{}}
	s.datasets[project+":"+id] = d
	return d
}

func (s *Server) etag() string {
	s.nextID++
	return fmt.Sprintf("etag%d", s.nextID)
}

// Fail makes the next n calls to endpoint fail with f. Endpoints: datasets.get,
// datasets.insert, tables.get, tables.insert, tables.patch, tables.delete, jobs.insert
// (plain, and the first request of an upload), upload.chunk (resumable chunks), jobs.get,
// jobs.getQueryResults, jobs.query.
func (s *Server) Fail(endpoint string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[endpoint] = append(s.faults[endpoint], f)
	}
}

// FailJobs makes the next n jobs of kind ("load" or "query", dry runs excluded) be created
// but end DONE with errorResult f (as BigQuery reports a job that failed while running).
func (s *Server) FailJobs(kind string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.jobFaults[kind] = append(s.jobFaults[kind], f)
	}
}

// OnJob sets a function called with every inserted job (load or query, its configuration
// filled in) before the fake runs it, without the fake's lock held: a test can hold a job
// back until something else happened (another job arrived), to interleave two runs.
func (s *Server) OnJob(f func(job *bq.Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onJob = f
}

// Table returns a copy of a stored table.
func (s *Server) Table(project, ds, table string) (*Table, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.datasets[project+":"+ds]
	if d == nil || d.tables[table] == nil {
		return nil, false
	}
	t := d.tables[table]
	cp := &Table{Meta: t.Meta, Rows: make([]Row, len(t.Rows))}
	for i, r := range t.Rows {
		nr := Row{}
		for k, v := range r {
			nr[k] = v
		}
		cp.Rows[i] = nr
	}
	return cp, true
}

// Tables lists the tables of a dataset, sorted.
func (s *Server) Tables(project, ds string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if d := s.datasets[project+":"+ds]; d != nil {
		for name := range d.tables {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Jobs returns the jobs received (accepted by jobs.insert or an upload), in order.
func (s *Server) Jobs() []bq.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bq.Job, len(s.jobOrder))
	for i, j := range s.jobOrder {
		out[i] = *j
	}
	return out
}

// Requests returns "METHOD /path?uploadType=..." for each request served.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// ---- errors ------------------------------------------------------------------------------------

// ReasonCode is the HTTP status BigQuery uses for a reason.
func ReasonCode(reason string) int {
	switch reason {
	case "notFound":
		return 404
	case "duplicate":
		return 409
	case "accessDenied", "quotaExceeded", "rateLimitExceeded", "billingNotEnabled":
		return 403
	case "backendError", "internalError":
		return 500
	case "unauthorized":
		return 401
	case "tableUnavailable":
		return 503
	}
	return 400
}

var statusNames = map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
	404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}

func writeError(w http.ResponseWriter, f Fault) {
	code := f.Code
	if code == 0 {
		code = ReasonCode(f.Reason)
	}
	if f.Message == "" {
		f.Message = "bqfake: injected " + f.Reason
	}
	doc := map[string]any{"error": map[string]any{
		"code": code, "message": f.Message, "status": statusNames[code],
		"errors": []map[string]string{{"message": f.Message, "domain": "global", "reason": f.Reason}},
	}}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(doc)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}

// takeFault pops an injected fault for endpoint.
func (s *Server) takeFault(endpoint string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := s.faults[endpoint]
	if len(fs) == 0 {
		return Fault{}, false
	}
	s.faults[endpoint] = fs[1:]
	return fs[0], true
}

// ---- routing -------------------------------------------------------------------------------------

var (
	reDataset  = regexp.MustCompile(`^/projects/([^/]+)/datasets/([^/]+)$`)
	reDatasets = regexp.MustCompile(`^/projects/([^/]+)/datasets$`)
	reTable    = regexp.MustCompile(`^/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)$`)
	reTables   = regexp.MustCompile(`^/projects/([^/]+)/datasets/([^/]+)/tables$`)
	reJobs     = regexp.MustCompile(`^/projects/([^/]+)/jobs$`)
	reJob      = regexp.MustCompile(`^/projects/([^/]+)/jobs/([^/]+)$`)
	reQueries  = regexp.MustCompile(`^/projects/([^/]+)/queries$`)
	reQuery    = regexp.MustCompile(`^/projects/([^/]+)/queries/([^/]+)$`)
	reUpload   = regexp.MustCompile(`^/upload/bigquery/v2/projects/([^/]+)/jobs$`)
	reSession  = regexp.MustCompile(`^/upload/session/([0-9a-z]+)$`)
)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	s.mu.Lock()
	rec := r.Method + " " + path
	if ut := r.URL.Query().Get("uploadType"); ut != "" {
		rec += "?uploadType=" + ut
	}
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
	if m := reUpload.FindStringSubmatch(path); m != nil && r.Method == http.MethodPost {
		s.uploadStart(w, r, m[1])
		return
	}
	if m := reSession.FindStringSubmatch(path); m != nil && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		s.uploadChunk(w, r, m[1])
		return
	}
	path = strings.TrimPrefix(path, "/bigquery/v2")
	type route struct {
		re       *regexp.Regexp
		method   string
		endpoint string
		fn       func(http.ResponseWriter, *http.Request, []string)
	}
	routes := []route{
		{reDataset, http.MethodGet, "datasets.get", s.datasetGet},
		{reDatasets, http.MethodPost, "datasets.insert", s.datasetInsert},
		{reTable, http.MethodGet, "tables.get", s.tableGet},
		{reTable, http.MethodPatch, "tables.patch", s.tablePatch},
		{reTable, http.MethodPut, "tables.patch", s.tablePatch},
		{reTable, http.MethodDelete, "tables.delete", s.tableDelete},
		{reTables, http.MethodPost, "tables.insert", s.tableInsert},
		{reJobs, http.MethodPost, "jobs.insert", s.jobInsert},
		{reJob, http.MethodGet, "jobs.get", s.jobGet},
		{reQueries, http.MethodPost, "jobs.query", s.jobQuery},
		{reQuery, http.MethodGet, "jobs.getQueryResults", s.getQueryResults},
	}
	for _, rt := range routes {
		m := rt.re.FindStringSubmatch(path)
		if m == nil || r.Method != rt.method {
			continue
		}
		if f, ok := s.takeFault(rt.endpoint); ok {
			writeError(w, f)
			return
		}
		rt.fn(w, r, m[1:])
		return
	}
	writeError(w, Fault{Code: 404, Reason: "notFound", Message: "bqfake: no route for " + r.Method + " " + r.URL.Path})
}

// ---- datasets and tables ------------------------------------------------------------------------

func (s *Server) datasetGet(w http.ResponseWriter, _ *http.Request, m []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.datasets[m[0]+":"+m[1]]
	if d == nil {
		writeError(w, Fault{Reason: "notFound", Message: "Not found: Dataset " + m[0] + ":" + m[1]})
		return
	}
	writeJSON(w, d.meta)
}

func (s *Server) datasetInsert(w http.ResponseWriter, r *http.Request, m []string) {
	var ds bq.Dataset
	if err := json.NewDecoder(r.Body).Decode(&ds); err != nil || ds.DatasetReference == nil {
		writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad dataset body"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := m[0] + ":" + ds.DatasetReference.DatasetId
	if s.datasets[key] != nil {
		writeError(w, Fault{Reason: "duplicate", Message: "Already Exists: Dataset " + key})
		return
	}
	d := s.addDataset(m[0], ds.DatasetReference.DatasetId)
	if ds.Location != "" {
		d.meta.Location = ds.Location
	}
	writeJSON(w, d.meta)
}

func (s *Server) lookupTable(w http.ResponseWriter, p, ds, t string) (*dataset, *Table) {
	d := s.datasets[p+":"+ds]
	if d == nil {
		writeError(w, Fault{Reason: "notFound", Message: "Not found: Dataset " + p + ":" + ds})
		return nil, nil
	}
	tb := d.tables[t]
	if tb == nil {
		writeError(w, Fault{Reason: "notFound", Message: "Not found: Table " + p + ":" + ds + "." + t})
		return d, nil
	}
	return d, tb
}

func (s *Server) tableGet(w http.ResponseWriter, _ *http.Request, m []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, t := s.lookupTable(w, m[0], m[1], m[2]); t != nil {
		t.Meta.NumRows = uint64(len(t.Rows))
		writeJSON(w, t.Meta)
	}
}

func (s *Server) tableInsert(w http.ResponseWriter, r *http.Request, m []string) {
	var tm bq.Table
	if err := json.NewDecoder(r.Body).Decode(&tm); err != nil || tm.TableReference == nil {
		writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad table body"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.datasets[m[0]+":"+m[1]]
	if d == nil {
		writeError(w, Fault{Reason: "notFound", Message: "Not found: Dataset " + m[0] + ":" + m[1]})
		return
	}
	t, err := s.createTable(d, m[0], m[1], tm.TableReference.TableId, tm.Schema, tm.TimePartitioning)
	if err != nil {
		writeError(w, *err)
		return
	}
	t.Meta.ExpirationTime = tm.ExpirationTime
	t.Meta.Description = tm.Description
	writeJSON(w, t.Meta)
}

func (s *Server) createTable(d *dataset, p, ds, id string, schema *bq.TableSchema, tp *bq.TimePartitioning) (*Table, *Fault) {
	if d.tables[id] != nil {
		return nil, &Fault{Reason: "duplicate", Message: "Already Exists: Table " + p + ":" + ds + "." + id}
	}
	if tp != nil && tp.Field != "" {
		ok := false
		if schema != nil {
			for _, f := range schema.Fields {
				if strings.EqualFold(f.Name, tp.Field) && (f.Type == "TIMESTAMP" || f.Type == "DATE" || f.Type == "DATETIME") {
					ok = true
				}
			}
		}
		if !ok {
			return nil, &Fault{Reason: "invalid", Message: "The field specified for time partitioning can only be of type TIMESTAMP, DATE or DATETIME. The type found is: missing field " + tp.Field}
		}
	}
	if schema != nil {
		if err := checkSchema(schema.Fields); err != nil {
			return nil, err
		}
	}
	t := &Table{Meta: bq.Table{Id: p + ":" + ds + "." + id, Kind: "bigquery#table", Type: "TABLE",
		TableReference: &bq.TableReference{ProjectId: p, DatasetId: ds, TableId: id},
		Schema:         schema, TimePartitioning: tp, CreationTime: time.Now().UnixMilli(), Etag: s.etag(),
		Location: d.meta.Location}}
	d.tables[id] = t
	return t, nil
}

var validTypes = map[string]bool{"STRING": true, "BYTES": true, "INTEGER": true, "INT64": true, "FLOAT": true,
	"FLOAT64": true, "BOOLEAN": true, "BOOL": true, "TIMESTAMP": true, "DATE": true, "DATETIME": true,
	"NUMERIC": true, "JSON": true}

func checkSchema(fields []*bq.TableFieldSchema) *Fault {
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[strings.ToLower(f.Name)] || f.Name == "" {
			return &Fault{Reason: "invalid", Message: "Duplicate or empty column name: " + f.Name}
		}
		seen[strings.ToLower(f.Name)] = true
		if !validTypes[f.Type] {
			return &Fault{Reason: "invalid", Message: "Invalid field type " + f.Type + " for " + f.Name}
		}
	}
	return nil
}

func (s *Server) tablePatch(w http.ResponseWriter, r *http.Request, m []string) {
	var tm bq.Table
	if err := json.NewDecoder(r.Body).Decode(&tm); err != nil {
		writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad table body"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, t := s.lookupTable(w, m[0], m[1], m[2])
	if t == nil {
		return
	}
	if et := r.Header.Get("If-Match"); et != "" && et != t.Meta.Etag {
		writeError(w, Fault{Code: 412, Reason: "conditionNotMet", Message: "Precondition check failed."})
		return
	}
	if tm.Schema != nil {
		newByName := map[string]*bq.TableFieldSchema{}
		for _, f := range tm.Schema.Fields {
			newByName[strings.ToLower(f.Name)] = f
		}
		if t.Meta.Schema != nil {
			for _, f := range t.Meta.Schema.Fields {
				nf := newByName[strings.ToLower(f.Name)]
				if nf == nil {
					writeError(w, Fault{Reason: "invalid", Message: "Provided Schema does not match Table " + t.Meta.Id + ". Cannot remove field " + f.Name})
					return
				}
				if nf.Type != f.Type {
					writeError(w, Fault{Reason: "invalid", Message: "Provided Schema does not match Table " + t.Meta.Id + ". Field " + f.Name + " has changed type from " + f.Type + " to " + nf.Type})
					return
				}
			}
		}
		if err := checkSchema(tm.Schema.Fields); err != nil {
			writeError(w, *err)
			return
		}
		t.Meta.Schema = tm.Schema
	}
	if tm.Description != "" {
		t.Meta.Description = tm.Description
	}
	if tm.ExpirationTime != 0 {
		t.Meta.ExpirationTime = tm.ExpirationTime
	}
	t.Meta.Etag = s.etag()
	writeJSON(w, t.Meta)
}

func (s *Server) tableDelete(w http.ResponseWriter, _ *http.Request, m []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, t := s.lookupTable(w, m[0], m[1], m[2])
	if t == nil {
		return
	}
	delete(d.tables, m[2])
	w.WriteHeader(http.StatusNoContent)
}

// ---- jobs ------------------------------------------------------------------------------------------

func (s *Server) jobInsert(w http.ResponseWriter, r *http.Request, m []string) {
	var job bq.Job
	if err := json.NewDecoder(r.Body).Decode(&job); err != nil {
		writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad job body: " + err.Error()})
		return
	}
	s.finishInsert(w, m[0], &job, nil)
}

// finishInsert registers and runs a job, answering the insert.
func (s *Server) finishInsert(w http.ResponseWriter, project string, job *bq.Job, media []byte) {
	s.mu.Lock()
	hook := s.onJob
	s.mu.Unlock()
	if hook != nil && job.Configuration != nil {
		hook(job)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if job.Configuration == nil {
		writeError(w, Fault{Reason: "invalid", Message: "Job configuration must be set"})
		return
	}
	if job.JobReference == nil {
		job.JobReference = &bq.JobReference{}
	}
	if job.JobReference.JobId == "" {
		job.JobReference.JobId = "bqfake_" + strconv.Itoa(s.nextID+1)
		s.nextID++
	}
	job.JobReference.ProjectId = project
	if job.JobReference.Location == "" {
		job.JobReference.Location = s.Location
	}
	key := project + ":" + job.JobReference.JobId
	if s.jobs[key] != nil {
		writeError(w, Fault{Reason: "duplicate", Message: fmt.Sprintf("Already Exists: Job %s:%s.%s", project, job.JobReference.Location, job.JobReference.JobId)})
		return
	}
	job.Id = project + ":" + job.JobReference.Location + "." + job.JobReference.JobId
	job.Kind = "bigquery#job"
	now := time.Now().UnixMilli()
	job.Statistics = &bq.JobStatistics{CreationTime: now, StartTime: now}
	job.Status = &bq.JobStatus{State: "DONE"}
	var fault *Fault
	switch {
	case job.Configuration.Load != nil:
		job.Configuration.JobType = "LOAD"
		if fs := s.jobFaults["load"]; len(fs) > 0 {
			s.jobFaults["load"] = fs[1:]
			fault = &fs[0]
		} else {
			var rows int64
			rows, fault = s.runLoad(project, job.Configuration.Load, media)
			job.Statistics.Load = &bq.JobStatistics3{OutputRows: rows, InputFileBytes: int64(len(media)), InputFiles: 1}
		}
	case job.Configuration.Query != nil:
		job.Configuration.JobType = "QUERY"
		if job.Configuration.DryRun {
			job.Statistics.Query = &bq.JobStatistics2{StatementType: "SELECT"}
			break
		}
		if fs := s.jobFaults["query"]; len(fs) > 0 {
			s.jobFaults["query"] = fs[1:]
			fault = &fs[0]
			break
		}
		var res queryResult
		res, fault = s.runQuery(project, job.Configuration.Query)
		job.Statistics.Query = &bq.JobStatistics2{StatementType: res.statementType, NumDmlAffectedRows: res.affected}
	default:
		writeError(w, Fault{Reason: "invalid", Message: "bqfake: only load and query jobs are supported"})
		return
	}
	job.Statistics.EndTime = time.Now().UnixMilli()
	if fault != nil {
		if fault.Message == "" {
			fault.Message = "bqfake: injected " + fault.Reason
		}
		ep := &bq.ErrorProto{Reason: fault.Reason, Message: fault.Message}
		job.Status.ErrorResult = ep
		job.Status.Errors = []*bq.ErrorProto{ep}
	}
	cp := *job
	s.jobs[key] = &cp
	s.jobOrder = append(s.jobOrder, &cp)
	writeJSON(w, cp)
}

func (s *Server) jobGet(w http.ResponseWriter, _ *http.Request, m []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[m[0]+":"+m[1]]
	if j == nil {
		writeError(w, Fault{Reason: "notFound", Message: "Not found: Job " + m[0] + ":" + s.Location + "." + m[1]})
		return
	}
	writeJSON(w, j)
}

func (s *Server) getQueryResults(w http.ResponseWriter, _ *http.Request, m []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[m[0]+":"+m[1]]
	if j == nil {
		writeError(w, Fault{Reason: "notFound", Message: "Not found: Job " + m[0] + ":" + s.Location + "." + m[1]})
		return
	}
	if e := j.Status.ErrorResult; e != nil {
		writeError(w, Fault{Reason: e.Reason, Message: e.Message})
		return
	}
	resp := bq.GetQueryResultsResponse{Kind: "bigquery#getQueryResultsResponse", JobComplete: true,
		JobReference: j.JobReference, Schema: &bq.TableSchema{}, TotalRows: 0}
	if j.Statistics != nil && j.Statistics.Query != nil {
		resp.NumDmlAffectedRows = j.Statistics.Query.NumDmlAffectedRows
	}
	writeJSON(w, resp)
}

func (s *Server) jobQuery(w http.ResponseWriter, r *http.Request, m []string) {
	var qr bq.QueryRequest
	if err := json.NewDecoder(r.Body).Decode(&qr); err != nil {
		writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad query body"})
		return
	}
	job := &bq.Job{Configuration: &bq.JobConfiguration{DryRun: qr.DryRun, Query: &bq.JobConfigurationQuery{
		Query: qr.Query, DefaultDataset: qr.DefaultDataset, UseLegacySql: qr.UseLegacySql}}}
	rec := httptest.NewRecorder()
	s.finishInsert(rec, m[0], job, nil)
	if rec.Code != http.StatusOK {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	var done bq.Job
	_ = json.Unmarshal(rec.Body.Bytes(), &done)
	if e := done.Status.ErrorResult; e != nil {
		writeError(w, Fault{Reason: e.Reason, Message: e.Message})
		return
	}
	resp := bq.QueryResponse{Kind: "bigquery#queryResponse", JobComplete: true, JobReference: done.JobReference,
		Schema: &bq.TableSchema{}}
	if done.Statistics != nil && done.Statistics.Query != nil {
		resp.NumDmlAffectedRows = done.Statistics.Query.NumDmlAffectedRows
	}
	writeJSON(w, resp)
}

// ---- uploads ----------------------------------------------------------------------------------------

func (s *Server) uploadStart(w http.ResponseWriter, r *http.Request, project string) {
	if f, ok := s.takeFault("jobs.insert"); ok {
		writeError(w, f)
		return
	}
	switch r.URL.Query().Get("uploadType") {
	case "multipart":
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || !strings.HasPrefix(mt, "multipart/") {
			writeError(w, Fault{Reason: "invalid", Message: "bqfake: multipart upload without a multipart body"})
			return
		}
		mr := multipart.NewReader(r.Body, params["boundary"])
		var job bq.Job
		var media []byte
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad multipart body: " + err.Error()})
				return
			}
			b, err := io.ReadAll(p)
			if err != nil {
				writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad multipart body: " + err.Error()})
				return
			}
			if i == 0 {
				if err := json.Unmarshal(b, &job); err != nil {
					writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad job metadata: " + err.Error()})
					return
				}
			} else {
				media = b
			}
		}
		s.finishInsert(w, project, &job, media)
	case "resumable":
		var job bq.Job
		if err := json.NewDecoder(r.Body).Decode(&job); err != nil {
			writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad job metadata: " + err.Error()})
			return
		}
		s.mu.Lock()
		s.nextID++
		id := strconv.FormatInt(int64(s.nextID), 36)
		s.sessions[id] = &session{project: project, job: job}
		s.mu.Unlock()
		w.Header().Set("Location", s.URL+"/upload/session/"+id)
		w.WriteHeader(http.StatusOK)
	default:
		writeError(w, Fault{Reason: "invalid", Message: "bqfake: unsupported uploadType " + r.URL.Query().Get("uploadType")})
	}
}

var reRange = regexp.MustCompile(`^bytes (\*|(\d+)-(\d+))/(\*|\d+)$`)

func (s *Server) uploadChunk(w http.ResponseWriter, r *http.Request, id string) {
	if f, ok := s.takeFault("upload.chunk"); ok {
		writeError(w, f)
		return
	}
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		writeError(w, Fault{Reason: "notFound", Message: "bqfake: no upload session " + id})
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, Fault{Code: 503, Reason: "backendError", Message: "bqfake: reading chunk: " + err.Error()})
		return
	}
	m := reRange.FindStringSubmatch(r.Header.Get("Content-Range"))
	if m == nil {
		writeError(w, Fault{Reason: "invalid", Message: "bqfake: bad Content-Range " + r.Header.Get("Content-Range")})
		return
	}
	if m[1] != "*" {
		off, _ := strconv.ParseInt(m[2], 10, 64)
		if off != int64(sess.data.Len()) {
			writeError(w, Fault{Reason: "invalid", Message: fmt.Sprintf("bqfake: chunk at %d, have %d bytes", off, sess.data.Len())})
			return
		}
		sess.data.Write(body)
	}
	if m[4] == "*" { // more to come
		w.Header().Set("X-Http-Status-Code-Override", "308")
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", sess.data.Len()-1))
		w.WriteHeader(http.StatusOK)
		return
	}
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
	s.finishInsert(w, sess.project, &sess.job, sess.data.Bytes())
}
