// Package snowflake is the host side of Sluice's `snowflake` capability (abi/SPEC.md,
// docs/snowflake.md): a Snowflake session pool bound to ONE account, database, schema,
// warehouse and role, with the export's password or key pair, that serves the plugin's
// `call("snowflake", ...)` operations (Capability.Call) and the `snowflake_stage` upload
// sink (Capability.Sink), which PUTs host-encoded files into table stages.
//
// The statements the plugin may run are checked by a policy (checkStatement): an allowlist
// of kinds, and every table, table stage and USE target in the bound database and schema.
// The plugin never sees a credential. The driver (gosnowflake v1) is confined to driver.go.
package snowflake

import (
	"context"
	"crypto/rsa"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
)

// Authentication types.
const (
	AuthPassword = "password"
	AuthKeyPair  = "keypair"
)

// Config binds a Capability to one account, database, schema, warehouse and role.
type Config struct {
	Account   string // account identifier (orgname-account, or locator[.region])
	User      string
	Database  string
	Schema    string
	Warehouse string // optional: the user's default otherwise
	Role      string // optional: the user's default otherwise

	// AuthType is AuthPassword (default) or AuthKeyPair.
	AuthType string
	Password string // secret
	// PrivateKeyPEM is an RSA private key, PKCS#8 ("PRIVATE KEY", or "ENCRYPTED PRIVATE
	// KEY" with PrivateKeyPassphrase) or PKCS#1 ("RSA PRIVATE KEY"). Secret.
	PrivateKeyPEM        []byte
	PrivateKeyPassphrase string // secret

	// QueryTimeout bounds each statement (and is set as the session's
	// STATEMENT_TIMEOUT_IN_SECONDS). 0: one hour.
	QueryTimeout time.Duration
	// LoginTimeout bounds login retries (0: 60 s).
	LoginTimeout time.Duration
	// RequestTimeout bounds the driver's retries of one request (0: none but MaxRetryCount).
	RequestTimeout time.Duration
	// MaxRetryCount is the driver's HTTP retries per request (0: the driver's 7).
	MaxRetryCount int

	// Endpoint, when set, points the driver at a Snowflake-compatible endpoint instead of
	// https://{account}.snowflakecomputing.com: "http://127.0.0.1:PORT" for the sffake
	// loopback fake.
	Endpoint string
	// DisableOCSPChecks turns the driver's certificate revocation checks off (tests).
	DisableOCSPChecks bool

	// TempDir holds the files being staged (default os.TempDir()).
	TempDir string
	// MaxStageFileBytes caps one staged file (0: 5 GiB).
	MaxStageFileBytes int64
	// MaxRows caps the rows an execute answer returns (0: 1000).
	MaxRows int
}

var (
	accountRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)
)

// checkName validates a bound object name (database, schema, warehouse, role, user).
func checkName(what, s string, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("snowflake: no %s bound", what)
		}
		return nil
	}
	if len(s) > 255 || strings.ContainsAny(s, "\"\x00\n\r") {
		return fmt.Errorf("snowflake: invalid %s %q", what, truncate(s, 64))
	}
	return nil
}

// Capability is the snowflake capability of one export.
type Capability struct {
	cfg Config
	db  *sql.DB
}

// New builds a Capability. It does no I/O (the first operation logs in). A key-pair
// config whose private key cannot be read fails here with a fatal_io *Error.
func New(ctx context.Context, cfg Config) (*Capability, error) {
	if !accountRE.MatchString(cfg.Account) {
		return nil, fmt.Errorf("snowflake: invalid account %q", truncate(cfg.Account, 64))
	}
	for _, n := range []struct {
		what, v string
		req     bool
	}{{"user", cfg.User, true}, {"database", cfg.Database, true}, {"schema", cfg.Schema, true},
		{"warehouse", cfg.Warehouse, false}, {"role", cfg.Role, false}} {
		if err := checkName(n.what, n.v, n.req); err != nil {
			return nil, err
		}
	}
	var key *rsa.PrivateKey
	switch cfg.AuthType {
	case "", AuthPassword:
		cfg.AuthType = AuthPassword
		if cfg.Password == "" {
			return nil, &Error{Status: abi.StatusFatalIO, Code: "missing_password", Msg: "snowflake: password authentication needs a password"}
		}
	case AuthKeyPair:
		var err error
		if key, err = ParsePrivateKey(cfg.PrivateKeyPEM, cfg.PrivateKeyPassphrase); err != nil {
			return nil, &Error{Status: abi.StatusFatalIO, Code: "invalid_private_key", Msg: "snowflake: " + err.Error(), Err: err}
		}
	default:
		return nil, fmt.Errorf("snowflake: unknown authentication type %q (want password or keypair)", cfg.AuthType)
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = time.Hour
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = time.Minute
	}
	if cfg.MaxStageFileBytes <= 0 {
		cfg.MaxStageFileBytes = 5 << 30
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 1000
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	// The driver's first login probes cloud metadata endpoints (169.254.169.254,
	// metadata.google.internal) for its telemetry unless this is set: a host never wants it.
	if os.Getenv("SNOWFLAKE_DISABLE_PLATFORM_DETECTION") == "" {
		_ = os.Setenv("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
	}
	db, err := openDB(&cfg, key)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(10 * time.Minute)
	return &Capability{cfg: cfg, db: db}, nil
}

// Close ends the sessions (the driver deletes each one).
func (c *Capability) Close() error { return c.db.Close() }

// DB is the underlying pool (tests).
func (c *Capability) DB() *sql.DB { return c.db }

// Call serves one `call("snowflake", request)` operation: a JSON object {"op": ...}.
func (c *Capability) Call(ctx context.Context, req []byte) ([]byte, error) {
	var head struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(req, &head); err != nil {
		return nil, badArg("snowflake: request is not a JSON object: %v", err)
	}
	var (
		out any
		err error
	)
	switch head.Op {
	case "execute", "query": // "query": the name docs/capabilities.md planned
		var r ExecuteRequest
		if err = decode(req, &r); err == nil {
			out, err = c.Execute(ctx, r)
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
		return nil, errorf(abi.StatusUnimplemented, "snowflake: unknown operation %q", truncate(head.Op, 64))
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

func decode(req []byte, v any) error {
	if err := json.Unmarshal(req, v); err != nil {
		return badArg("snowflake: invalid request: %v", err)
	}
	return nil
}

// ---- execute -------------------------------------------------------------------------------

// ExecuteRequest is the execute operation.
type ExecuteRequest struct {
	SQL string `json:"sql"`
	// Params are positional bind parameters (? or :1, :2...): JSON scalars.
	Params []any `json:"params,omitempty"`
}

// ExecuteResult answers execute.
type ExecuteResult struct {
	QueryID string   `json:"query_id,omitempty"`
	Kind    string   `json:"kind"`
	Columns []string `json:"columns,omitempty"`
	Rows    [][]any  `json:"rows,omitempty"`
	// Truncated is true when more rows than MaxRows came back.
	Truncated bool `json:"truncated,omitempty"`
	// RowsAffected sums "number of rows inserted/updated/deleted" (MERGE, INSERT).
	RowsAffected int64 `json:"rows_affected"`
	// RowsLoaded and Files summarise a COPY INTO.
	RowsLoaded int64      `json:"rows_loaded,omitempty"`
	Files      []CopyFile `json:"files,omitempty"`
}

// CopyFile is one file of a COPY INTO result.
type CopyFile struct {
	File       string `json:"file"`
	Status     string `json:"status"` // LOADED, LOAD_FAILED, PARTIALLY_LOADED
	RowsParsed int64  `json:"rows_parsed"`
	RowsLoaded int64  `json:"rows_loaded"`
	ErrorsSeen int64  `json:"errors_seen,omitempty"`
	FirstError string `json:"first_error,omitempty"`
}

// Execute runs one statement allowed by the policy (see checkStatement).
func (c *Capability) Execute(ctx context.Context, r ExecuteRequest) (*ExecuteResult, error) {
	chk, err := c.checkStatement(r.SQL)
	if err != nil {
		return nil, err
	}
	args := make([]any, 0, len(r.Params))
	for i, v := range r.Params {
		switch x := v.(type) {
		case string, bool, nil:
			args = append(args, x)
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
				args = append(args, int64(x))
			} else {
				args = append(args, x)
			}
		default:
			return nil, badArg("snowflake: parameter %d: only scalar values", i+1)
		}
	}
	res, err := c.query(ctx, r.SQL, args)
	if err != nil {
		return nil, mapError("execute", err)
	}
	res.Kind = chk.kind
	return res, nil
}

// query runs a statement with the query timeout and reads its result.
func (c *Capability) query(ctx context.Context, q string, args []any) (*ExecuteResult, error) {
	qctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	rows, err := c.db.QueryContext(qctx, q, args...)
	if err != nil {
		return nil, ctxErr(ctx, qctx, err)
	}
	defer rows.Close()
	res := &ExecuteResult{}
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	res.Columns = cols
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, len(cols))
		for i, v := range vals {
			row[i] = jsonValue(v)
		}
		res.summarise(cols, row)
		if len(res.Rows) < c.cfg.MaxRows {
			res.Rows = append(res.Rows, row)
		} else {
			res.Truncated = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, ctxErr(ctx, qctx, err)
	}
	return res, nil
}

// ctxErr reports a query timeout as Snowflake's statement timeout (retryable) rather than
// as the caller's cancellation.
func ctxErr(parent, qctx context.Context, err error) error {
	if parent.Err() == nil && errors.Is(qctx.Err(), context.DeadlineExceeded) {
		return &Error{Status: abi.StatusRetryableIO, Code: codeString(CodeStatementTimeout),
			Msg: "statement reached the capability's query timeout and was aborted", Err: err}
	}
	return err
}

func jsonValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		return x
	}
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// summarise accumulates the counts Snowflake reports in DML and COPY results.
func (res *ExecuteResult) summarise(cols []string, row []any) {
	var f CopyFile
	isCopy := false
	for i, name := range cols {
		n := strings.ToLower(name)
		switch {
		case strings.HasPrefix(n, "number of rows "), strings.HasPrefix(n, "number of multi-joined rows "):
			res.RowsAffected += toInt(row[i])
		case n == "file":
			isCopy = true
			f.File = fmt.Sprint(row[i])
		case n == "status":
			f.Status = fmt.Sprint(row[i])
		case n == "rows_parsed":
			f.RowsParsed = toInt(row[i])
		case n == "rows_loaded":
			f.RowsLoaded = toInt(row[i])
		case n == "errors_seen":
			f.ErrorsSeen = toInt(row[i])
		case n == "first_error":
			if row[i] != nil {
				f.FirstError = fmt.Sprint(row[i])
			}
		}
	}
	if isCopy {
		res.Files = append(res.Files, f)
		res.RowsLoaded += f.RowsLoaded
	}
}

// ---- other operations ---------------------------------------------------------------------

// CheckAccess logs in and reads the session's current database, schema, warehouse and role
// (sluice_test). A database or schema the role cannot see is 002003 (fatal_io); no usable
// warehouse is 000606 (fatal_io).
func (c *Capability) CheckAccess(ctx context.Context) (map[string]any, error) {
	res, err := c.query(ctx, "SELECT CURRENT_DATABASE(), CURRENT_SCHEMA(), CURRENT_WAREHOUSE(), CURRENT_ROLE()", nil)
	if err != nil {
		return nil, mapError("check access", err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 4 {
		return nil, errorf(abi.StatusRetryableIO, "check access: unexpected answer")
	}
	row := res.Rows[0]
	str := func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}
	out := map[string]any{"database": str(row[0]), "schema": str(row[1]), "warehouse": str(row[2]), "role": str(row[3])}
	if row[0] == nil || row[1] == nil {
		return nil, &Error{Status: abi.StatusFatalIO, Code: codeString(CodeObjectNotFound),
			Msg: fmt.Sprintf("check access: database %s or schema %s does not exist or not authorized", c.cfg.Database, c.cfg.Schema)}
	}
	if row[2] == nil {
		return nil, &Error{Status: abi.StatusFatalIO, Code: codeString(CodeNoActiveWarehouse),
			Msg: "check access: no active warehouse selected in the current session (bind a warehouse the role may use)"}
	}
	return out, nil
}

// TableInfo reports whether a table of the bound schema exists, and its row count.
func (c *Capability) TableInfo(ctx context.Context, table string) (map[string]any, error) {
	if err := checkTable(table); err != nil {
		return nil, err
	}
	q := "SHOW TABLES LIKE '" + strings.ReplaceAll(table, "'", "''") + "' IN SCHEMA " +
		boundIdent(c.cfg.Database) + "." + boundIdent(c.cfg.Schema)
	res, err := c.query(ctx, q, nil)
	if err != nil {
		return nil, mapError("table "+table, err)
	}
	nameCol, rowsCol := -1, -1
	for i, col := range res.Columns {
		switch strings.ToLower(col) {
		case "name":
			nameCol = i
		case "rows":
			rowsCol = i
		}
	}
	for _, row := range res.Rows {
		if nameCol >= 0 && fmt.Sprint(row[nameCol]) == table {
			out := map[string]any{"exists": true, "name": table}
			if rowsCol >= 0 {
				out["rows"] = toInt(row[rowsCol])
			}
			return out, nil
		}
	}
	// SHOW ... LIKE is case-insensitive: a single row is the table whatever its case.
	if len(res.Rows) == 1 && nameCol >= 0 {
		return map[string]any{"exists": true, "name": fmt.Sprint(res.Rows[0][nameCol])}, nil
	}
	return map[string]any{"exists": false}, nil
}
