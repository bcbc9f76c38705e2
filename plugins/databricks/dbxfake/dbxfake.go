// Package dbxfake is a loopback fake of the Databricks REST APIs a batch export uses, for
// tests: the OAuth machine-to-machine token endpoint (/oidc/v1/token, client credentials in
// the form body or HTTP Basic), personal access tokens, the Files API on Unity Catalog
// volumes (PUT/GET/DELETE /api/2.0/fs/files/..., PUT/GET/DELETE /api/2.0/fs/directories/...)
// and the SQL Statement Execution API (POST /api/2.0/sql/statements, GET .../{id}, POST
// .../{id}/cancel), with Databricks' error shapes: {"error_code", "message"} for HTTP errors
// and status.state FAILED with status.error for statements.
//
// It parses the statements a Databricks export issues (sql.go) — CREATE VOLUME, CREATE
// TABLE [IF NOT EXISTS], DROP TABLE [IF EXISTS], COPY INTO ... FROM '<volume path>'
// FILEFORMAT = PARQUET (with COPY's load metadata: a file already loaded into a table is
// skipped), MERGE [WITH SCHEMA EVOLUTION] INTO ... USING (SELECT ...) ON t.uuid = s.uuid
// WHEN NOT MATCHED THEN INSERT, DELETE FROM, SELECT COUNT(*) FROM and SELECT 1 — and refuses
// anything else with a Databricks-shaped error. COPY INTO reads the Parquet files into an
// in-memory table (load.go), so a test reads the rows back. Faults are injected by request
// or statement (Inject), and statements can stay RUNNING for some polls (Options.Polls).
// It never listens on anything but 127.0.0.1.
package dbxfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Options configure the fake workspace.
type Options struct {
	// Token is the personal access token accepted as "Authorization: Bearer <Token>".
	Token string
	// ClientID and ClientSecret are the OAuth service principal accepted by /oidc/v1/token.
	ClientID, ClientSecret string
	// Warehouses that exist (default: any id).
	Warehouses []string
	// Polls is how many GETs a statement answers RUNNING before it runs (0: it runs when
	// posted and the POST answers SUCCEEDED or FAILED).
	Polls int
}

// Fault is an injected failure. A request matches when every non-empty selector matches.
type Fault struct {
	Method     string // "PUT", "POST", ...
	PathPrefix string // e.g. "/api/2.0/fs/files/"
	SQLPrefix  string // statements only: the statement's text starts with it (case-insensitive)
	Skip       int    // let this many matching requests through first
	Times      int    // how many matching requests fail (0: 1)

	// Status answers this HTTP status with {"error_code": Code, "message": Message}.
	Status int
	// Failed (statements): the statement ends FAILED with status.error {Code, Message}.
	Failed        bool
	Code, Message string
	// AfterRun handles the request first (files stored, the statement's effect kept) and
	// then answers the fault, as when the connection drops after Databricks committed.
	AfterRun bool
}

// Common faults with Databricks' codes.
var (
	Unavailable   = Fault{Status: http.StatusServiceUnavailable, Code: "TEMPORARILY_UNAVAILABLE", Message: "The service at /api/2.0/sql/statements is temporarily unavailable. Please try again later."}
	TableNotFound = Fault{Failed: true, Code: "BAD_REQUEST", Message: "[TABLE_OR_VIEW_NOT_FOUND] The table or view cannot be found. SQLSTATE: 42P01"}
)

// Table is an in-memory table: its columns (name, Databricks type) and rows by column
// name (STRING string, BIGINT int64, TIMESTAMP time.Time, VARIANT the decoded JSON value
// with json.Number numbers, NULL nil).
type Table struct {
	Name    string
	Columns []Column
	Rows    []map[string]any
	loaded  map[string]bool // COPY INTO load metadata: volume paths already loaded
}

// Column is a table column.
type Column struct{ Name, Type string }

// Fake is a running fake workspace.
type Fake struct {
	URL string // http://127.0.0.1:PORT, the "server hostname" for tests

	opts     Options
	srv      *httptest.Server
	mu       sync.Mutex
	tokens   map[string]bool
	volumes  map[string]bool // "catalog.schema.volume"
	files    map[string][]byte
	dirs     map[string]bool
	tables   map[string]*Table // "catalog.schema.table", lower-case
	stmts    map[string]*statement
	sql      []string
	requests int
	faults   []*Fault
	bodies   []string // every request's headers and body text, for secret checks
	seq      int
}

type statement struct {
	id, sql   string
	state     string
	polls     int
	result    *result
	errCode   string
	errMsg    string
	afterRun  *Fault
	cancelled bool
}

type result struct {
	cols []string
	rows [][]string
}

// New starts a fake on a loopback port.
func New(opts Options) *Fake {
	f := &Fake{opts: opts, tokens: map[string]bool{}, volumes: map[string]bool{}, files: map[string][]byte{},
		dirs: map[string]bool{}, tables: map[string]*Table{}, stmts: map[string]*statement{}}
	if opts.Token != "" {
		f.tokens[opts.Token] = true
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("dbxfake: listen: %v", err))
	}
	f.srv.Listener.Close()
	f.srv.Listener = l
	f.srv.Start()
	f.URL = f.srv.URL
	return f
}

// Close stops the fake.
func (f *Fake) Close() { f.srv.Close() }

// Inject adds a fault.
func (f *Fake) Inject(ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ft.Times == 0 {
		ft.Times = 1
	}
	f.faults = append(f.faults, &ft)
}

// Table returns a copy of a table (names case-insensitive).
func (f *Fake) Table(catalog, schema, name string) (Table, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tables[key(catalog, schema, name)]
	if !ok {
		return Table{}, false
	}
	c := Table{Name: t.Name, Columns: append([]Column(nil), t.Columns...), Rows: make([]map[string]any, len(t.Rows))}
	for i, r := range t.Rows {
		c.Rows[i] = map[string]any{}
		for k, v := range r {
			c.Rows[i][k] = v
		}
	}
	return c, true
}

// Tables lists the tables, "catalog.schema.table".
func (f *Fake) Tables() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.tables {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Files lists the volume paths of the stored files; Dirs the directories.
func (f *Fake) Files() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedKeys(f.files)
}

// Dirs lists the directories the fake holds below the volumes.
func (f *Fake) Dirs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedKeys(f.dirs)
}

// SQL lists every statement posted, in order.
func (f *Fake) SQL() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sql...)
}

// Requests is the number of requests served.
func (f *Fake) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// Seen is every request's headers and body as text (Parquet bodies excepted), for a test
// that checks which secrets went where.
func (f *Fake) Seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func key(parts ...string) string {
	for i, p := range parts {
		parts[i] = strings.ToLower(p)
	}
	return strings.Join(parts, ".")
}

// apiErr writes Databricks' error envelope.
func apiErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error_code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// faultFor finds and consumes the fault matching a request. Called with f.mu held.
func (f *Fake) faultFor(method, path, sql string) *Fault {
	for _, ft := range f.faults {
		if ft.Times <= 0 || (ft.Method != "" && ft.Method != method) || !strings.HasPrefix(path, ft.PathPrefix) ||
			(ft.SQLPrefix != "" && !strings.HasPrefix(strings.ToUpper(sql), strings.ToUpper(ft.SQLPrefix))) {
			continue
		}
		if ft.Skip > 0 {
			ft.Skip--
			return nil
		}
		ft.Times--
		return ft
	}
	return nil
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		apiErr(w, http.StatusBadRequest, "BAD_REQUEST", "unreadable body")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	seen := r.Method + " " + r.URL.String() + " Authorization=" + r.Header.Get("Authorization")
	if !strings.HasPrefix(r.URL.Path, "/api/2.0/fs/files/") {
		seen += " " + string(body)
	}
	f.bodies = append(f.bodies, seen)

	if r.URL.Path == "/oidc/v1/token" {
		f.token(w, r, body)
		return
	}
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !f.tokens[auth] {
		apiErr(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Invalid access token.")
		return
	}
	sql := ""
	if r.Method == http.MethodPost && r.URL.Path == "/api/2.0/sql/statements" {
		var req struct {
			Statement string `json:"statement"`
		}
		_ = json.Unmarshal(body, &req)
		sql = req.Statement
	}
	ft := f.faultFor(r.Method, r.URL.Path, sql)
	switch {
	case ft == nil || ft.Failed:
		f.route(w, r, body, ft)
	case ft.AfterRun:
		// Handle the request (a statement runs to its end at once), drop its answer, send
		// the fault.
		f.route(httptest.NewRecorder(), r, body, ft)
		apiErr(w, ft.Status, ft.Code, ft.Message)
	default:
		apiErr(w, ft.Status, ft.Code, ft.Message)
	}
}

func (f *Fake) route(w http.ResponseWriter, r *http.Request, body []byte, ft *Fault) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/api/2.0/fs/files/"):
		f.filesAPI(w, r, "/"+strings.TrimPrefix(p, "/api/2.0/fs/files/"), body)
	case strings.HasPrefix(p, "/api/2.0/fs/directories/"):
		f.dirsAPI(w, r, "/"+strings.TrimSuffix(strings.TrimPrefix(p, "/api/2.0/fs/directories/"), "/"))
	case p == "/api/2.0/sql/statements" && r.Method == http.MethodPost:
		f.postStatement(w, body, ft)
	case strings.HasPrefix(p, "/api/2.0/sql/statements/"):
		id, cancel := strings.CutSuffix(strings.TrimPrefix(p, "/api/2.0/sql/statements/"), "/cancel")
		f.statementStatus(w, r, id, cancel)
	default:
		apiErr(w, http.StatusNotFound, "ENDPOINT_NOT_FOUND", "No API found for '"+r.Method+" "+p+"'")
	}
}

// token is the OAuth client-credentials grant: the client in HTTP Basic
// (client_secret_basic) or the form (client_secret_post).
func (f *Fake) token(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	if r.Method != http.MethodPost || err != nil || form.Get("grant_type") != "client_credentials" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "grant_type must be client_credentials"})
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if f.opts.ClientID == "" || id != f.opts.ClientID || secret != f.opts.ClientSecret {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": "Client authentication failed"})
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "dapi-oauth-" + hex.EncodeToString(b)
	f.tokens[tok] = true
	writeJSON(w, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600, "scope": "all-apis"})
}

// volumeOf is the "catalog.schema.volume" of a /Volumes/c/s/v/... path.
func volumeOf(path string) (string, bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) < 4 || parts[0] != "Volumes" {
		return "", false
	}
	return key(parts[1], parts[2], parts[3]), true
}

func (f *Fake) filesAPI(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	vol, ok := volumeOf(path)
	if !ok || len(strings.Split(strings.TrimPrefix(path, "/"), "/")) < 5 {
		apiErr(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "The file path "+path+" is not a file in a volume (/Volumes/<catalog>/<schema>/<volume>/<path>)")
		return
	}
	if !f.volumes[vol] {
		apiErr(w, http.StatusNotFound, "NOT_FOUND", "Volume '"+vol+"' does not exist.")
		return
	}
	switch r.Method {
	case http.MethodPut:
		if _, exists := f.files[path]; exists && r.URL.Query().Get("overwrite") != "true" {
			apiErr(w, http.StatusConflict, "ALREADY_EXISTS", "The file being created already exists.")
			return
		}
		f.files[path] = append([]byte(nil), body...)
		for d := parentDir(path); strings.Count(d, "/") > 4; d = parentDir(d) {
			f.dirs[d] = true
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		b, ok := f.files[path]
		if !ok {
			apiErr(w, http.StatusNotFound, "NOT_FOUND", "The file "+path+" does not exist.")
			return
		}
		_, _ = w.Write(b)
	case http.MethodDelete:
		if _, ok := f.files[path]; !ok {
			apiErr(w, http.StatusNotFound, "NOT_FOUND", "The file "+path+" does not exist.")
			return
		}
		delete(f.files, path)
		w.WriteHeader(http.StatusNoContent)
	default:
		apiErr(w, http.StatusMethodNotAllowed, "BAD_REQUEST", "method "+r.Method+" is not supported on files")
	}
}

func parentDir(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func (f *Fake) dirsAPI(w http.ResponseWriter, r *http.Request, path string) {
	vol, ok := volumeOf(path)
	if !ok {
		apiErr(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "The directory path "+path+" is not in a volume")
		return
	}
	if !f.volumes[vol] {
		apiErr(w, http.StatusNotFound, "NOT_FOUND", "Volume '"+vol+"' does not exist.")
		return
	}
	root := strings.Count(path, "/") == 4 // /Volumes/c/s/v
	switch r.Method {
	case http.MethodPut:
		for d := path; strings.Count(d, "/") > 4; d = parentDir(d) {
			f.dirs[d] = true
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		if !root && !f.dirs[path] {
			apiErr(w, http.StatusNotFound, "NOT_FOUND", "The directory "+path+" does not exist.")
			return
		}
		var contents []map[string]any
		for _, d := range sortedKeys(f.dirs) {
			if parentDir(d) == path {
				contents = append(contents, map[string]any{"path": d, "is_directory": true, "name": d[len(path)+1:]})
			}
		}
		for _, p := range sortedKeys(f.files) {
			if parentDir(p) == path {
				contents = append(contents, map[string]any{"path": p, "is_directory": false, "file_size": len(f.files[p]), "name": p[len(path)+1:]})
			}
		}
		writeJSON(w, map[string]any{"contents": contents})
	case http.MethodDelete:
		if root || !f.dirs[path] {
			apiErr(w, http.StatusNotFound, "NOT_FOUND", "The directory "+path+" does not exist.")
			return
		}
		for _, p := range append(sortedKeys(f.files), sortedKeys(f.dirs)...) {
			if strings.HasPrefix(p, path+"/") {
				apiErr(w, http.StatusBadRequest, "DIRECTORY_NOT_EMPTY", "The directory "+path+" is not empty.")
				return
			}
		}
		delete(f.dirs, path)
		w.WriteHeader(http.StatusNoContent)
	default:
		apiErr(w, http.StatusMethodNotAllowed, "BAD_REQUEST", "method "+r.Method+" is not supported on directories")
	}
}

func (f *Fake) postStatement(w http.ResponseWriter, body []byte, ft *Fault) {
	var req struct {
		WarehouseID string `json:"warehouse_id"`
		Statement   string `json:"statement"`
		WaitTimeout string `json:"wait_timeout"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Statement == "" {
		apiErr(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "statement is required")
		return
	}
	if wt := req.WaitTimeout; wt != "" {
		secs, err := strconv.Atoi(strings.TrimSuffix(wt, "s"))
		if !strings.HasSuffix(wt, "s") || err != nil || (secs != 0 && (secs < 5 || secs > 50)) {
			apiErr(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "wait_timeout must be 0s or from 5s to 50s, got "+wt)
			return
		}
	}
	if req.WarehouseID == "" || (len(f.opts.Warehouses) > 0 && !contains(f.opts.Warehouses, req.WarehouseID)) {
		apiErr(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "Warehouse "+req.WarehouseID+" does not exist")
		return
	}
	f.seq++
	st := &statement{id: fmt.Sprintf("01ef%012x-0000-0000-0000-%012x", f.seq, f.seq), sql: req.Statement, state: "RUNNING", polls: f.opts.Polls}
	f.stmts[st.id] = st
	f.sql = append(f.sql, req.Statement)
	if ft != nil && ft.Failed {
		st.afterRun = ft
	}
	if ft != nil && ft.AfterRun {
		st.polls = 0
	}
	if st.polls == 0 {
		f.finish(st)
	}
	writeJSON(w, st.response())
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// finish runs a statement (unless a fault fails it first).
func (f *Fake) finish(st *statement) {
	ft := st.afterRun
	if ft != nil && !ft.AfterRun {
		st.state, st.errCode, st.errMsg = "FAILED", ft.Code, ft.Message
		return
	}
	res, err := f.exec(st.sql)
	switch {
	case ft != nil:
		st.state, st.errCode, st.errMsg = "FAILED", ft.Code, ft.Message
	case err != nil:
		st.state, st.errCode, st.errMsg = "FAILED", err.code, err.msg
	default:
		st.state, st.result = "SUCCEEDED", res
	}
}

func (st *statement) response() map[string]any {
	out := map[string]any{"statement_id": st.id}
	status := map[string]any{"state": st.state}
	if st.state == "FAILED" {
		status["error"] = map[string]any{"error_code": st.errCode, "message": st.errMsg}
	}
	out["status"] = status
	if st.state == "SUCCEEDED" && st.result != nil {
		cols := make([]map[string]any, len(st.result.cols))
		for i, c := range st.result.cols {
			cols[i] = map[string]any{"name": c, "position": i}
		}
		out["manifest"] = map[string]any{"format": "JSON_ARRAY", "schema": map[string]any{"column_count": len(cols), "columns": cols},
			"total_row_count": len(st.result.rows)}
		out["result"] = map[string]any{"chunk_index": 0, "row_offset": 0, "row_count": len(st.result.rows), "data_array": st.result.rows}
	}
	return out
}

func (f *Fake) statementStatus(w http.ResponseWriter, r *http.Request, id string, cancel bool) {
	st, ok := f.stmts[id]
	if !ok {
		apiErr(w, http.StatusNotFound, "NOT_FOUND", "The statement "+id+" does not exist.")
		return
	}
	switch {
	case cancel && r.Method == http.MethodPost:
		if st.state == "RUNNING" || st.state == "PENDING" {
			st.state, st.cancelled = "CANCELED", true
		}
		writeJSON(w, map[string]any{})
		return
	case r.Method != http.MethodGet:
		apiErr(w, http.StatusMethodNotAllowed, "BAD_REQUEST", "method "+r.Method+" is not supported")
		return
	}
	if st.state == "RUNNING" {
		st.polls--
		if st.polls <= 0 {
			f.finish(st)
		}
	}
	writeJSON(w, st.response())
}
