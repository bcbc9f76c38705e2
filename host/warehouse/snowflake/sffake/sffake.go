// Package sffake is a loopback fake of Snowflake's REST protocol as the gosnowflake v1
// driver speaks it, for tests: login (password and key-pair JWT, the signature checked
// against a configured public key), query-request (statements recorded in order with their
// bindings), abort-request, token-request, session delete, heartbeat and telemetry.
//
// It evaluates the statements a batch export issues — CREATE TABLE [IF NOT EXISTS], DROP
// TABLE, USE, PUT into table stages (answered with command UPLOAD and a LOCAL_FS stage, so
// the driver copies the file itself into the fake's directory), COPY INTO t(cols) FROM
// (SELECT $1:col ... FROM @%t/path) FILE_FORMAT=(TYPE=JSON|PARQUET) [FILES=(...)]
// [PURGE=TRUE] [FORCE=TRUE] with Snowflake's load metadata (a file already loaded into a
// table with the same checksum is skipped), REMOVE, LIST, SHOW TABLES and SELECT
// CURRENT_*() — and injects faults with Snowflake's error codes and JSON shapes. It never
// listens on anything but 127.0.0.1.
package sffake

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a fake account.
type Options struct {
	Account  string // default "TESTACCOUNT"
	User     string // default "SLUICE"
	Password string // password login (empty: refused)
	// PublicKey, when set, allows key-pair (SNOWFLAKE_JWT) login: the JWT's RS256 signature,
	// issuer fingerprint, subject and expiry are checked.
	PublicKey *rsa.PublicKey
	// Schemas that exist, as "DB.SCHEMA" (canonical, upper-case when unquoted).
	Schemas []string
	// Warehouses that exist (default: any); a session with an unknown one has none.
	Warehouses []string
	// Dir holds the stages (default: a temp dir removed by Close).
	Dir string
}

// Fault is an injected Snowflake error.
type Fault struct {
	Code     string // Snowflake code, e.g. "000608", "390100", "002003"
	SQLState string
	Message  string
	// HTTPStatus, when set, answers that HTTP status with an empty body instead.
	HTTPStatus int
	// Delay holds the answer back (an abort-request or the client going away ends it
	// early, with Snowflake's 000604 cancellation).
	Delay time.Duration
	// AfterRun runs the statement first and then answers the fault: the statement's effect
	// stays (rows loaded, load metadata recorded) but the client never sees its result, as
	// when a connection drops after Snowflake committed.
	AfterRun bool
}

// Common faults, with Snowflake's codes and messages.
var (
	WarehouseSuspended = Fault{Code: "000608", SQLState: "57P03", Message: "Warehouse 'WH' cannot be resumed because resource monitor 'RM' has exceeded its quota."}
	AuthFailure        = Fault{Code: "390100", SQLState: "08004", Message: "Incorrect username or password was specified."}
	ObjectNotFound     = Fault{Code: "002003", SQLState: "02000", Message: "SQL compilation error:\nTable 'EVENTS' does not exist or not authorized."}
	InvalidIdentifier  = Fault{Code: "000904", SQLState: "42000", Message: "SQL compilation error: error line 1 at position 7\ninvalid identifier 'X'"}
	JWTInvalid         = Fault{Code: "390144", SQLState: "08004", Message: "JWT token is invalid. [e2a7c4]"}
)

// Binding is one bind parameter of a statement.
type Binding struct {
	Type  string
	Value any
}

// Statement is one query-request received.
type Statement struct {
	SQL       string
	Bindings  []Binding
	RequestID string
	Session   int64
	Internal  bool
}

// Column is a table column.
type Column struct {
	Name string // canonical
	Type string // upper-case base type: VARCHAR, VARIANT, NUMBER, TIMESTAMP_NTZ...
}

// Table is an in-memory table: rows keyed by canonical column name. VARIANT values are
// decoded JSON (map[string]any, []any, string, json.Number, bool, nil); TIMESTAMP values
// are time.Time; NUMBER int64 or float64; VARCHAR string.
type Table struct {
	Database, Schema, Name string
	Columns                []Column
	Rows                   []map[string]any
	Comment                string
}

// LoadedFile is a staged file as a COPY read it.
type LoadedFile struct {
	Table string // DB.SCHEMA.TABLE
	Path  string // path in the table stage
	Bytes []byte
	MD5   string
	Rows  int
}

type session struct {
	id                                int64
	token, master                     string
	db, schema, warehouse, role, user string
	closed                            bool
}

type fault struct {
	match string // "login" or a lower-case substring of the statement
	n     int
	f     Fault
}

// Server is a running fake.
type Server struct {
	URL string // http://127.0.0.1:PORT

	opts   Options
	srv    *httptest.Server
	ownDir bool

	mu         sync.Mutex
	sessions   map[string]*session // by token
	masters    map[string]*session
	nextID     int64
	statements []Statement
	logins     []string // authenticator of each successful login
	aborts     []string
	heartbeats int
	telemetry  int
	deleted    int
	tables     map[string]*Table // DB.SCHEMA.TABLE
	loadMeta   map[string]map[string]string
	loaded     []LoadedFile
	faults     []*fault
	running    map[string]chan struct{} // request id -> abort signal
	schemas    map[string]bool
}

// New starts a fake on 127.0.0.1.
func New(o Options) *Server {
	if o.Account == "" {
		o.Account = "TESTACCOUNT"
	}
	if o.User == "" {
		o.User = "SLUICE"
	}
	s := &Server{opts: o, sessions: map[string]*session{}, masters: map[string]*session{},
		tables: map[string]*Table{}, loadMeta: map[string]map[string]string{},
		running: map[string]chan struct{}{}, schemas: map[string]bool{}, nextID: 1000}
	for _, sc := range o.Schemas {
		s.schemas[sc] = true
	}
	if s.opts.Dir == "" {
		d, err := os.MkdirTemp("", "sffake-")
		if err != nil {
			panic(err)
		}
		s.opts.Dir, s.ownDir = d, true
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("sffake: listen on 127.0.0.1: %v", err))
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.Start()
	s.URL = s.srv.URL
	return s
}

// Close stops the server and removes its own stage directory.
func (s *Server) Close() {
	s.mu.Lock()
	for _, ch := range s.running {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
	if s.ownDir {
		_ = os.RemoveAll(s.opts.Dir)
	}
}

// AddSchema makes DB.SCHEMA exist (canonical names).
func (s *Server) AddSchema(db, schema string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schemas[db+"."+schema] = true
}

// FailLogin makes the next n logins fail with f.
func (s *Server) FailLogin(n int, f Fault) { s.addFault("login", n, f) }

// FailStatement makes the next n statements containing substr (case-insensitive) fail with f.
func (s *Server) FailStatement(substr string, n int, f Fault) {
	s.addFault(strings.ToLower(substr), n, f)
}

func (s *Server) addFault(match string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{match: match, n: n, f: f})
}

func (s *Server) takeFault(match func(string) bool) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.n > 0 && match(f.match) {
			f.n--
			ff := f.f
			return &ff
		}
	}
	return nil
}

// Statements returns the query-requests received, in order.
func (s *Server) Statements() []Statement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Statement(nil), s.statements...)
}

// SQL returns the statements' texts, in order.
func (s *Server) SQL() []string {
	var out []string
	for _, st := range s.Statements() {
		out = append(out, st.SQL)
	}
	return out
}

// Logins returns the authenticator of each successful login (SNOWFLAKE, SNOWFLAKE_JWT).
func (s *Server) Logins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

// Aborts returns the request ids of the abort-requests received.
func (s *Server) Aborts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.aborts...)
}

// Table returns a copy of a table (DB, SCHEMA, TABLE canonical).
func (s *Server) Table(db, schema, name string) (*Table, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[db+"."+schema+"."+name]
	if !ok {
		return nil, false
	}
	c := *t
	c.Rows = append([]map[string]any(nil), t.Rows...)
	c.Columns = append([]Column(nil), t.Columns...)
	return &c, true
}

// Loaded returns the files COPY read, in order, with their bytes.
func (s *Server) Loaded() []LoadedFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LoadedFile(nil), s.loaded...)
}

// StagedFiles lists the files now in a table's stage (paths relative to the stage).
func (s *Server) StagedFiles(db, schema, table string) []string {
	root := s.stageDir(db, schema, table)
	var out []string
	_ = walkFiles(root, func(rel string) { out = append(out, rel) })
	sort.Strings(out)
	return out
}

// StagedFile reads a staged file.
func (s *Server) StagedFile(db, schema, table, path string) ([]byte, error) {
	return os.ReadFile(s.stageDir(db, schema, table) + "/" + path)
}

// ---- HTTP ----------------------------------------------------------------------------------

type response struct {
	Data    any     `json:"data"`
	Code    *string `json:"code"`
	Message *string `json:"message"`
	Success bool    `json:"success"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func ok(w http.ResponseWriter, data any) { writeJSON(w, response{Data: data, Success: true}) }

func fail(w http.ResponseWriter, f *Fault, queryID string) {
	if f.HTTPStatus != 0 {
		w.WriteHeader(f.HTTPStatus)
		return
	}
	code, msg := f.Code, f.Message
	data := map[string]any{"internalError": false, "errorCode": code, "age": 0, "sqlState": f.SQLState,
		"queryId": queryID, "line": -1, "pos": -1, "type": "COMPILATION"}
	writeJSON(w, response{Data: data, Code: &code, Message: &msg, Success: false})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	switch r.URL.Path {
	case "/session/v1/login-request":
		s.login(w, r, body)
	case "/queries/v1/query-request":
		s.query(w, r, body)
	case "/queries/v1/abort-request":
		s.abort(w, r, body)
	case "/session/token-request":
		s.renew(w, r, body)
	case "/session":
		if r.URL.Query().Get("delete") == "true" {
			if sess := s.auth(r); sess != nil {
				s.mu.Lock()
				sess.closed = true
				delete(s.sessions, sess.token)
				s.deleted++
				s.mu.Unlock()
			}
			ok(w, nil)
			return
		}
		http.NotFound(w, r)
	case "/session/heartbeat":
		s.mu.Lock()
		s.heartbeats++
		s.mu.Unlock()
		ok(w, nil)
	case "/telemetry/send":
		s.mu.Lock()
		s.telemetry++
		s.mu.Unlock()
		ok(w, nil)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) auth(r *http.Request) *session {
	h := r.Header.Get("Authorization")
	const p = `Snowflake Token="`
	if !strings.HasPrefix(h, p) || !strings.HasSuffix(h, `"`) {
		return nil
	}
	tok := h[len(p) : len(h)-1]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[tok]
}

func (s *Server) newToken(prefix string) string {
	s.nextID++
	return fmt.Sprintf("%s-%d-%d", prefix, s.nextID, time.Now().UnixNano())
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		Data struct {
			AccountName       string         `json:"ACCOUNT_NAME"`
			LoginName         string         `json:"LOGIN_NAME"`
			Password          string         `json:"PASSWORD"`
			Authenticator     string         `json:"AUTHENTICATOR"`
			Token             string         `json:"TOKEN"`
			SessionParameters map[string]any `json:"SESSION_PARAMETERS"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	if f := s.takeFault(func(m string) bool { return m == "login" }); f != nil {
		fail(w, f, "")
		return
	}
	d := req.Data
	authn := strings.ToUpper(d.Authenticator)
	if authn == "" {
		authn = "SNOWFLAKE"
	}
	switch authn {
	case "SNOWFLAKE_JWT":
		if err := s.checkJWT(d.Token); err != nil {
			f := JWTInvalid
			f.Message = "JWT token is invalid. [" + err.Error() + "]"
			fail(w, &f, "")
			return
		}
	case "SNOWFLAKE":
		if s.opts.Password == "" || !strings.EqualFold(d.LoginName, s.opts.User) || d.Password != s.opts.Password {
			f := AuthFailure
			fail(w, &f, "")
			return
		}
	default:
		f := Fault{Code: "390100", SQLState: "08004", Message: "Unsupported authenticator " + authn}
		fail(w, &f, "")
		return
	}
	q := r.URL.Query()
	canon := func(v string) string {
		if strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`) && len(v) >= 2 {
			return strings.ReplaceAll(v[1:len(v)-1], `""`, `"`)
		}
		return strings.ToUpper(v)
	}
	s.mu.Lock()
	sess := &session{user: strings.ToUpper(s.opts.User), token: "", master: ""}
	s.nextID++
	sess.id = s.nextID
	sess.token = s.newToken("st")
	sess.master = s.newToken("mt")
	if db := q.Get("databaseName"); db != "" {
		sess.db = canon(db)
	}
	if sc := q.Get("schemaName"); sc != "" {
		sess.schema = canon(sc)
	}
	if wh := q.Get("warehouse"); wh != "" {
		sess.warehouse = canon(wh)
		if len(s.opts.Warehouses) > 0 {
			found := false
			for _, x := range s.opts.Warehouses {
				found = found || strings.EqualFold(x, sess.warehouse)
			}
			if !found {
				sess.warehouse = ""
			}
		}
	}
	if role := q.Get("roleName"); role != "" {
		sess.role = canon(role)
	} else {
		sess.role = "PUBLIC"
	}
	s.sessions[sess.token] = sess
	s.masters[sess.master] = sess
	s.logins = append(s.logins, authn)
	info := map[string]any{"databaseName": nullable(s.dbIfExists(sess)), "schemaName": nullable(s.schemaIfExists(sess)),
		"warehouseName": nullable(sess.warehouse), "roleName": sess.role}
	s.mu.Unlock()
	ok(w, map[string]any{
		"token": sess.token, "validityInSeconds": 3600, "masterToken": sess.master,
		"masterValidityInSeconds": 14400, "displayUserName": sess.user, "serverVersion": "9.0.0-sffake",
		"firstLogin": false, "healthCheckInterval": 45, "sessionId": sess.id,
		"parameters": []map[string]any{{"name": "CLIENT_SESSION_KEEP_ALIVE_HEARTBEAT_FREQUENCY", "value": 3600},
			{"name": "TIMEZONE", "value": "UTC"}},
		"sessionInfo": info,
	})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) dbIfExists(sess *session) string {
	for k := range s.schemas {
		if strings.HasPrefix(k, sess.db+".") {
			return sess.db
		}
	}
	return ""
}

func (s *Server) schemaIfExists(sess *session) string {
	if s.schemas[sess.db+"."+sess.schema] {
		return sess.schema
	}
	return ""
}

// checkJWT verifies a key-pair login token: RS256 over header.payload with the configured
// public key, iss ACCOUNT.USER.SHA256:fingerprint, sub ACCOUNT.USER, exp in the future.
func (s *Server) checkJWT(tok string) error {
	if s.opts.PublicKey == nil {
		return errors.New("no public key registered for the user")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("malformed token")
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return errors.New("malformed token encoding")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &hdr) != nil || hdr.Alg != "RS256" {
		return errors.New("unsupported algorithm")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.opts.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return errors.New("signature verification failed")
	}
	var claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
		Iat int64  `json:"iat"`
	}
	if err := json.Unmarshal(pb, &claims); err != nil {
		return errors.New("bad claims")
	}
	der, err := x509.MarshalPKIXPublicKey(s.opts.PublicKey)
	if err != nil {
		return err
	}
	fp := sha256.Sum256(der)
	acct := strings.ToUpper(strings.SplitN(s.opts.Account, ".", 2)[0])
	user := strings.ToUpper(s.opts.User)
	if claims.Sub != acct+"."+user {
		return fmt.Errorf("subject %q does not match", claims.Sub)
	}
	if claims.Iss != acct+"."+user+".SHA256:"+base64.StdEncoding.EncodeToString(fp[:]) {
		return errors.New("issuer fingerprint does not match the registered public key")
	}
	if claims.Exp < time.Now().Unix() {
		return errors.New("token expired")
	}
	return nil
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request, body []byte) {
	h := r.Header.Get("Authorization")
	const p = `Snowflake Token="`
	tok := strings.TrimSuffix(strings.TrimPrefix(h, p), `"`)
	s.mu.Lock()
	sess := s.masters[tok]
	if sess == nil {
		s.mu.Unlock()
		f := Fault{Code: "390114", SQLState: "08001", Message: "Authentication token has expired.  The user must authenticate again."}
		fail(w, &f, "")
		return
	}
	delete(s.sessions, sess.token)
	sess.token = s.newToken("st")
	s.sessions[sess.token] = sess
	s.mu.Unlock()
	ok(w, map[string]any{"sessionToken": sess.token, "validityInSecondsST": 3600, "masterToken": sess.master,
		"validityInSecondsMT": 14400, "sessionId": sess.id})
}

func (s *Server) abort(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(body, &req)
	s.mu.Lock()
	s.aborts = append(s.aborts, req.RequestID)
	if ch, ok := s.running[req.RequestID]; ok {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	s.mu.Unlock()
	ok(w, nil)
}

func (s *Server) query(w http.ResponseWriter, r *http.Request, body []byte) {
	sess := s.auth(r)
	if sess == nil {
		f := Fault{Code: "390112", SQLState: "08001", Message: "Your session has expired. Please login again."}
		fail(w, &f, "")
		return
	}
	var req struct {
		SQLText    string `json:"sqlText"`
		IsInternal bool   `json:"isInternal"`
		Bindings   map[string]struct {
			Type  string `json:"type"`
			Value any    `json:"value"`
		} `json:"bindings"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	reqID := r.URL.Query().Get("requestId")
	st := Statement{SQL: req.SQLText, RequestID: reqID, Session: sess.id, Internal: req.IsInternal}
	keys := make([]string, 0, len(req.Bindings))
	for k := range req.Bindings {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, _ := strconv.Atoi(keys[i])
		b, _ := strconv.Atoi(keys[j])
		return a < b
	})
	for _, k := range keys {
		b := req.Bindings[k]
		st.Bindings = append(st.Bindings, Binding{Type: b.Type, Value: b.Value})
	}
	abortCh := make(chan struct{})
	s.mu.Lock()
	s.statements = append(s.statements, st)
	s.running[reqID] = abortCh
	s.nextID++
	queryID := fmt.Sprintf("01b0-%04d-0000-sffake", s.nextID)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, reqID)
		s.mu.Unlock()
	}()
	lower := strings.ToLower(req.SQLText)
	if f := s.takeFault(func(m string) bool { return m != "login" && strings.Contains(lower, m) }); f != nil {
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-abortCh:
				fail(w, &Fault{Code: "000604", SQLState: "57014", Message: "SQL execution canceled"}, queryID)
				return
			case <-r.Context().Done():
				return
			}
			if f.Code == "" && f.HTTPStatus == 0 {
				goto run
			}
		}
		if f.AfterRun {
			_, _ = s.exec(sess, req.SQLText, st.Bindings)
		}
		fail(w, f, queryID)
		return
	}
run:
	res, f := s.exec(sess, req.SQLText, st.Bindings)
	if f != nil {
		fail(w, f, queryID)
		return
	}
	res.QueryID = queryID
	ok(w, res.data())
}

// result is what a statement answers.
type result struct {
	QueryID  string
	Columns  []Column
	Rows     [][]*string
	StmtType int64
	Upload   map[string]any // PUT: the file-transfer fields
	Session  *session
}

func (r *result) data() map[string]any {
	rt := make([]map[string]any, 0, len(r.Columns))
	for _, c := range r.Columns {
		t := "text"
		if c.Type == "NUMBER" {
			t = "fixed"
		}
		rt = append(rt, map[string]any{"name": c.Name, "type": t, "nullable": true, "length": 16777216,
			"byteLength": 16777216, "precision": 38, "scale": 0})
	}
	rows := r.Rows
	if rows == nil {
		rows = [][]*string{}
	}
	d := map[string]any{"parameters": []any{}, "rowtype": rt, "rowset": rows, "total": len(rows),
		"returned": len(rows), "queryId": r.QueryID, "queryResultFormat": "json",
		"statementTypeId": r.StmtType, "version": 1}
	if r.Session != nil {
		d["finalDatabaseName"] = nullable(r.Session.db)
		d["finalSchemaName"] = nullable(r.Session.schema)
		d["finalWarehouseName"] = nullable(r.Session.warehouse)
		d["finalRoleName"] = nullable(r.Session.role)
	}
	for k, v := range r.Upload {
		d[k] = v
	}
	return d
}

func str(s string) *string { return &s }
