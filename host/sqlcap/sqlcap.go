// Package sqlcap is the host side of the `sql` capability (plugin ABI 1.1, SPEC 6.2): a
// plugin runs statements on the one database connection its export's config binds (fields
// bound as sql.driver, sql.host, sql.port, sql.database, sql.schema, sql.user,
// sql.password, sql.tls), under a statement policy confined to the bound schema or
// database, and bulk-loads batches into tables on the host (postgres: COPY FROM STDIN
// through pgx CopyFrom; clickhouse: a native block insert) without any record entering
// the guest. The plugin never sees the password.
//
// Connections are pooled per distinct binding (Pools, shared by every run of the host);
// a Binding is one run's use of its pool, with at most one open transaction, rolled back
// when the run ends with it open. Every connection's resolved address is checked when it
// is dialled (Config). See docs/sql.md.
package sqlcap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/runtime"
)

// Defaults of Config.
const (
	DefaultMaxConnsPerBinding = 4
	DefaultMaxBindings        = 64
	DefaultIdleTimeout        = 5 * time.Minute
	DefaultDialTimeout        = 10 * time.Second
	DefaultQueryRows          = 1000
	MaxQueryRows              = 10_000
	MaxQueryBytes             = 1 << 20
	maxArgs                   = 1000
	redactedSecret            = "[redacted secret]"
)

// Config is the operator's policy for every sql binding.
type Config struct {
	// RefusePrivate refuses private addresses (RFC 1918, fc00::/7, CGNAT 100.64/10), which
	// are allowed by default: a self-hosted database on the local network is the common case
	// (docs/RATIONALE.md). SLUICE_SQL_ALLOW_PRIVATE=false sets it.
	RefusePrivate bool
	// AllowLoopback allows loopback (and the unspecified address, which reaches it): off by
	// default, since the host's own databases listen there. SLUICE_SQL_ALLOW_LOOPBACK.
	AllowLoopback bool
	// MaxConnsPerBinding caps the connections of one binding's pool. Default 4.
	MaxConnsPerBinding int
	// MaxBindings caps the pools kept; the least recently used idle one is closed past it.
	// Default 64.
	MaxBindings int
	// IdleTimeout closes a connection idle this long. Default 5 minutes.
	IdleTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxConnsPerBinding <= 0 {
		c.MaxConnsPerBinding = DefaultMaxConnsPerBinding
	}
	if c.MaxBindings <= 0 {
		c.MaxBindings = DefaultMaxBindings
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	return c
}

// AddressError refuses a dial to an address the operator did not allow.
type AddressError struct {
	Addr netip.Addr
	Why  string
	Env  string
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("address %s is %s; database connections to it are refused unless the operator sets %s=true", e.Addr, e.Why, e.Env)
}

// checkAddress runs at dial time on the address actually connected to, after name
// resolution (httpcap's classification of addresses).
func (c Config) checkAddress(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("dialling %q: not an IP address", address)
	}
	a = a.Unmap()
	why := httpcap.Blocked(a)
	switch {
	case why == "":
		return nil
	case why == "private" || strings.HasPrefix(why, "not public") && !a.IsUnspecified() && a.As4()[0] != 0:
		if !c.RefusePrivate {
			return nil
		}
		return &AddressError{Addr: a, Why: why, Env: "SLUICE_SQL_ALLOW_PRIVATE"}
	case why == "loopback" || why == "unspecified" || strings.HasPrefix(why, "not public"):
		if c.AllowLoopback {
			return nil
		}
		return &AddressError{Addr: a, Why: why, Env: "SLUICE_SQL_ALLOW_LOOPBACK"}
	}
	return &AddressError{Addr: a, Why: why + " (never allowed)", Env: "(nothing)"}
}

func (c Config) dialer() *net.Dialer {
	return &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second, Control: c.checkAddress}
}

// settings are one binding's parameters.
type settings struct {
	driver, host, database, schema, user, password, tls string
	port                                                int
	protocol                                            string            // clickhouse: native or http (sql.protocol)
	loadMethod                                          string            // postgres: copy or insert (sql.load_method)
	secrets                                             map[string]string // sql.secret_NAME, for COPY (copys3.go); not part of the pool's key
}

func (s settings) key() string {
	h := sha256.New()
	for _, v := range []string{s.driver, s.host, strconv.Itoa(s.port), s.database, s.schema, s.user, s.password, s.tls, s.protocol} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s settings) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

var knownParams = map[string]bool{"driver": true, "host": true, "port": true, "database": true, "schema": true,
	"user": true, "password": true, "tls": true, "has_self_signed_cert": true, "protocol": true, "load_method": true}

// parseSettings reads the capability's parameters (control.capBinding: the sql.* bindings
// without their prefix).
func parseSettings(params map[string]string) (settings, error) {
	for k := range params {
		if name, ok := strings.CutPrefix(k, secretParam); ok && secretNameRE.MatchString(name) {
			continue
		}
		if !knownParams[k] {
			return settings{}, fmt.Errorf("unknown sql binding %q (want sql.driver, sql.host, sql.port, sql.database, sql.schema, sql.user, sql.password, sql.tls, sql.has_self_signed_cert, sql.protocol, sql.load_method, sql.secret_<name>)", "sql."+k)
		}
	}
	s := settings{driver: strings.TrimSpace(params["driver"]), host: strings.TrimSpace(params["host"]),
		database: params["database"], schema: params["schema"], user: params["user"], password: params["password"],
		tls: strings.TrimSpace(params["tls"]), protocol: strings.TrimSpace(params["protocol"]), loadMethod: strings.TrimSpace(params["load_method"])}
	for k, v := range params {
		if name, ok := strings.CutPrefix(k, secretParam); ok {
			if s.secrets == nil {
				s.secrets = map[string]string{}
			}
			s.secrets[name] = v
		}
	}
	var dflPort int
	switch s.driver {
	case abi.SQLDriverPostgres:
		dflPort = 5432
		if s.protocol != "" {
			return s, errors.New("sql.protocol is clickhouse-only (native or http)")
		}
		switch s.loadMethod {
		case "":
			s.loadMethod = "copy"
		case "copy", "insert":
		default:
			return s, fmt.Errorf("sql.load_method %q is not supported (postgres: copy or insert)", truncate(s.loadMethod, 20))
		}
		if s.schema == "" {
			s.schema = "public"
		}
		switch strings.ToLower(s.schema) {
		case "pg_catalog", "information_schema", "pg_toast":
			return s, fmt.Errorf("sql.schema %q is a system schema", s.schema)
		}
		if s.tls == "" {
			s.tls = "prefer"
		}
	case abi.SQLDriverClickHouse:
		dflPort = 9000
		if s.loadMethod != "" {
			return s, errors.New("sql.load_method is postgres-only (copy or insert)")
		}
		switch s.protocol {
		case "", "native":
			s.protocol = "native"
		case "http":
			dflPort = 8123
		default:
			return s, fmt.Errorf("sql.protocol %q is not supported (clickhouse: native or http)", truncate(s.protocol, 20))
		}
		if s.schema != "" {
			return s, errors.New("sql.schema is not used by the clickhouse driver: bind the database as sql.database")
		}
		if s.database == "system" || s.database == "information_schema" || s.database == "INFORMATION_SCHEMA" {
			return s, fmt.Errorf("sql.database %q is a system database", s.database)
		}
		if s.tls == "" {
			s.tls = "disable"
		}
	case "":
		return s, errors.New("the destination config binds no database driver (sql.driver: postgres or clickhouse)")
	default:
		return s, fmt.Errorf("sql.driver %q is not supported (want postgres or clickhouse)", truncate(s.driver, 40))
	}
	if v := strings.TrimSpace(params["has_self_signed_cert"]); v != "" && params["tls"] == "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return s, fmt.Errorf("sql.has_self_signed_cert %q is not a boolean", truncate(v, 20))
		}
		if b {
			s.tls = "require"
		}
	}
	switch s.tls {
	case "disable", "require", "verify-full":
	case "prefer":
		if s.driver != abi.SQLDriverPostgres {
			return s, errors.New("sql.tls prefer is postgres-only (clickhouse: disable, require or verify-full)")
		}
	default:
		return s, fmt.Errorf("sql.tls %q is not supported (want disable, prefer, require or verify-full)", truncate(s.tls, 40))
	}
	if s.host == "" {
		return s, errors.New("the destination config binds no database host (sql.host)")
	}
	if strings.ContainsAny(s.host, "/ \t\n") {
		return s, fmt.Errorf("sql.host %q is not a host name or address", truncate(s.host, 100))
	}
	if s.database == "" {
		return s, errors.New("the destination config binds no database (sql.database)")
	}
	if s.user == "" {
		return s, errors.New("the destination config binds no database user (sql.user)")
	}
	s.port = dflPort
	if v := strings.TrimSpace(params["port"]); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return s, fmt.Errorf("sql.port %q is not a port number", truncate(v, 20))
		}
		s.port = p
	}
	return s, nil
}

// backend is one driver's pool of connections for one binding.
type backend interface {
	// open starts one run's session on the pool.
	session(b *Binding) session
	close()
}

// session is one run's use of a backend: at most one open transaction.
type session interface {
	exec(ctx context.Context, sql string, args []any) (int64, error)
	query(ctx context.Context, sql string, args []any, maxRows int) (abi.SQLQueryResult, error)
	begin(ctx context.Context) error
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
	load(ctx context.Context, table string, cols []abi.ColumnSelect, batch []byte, start, count int) (int64, error)
	inTx() bool
}

// Pools keeps one connection pool per distinct binding, bounded, for the whole host.
type Pools struct {
	cfg     Config
	mu      sync.Mutex
	entries map[string]*entry
	closed  bool
}

type entry struct {
	key  string
	be   backend
	refs int
	last time.Time
}

// NewPools returns an empty set of pools with the operator's policy.
func NewPools(cfg Config) *Pools {
	return &Pools{cfg: cfg.withDefaults(), entries: map[string]*entry{}}
}

// Close closes every pool.
func (ps *Pools) Close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, e := range ps.entries {
		e.be.close()
		delete(ps.entries, k)
	}
	ps.closed = true
}

func (ps *Pools) acquire(s settings) (*entry, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, errors.New("sql: the host is shutting down")
	}
	k := s.key()
	if e := ps.entries[k]; e != nil {
		e.refs++
		e.last = time.Now()
		return e, nil
	}
	for len(ps.entries) >= ps.cfg.MaxBindings {
		var lru *entry
		for _, e := range ps.entries {
			if e.refs == 0 && (lru == nil || e.last.Before(lru.last)) {
				lru = e
			}
		}
		if lru == nil {
			break // every pool is in use: keep them, go past the bound for a while
		}
		lru.be.close()
		delete(ps.entries, lru.key)
	}
	var be backend
	var err error
	switch s.driver {
	case abi.SQLDriverPostgres:
		be, err = newPGBackend(ps.cfg, s)
	default:
		be, err = newCHBackend(ps.cfg, s)
	}
	if err != nil {
		return nil, err
	}
	e := &entry{key: k, be: be, refs: 1, last: time.Now()}
	ps.entries[k] = e
	return e, nil
}

func (ps *Pools) release(e *entry) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e.refs--
	e.last = time.Now()
}

// Binding is the sql capability bound to one export for one run (or one destination test).
// It serves one guest call at a time.
type Binding struct {
	pools *Pools
	s     settings
	pol   policy
	e     *entry
	sess  session
}

// Bind builds a run's binding from the capability's parameters. Nothing is dialled until
// the plugin's first call.
func Bind(pools *Pools, params map[string]string) (*Binding, error) {
	s, err := parseSettings(params)
	if err != nil {
		return nil, err
	}
	pol := policy{d: postgres, database: s.database, schema: s.schema}
	if s.driver == abi.SQLDriverClickHouse {
		pol = policy{d: clickhouse, database: s.database}
	}
	return &Binding{pools: pools, s: s, pol: pol}, nil
}

// Driver is the bound driver family.
func (b *Binding) Driver() string { return b.s.driver }

// Close rolls back a transaction the run left open and returns the pool's connections.
func (b *Binding) Close() error {
	if b.sess == nil {
		return nil
	}
	var err error
	if b.sess.inTx() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = b.sess.rollback(ctx)
		cancel()
		if err != nil {
			err = fmt.Errorf("sql: rolling back the transaction the run left open: %w", err)
		}
	}
	b.pools.release(b.e)
	b.sess, b.e = nil, nil
	return err
}

func (b *Binding) session() (session, error) {
	if b.sess != nil {
		return b.sess, nil
	}
	e, err := b.pools.acquire(b.s)
	if err != nil {
		return nil, b.classify(context.Background(), err)
	}
	b.e = e
	b.sess = e.be.session(b)
	return b.sess, nil
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Call serves one call("sql", req): batch is the current batch's bytes when req names it.
func (b *Binding) Call(ctx context.Context, raw []byte, batch []byte) ([]byte, error) {
	var r abi.SQLRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return nil, badArg("invalid request JSON: %v", err)
	}
	if r.TimeoutMS < 0 {
		return nil, badArg("timeout_ms must not be negative")
	}
	opCtx := ctx
	if r.TimeoutMS > 0 {
		var cancel context.CancelFunc
		opCtx, cancel = context.WithTimeout(ctx, time.Duration(r.TimeoutMS)*time.Millisecond)
		defer cancel()
	}
	var out any
	var err error
	switch r.Op {
	case abi.SQLOpExec, abi.SQLOpQuery:
		out, err = b.statement(opCtx, r)
	case abi.SQLOpBegin, abi.SQLOpCommit, abi.SQLOpRollback:
		out, err = b.transaction(opCtx, r.Op)
	case abi.SQLOpLoad:
		out, err = b.load(opCtx, r, batch)
	default:
		return nil, &runtime.CapabilityError{Status: abi.StatusUnimplemented,
			Msg: fmt.Sprintf("sql: unknown operation %q (want exec, query, begin, commit, rollback or load)", truncate(r.Op, 64))}
	}
	if err != nil {
		return nil, b.classify(ctx, err)
	}
	doc, err := json.Marshal(out)
	if err != nil {
		return nil, &runtime.CapabilityError{Status: abi.StatusInternal, Msg: "sql: encoding the answer: " + err.Error()}
	}
	return doc, nil
}

func (b *Binding) statement(ctx context.Context, r abi.SQLRequest) (any, error) {
	if strings.TrimSpace(r.SQL) == "" {
		return nil, badArg("%s needs sql", r.Op)
	}
	c, err := b.pol.check(r.SQL)
	if err != nil {
		return nil, err
	}
	sql, err := b.withSecrets(c, r.SQL)
	if err != nil {
		return nil, err
	}
	args, err := convertArgs(r.Args)
	if err != nil {
		return nil, err
	}
	sess, err := b.session()
	if err != nil {
		return nil, err
	}
	if r.Op == abi.SQLOpExec {
		n, err := sess.exec(ctx, sql, args)
		return abi.SQLExecResult{RowsAffected: n}, err
	}
	maxRows := r.MaxRows
	if maxRows <= 0 {
		maxRows = DefaultQueryRows
	}
	return sess.query(ctx, r.SQL, args, min(maxRows, MaxQueryRows))
}

// convertArgs turns JSON arguments into driver values: strings, int64 (a number without a
// fraction or exponent), float64, bool, nil.
func convertArgs(in []any) ([]any, error) {
	if len(in) > maxArgs {
		return nil, badArg("at most %d args, got %d", maxArgs, len(in))
	}
	out := make([]any, len(in))
	for i, a := range in {
		switch v := a.(type) {
		case nil, string, bool:
			out[i] = v
		case json.Number:
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				out[i] = n
			} else if f, err := v.Float64(); err == nil {
				out[i] = f
			} else {
				return nil, badArg("args[%d]: number %s out of range", i, v)
			}
		default:
			return nil, badArg("args[%d]: want a string, number, boolean or null, got a JSON %T", i, a)
		}
	}
	return out, nil
}

func (b *Binding) transaction(ctx context.Context, op string) (any, error) {
	if b.s.driver == abi.SQLDriverClickHouse {
		return nil, &runtime.CapabilityError{Status: abi.StatusUnimplemented, Msg: "sql: clickhouse has no transactions (" + op + ")"}
	}
	if op == abi.SQLOpRollback && (b.sess == nil || !b.sess.inTx()) {
		return struct{}{}, nil
	}
	sess, err := b.session()
	if err != nil {
		return nil, err
	}
	switch op {
	case abi.SQLOpBegin:
		if sess.inTx() {
			return nil, badArg("a transaction is already open; commit or roll it back first")
		}
		err = sess.begin(ctx)
	case abi.SQLOpCommit:
		if !sess.inTx() {
			return nil, badArg("commit without an open transaction")
		}
		err = sess.commit(ctx)
	default:
		err = sess.rollback(ctx)
	}
	return struct{}{}, err
}

func (b *Binding) load(ctx context.Context, r abi.SQLRequest, batch []byte) (any, error) {
	if r.Batch == 0 || batch == nil {
		return nil, badArg("load needs the current batch's handle (batch)")
	}
	if !tableNameRE.MatchString(r.Table) {
		return nil, badArg("load: invalid table name %q: want [A-Za-z_][A-Za-z0-9_]{0,62}, in the bound %s", truncate(r.Table, 100), b.pol.scope())
	}
	if b.pol.d == postgres && strings.HasPrefix(strings.ToLower(r.Table), "pg_") {
		return nil, denied("load: pg_* tables are not allowed")
	}
	if len(r.Columns) == 0 {
		return nil, badArg("load needs at least one column")
	}
	if r.Start < 0 || r.Count < 0 {
		return nil, badArg("load: start and count must not be negative")
	}
	seenRun, seenTable := map[string]bool{}, map[string]bool{}
	cols := make([]abi.ColumnSelect, len(r.Columns))
	for i, c := range r.Columns {
		if c.As == "" {
			c.As = c.Name
		}
		if seenRun[c.Name] || seenTable[c.As] {
			return nil, badArg("load: column %q or %q named twice", c.Name, c.As)
		}
		if c.As == "" || len(c.As) > 63 {
			return nil, badArg("load: invalid table column name %q", truncate(c.As, 100))
		}
		seenRun[c.Name], seenTable[c.As] = true, true
		cols[i] = c
	}
	sess, err := b.session()
	if err != nil {
		return nil, err
	}
	n, err := sess.load(ctx, r.Table, cols, batch, r.Start, r.Count)
	return abi.SQLLoadResult{Rows: n}, err
}

// rowRange checks [start, start+count) against a batch of n rows (count 0: to the end).
func rowRange(n, start, count int) (int, error) {
	if count == 0 {
		count = n - start
	}
	if start > n || count < 0 || start+count > n {
		return 0, badArg("load: rows [%d, %d) outside the batch's %d rows", start, start+count, n)
	}
	return count, nil
}

// scrub removes the bound password from a message.
func (b *Binding) scrub(s string) string {
	if len(b.s.password) >= 4 {
		s = strings.ReplaceAll(s, b.s.password, redactedSecret)
	}
	return b.scrubSecrets(s)
}
