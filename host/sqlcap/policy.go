package sqlcap

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// dialect is the SQL the policy reads: the bound driver's.
type dialect int

const (
	postgres dialect = iota
	clickhouse
)

// policy confines statements to the bound schema (postgres) or database (clickhouse); see
// SPEC 6.2 "Statement policy". It is a second line of defence after the database user's
// own grants.
type policy struct {
	d        dialect
	database string // bound database
	schema   string // bound schema (postgres)
}

// Statement kinds the policy allows.
const (
	stmtSelect      = "SELECT"
	stmtCreateTable = "CREATE TABLE"
	stmtCreateIndex = "CREATE INDEX"
	stmtAlterTable  = "ALTER TABLE"
	stmtInsert      = "INSERT"
	stmtMerge       = "MERGE"
	stmtUpdate      = "UPDATE"
	stmtDelete      = "DELETE"
	stmtOptimize    = "OPTIMIZE"
	stmtTruncate    = "TRUNCATE"
	stmtDropTable   = "DROP TABLE"
)

// checked is what the policy found in an allowed statement.
type checked struct {
	kind   string
	tables []string // canonical names of the tables referenced, in the bound schema
}

func denied(format string, args ...any) error {
	return &runtime.CapabilityError{Status: abi.StatusDenied, Code: "policy",
		Msg: "sql: statement refused: " + fmt.Sprintf(format, args...)}
}

func badArg(format string, args ...any) error {
	return &runtime.CapabilityError{Status: abi.StatusBadArgument, Msg: "sql: " + fmt.Sprintf(format, args...)}
}

// tableContext are the keywords a table name may follow.
var tableContext = map[string]bool{"FROM": true, "JOIN": true, "INTO": true, "UPDATE": true, "TABLE": true,
	"USING": true, "ONLY": true, "TRUNCATE": true, "REFERENCES": true, "INHERITS": true, "EXISTS": true}

// notTable are keywords that may follow a table-context keyword without being a table.
var notTable = map[string]bool{"IF": true, "NOT": true, "EXISTS": true, "ONLY": true, "TABLE": true,
	"SELECT": true, "WITH": true, "SET": true, "VALUES": true, "AS": true, "ON": true, "WHERE": true,
	"ALL": true, "DISTINCT": true, "DEFAULT": true, "OVERRIDING": true, "COLUMN": true, "FINAL": true, "LATERAL": true}

// endsFromList are the keywords that end a FROM list at its depth.
var endsFromList = map[string]bool{"WHERE": true, "GROUP": true, "ORDER": true, "LIMIT": true, "HAVING": true,
	"UNION": true, "EXCEPT": true, "INTERSECT": true, "WINDOW": true, "OFFSET": true, "FETCH": true, "FOR": true,
	"RETURNING": true, "SETTINGS": true, "FORMAT": true, "PREWHERE": true, "SAMPLE": true,
	"WHEN": true, "SET": true, "VALUES": true, "SELECT": true}

// fromIsNotTable are functions whose argument list uses FROM for something else
// (EXTRACT(epoch FROM ts)).
var fromIsNotTable = map[string]bool{"EXTRACT": true, "SUBSTRING": true, "TRIM": true, "OVERLAY": true, "SUBSTR": true}

// Functions that reach outside the bound schema or the database (files, other servers,
// settings, other sessions).
var (
	pgDeniedPrefixes = []string{"pg_", "lo_", "dblink"}
	pgDeniedFuncs    = map[string]bool{"set_config": true, "current_setting": true}
	chDeniedPrefixes = []string{"remote", "s3", "hdfs", "cluster", "dict", "azureblob", "gcs", "iceberg", "deltalake",
		"hudi", "mongodb", "redis", "sqlite", "url", "file"}
	chDeniedFuncs = map[string]bool{"mysql": true, "postgresql": true, "jdbc": true, "odbc": true,
		"executable": true, "input": true, "joinget": true, "merge": true, "view": true, "loop": true}
)

// chEngineRE are the ClickHouse table engines a CREATE TABLE may use: local storage only.
var chEngineRE = regexp.MustCompile(`^(Replicated)?(Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing)?MergeTree$|^(Memory|Log|TinyLog|StripeLog)$`)

// check applies the policy to one statement.
func (p policy) check(sql string) (*checked, error) {
	toks, err := lex(p.d, sql)
	if err != nil {
		return nil, err
	}
	for len(toks) > 0 && toks[len(toks)-1].punct(";") {
		toks = toks[:len(toks)-1]
	}
	if len(toks) == 0 {
		return nil, badArg("empty statement")
	}
	for _, t := range toks {
		if t.punct(";") {
			return nil, denied("only one statement is allowed per call")
		}
	}
	for _, t := range toks {
		if p.d == clickhouse && t.kind == tIdent && (t.is("OUTFILE") || t.is("INFILE") || t.is("CLUSTER")) {
			return nil, denied("%s is not allowed", t.upper())
		}
		if p.d == postgres && t.is("TABLESPACE") {
			return nil, denied("TABLESPACE is not allowed")
		}
	}
	res := &checked{}
	if res.kind, err = p.kind(toks); err != nil {
		return nil, err
	}
	if res.kind == stmtCopyS3 {
		return p.checkCopyS3(toks, res)
	}
	consumed, err := p.scanTables(toks, res)
	if err != nil {
		return nil, err
	}
	if err := p.checkWords(toks, consumed); err != nil {
		return nil, err
	}
	switch res.kind {
	case stmtTruncate, stmtDropTable:
		if len(res.tables) == 0 {
			return nil, denied("%s names no table", res.kind)
		}
		for _, t := range res.tables {
			if !strings.HasPrefix(t, abi.SQLStagePrefix) {
				return nil, denied("%s is only allowed on the plugin's stage tables (%s*), not %q", res.kind, abi.SQLStagePrefix, t)
			}
		}
	case stmtCreateTable, stmtAlterTable, stmtInsert, stmtMerge, stmtUpdate, stmtDelete, stmtOptimize, stmtCreateIndex:
		if len(res.tables) == 0 {
			return nil, denied("%s names no table", res.kind)
		}
	}
	return res, nil
}

// kind reads the statement's leading keywords and checks the rules of its kind that do not
// depend on table names.
func (p policy) kind(toks []token) (string, error) {
	at := func(i int, kw string) bool { return i < len(toks) && toks[i].is(kw) }
	pg := p.d == postgres
	switch {
	case at(0, "SELECT"):
		return stmtSelect, nil
	case at(0, "WITH"):
		return "", denied("a leading WITH is not allowed; use a subquery")
	case at(0, "CREATE"):
		i := 1
		if pg && at(i, "UNLOGGED") {
			i++
		}
		if pg && (at(i, "UNIQUE") && at(i+1, "INDEX") || at(i, "INDEX")) {
			return stmtCreateIndex, p.checkCreateIndex(toks)
		}
		if !at(i, "TABLE") {
			break
		}
		if !pg {
			if err := checkEngine(toks); err != nil {
				return "", err
			}
		}
		for k := i; k+1 < len(toks); k++ {
			if toks[k].is("PARTITION") && toks[k+1].is("OF") {
				return "", denied("CREATE TABLE ... PARTITION OF is not allowed")
			}
		}
		return stmtCreateTable, nil
	case at(0, "ALTER") && at(1, "TABLE"):
		return stmtAlterTable, p.checkAlter(toks)
	case at(0, "INSERT") && at(1, "INTO"):
		if at(2, "FUNCTION") || (at(2, "TABLE") && at(3, "FUNCTION")) {
			return "", denied("INSERT INTO FUNCTION is not allowed")
		}
		return stmtInsert, nil
	case pg && at(0, "MERGE") && at(1, "INTO"):
		return stmtMerge, nil
	case pg && at(0, "UPDATE"):
		return stmtUpdate, nil
	case at(0, "DELETE") && at(1, "FROM"):
		return stmtDelete, nil
	case !pg && at(0, "OPTIMIZE") && at(1, "TABLE"):
		return stmtOptimize, nil
	case at(0, "TRUNCATE"):
		return stmtTruncate, noCascade(toks)
	case at(0, "DROP") && at(1, "TABLE"):
		return stmtDropTable, noCascade(toks)
	case pg && at(0, "COPY"):
		return stmtCopyS3, nil // Redshift's COPY FROM 's3://...': checkCopyS3 (copys3.go)
	}
	allowed := "SELECT, CREATE [UNLOGGED] TABLE, CREATE INDEX, ALTER TABLE (ADD, ALTER), INSERT, MERGE, UPDATE, DELETE, TRUNCATE or DROP TABLE of sluice_stage_* tables, and Redshift's COPY t FROM 's3://...'"
	if !pg {
		allowed = "SELECT, CREATE TABLE (MergeTree family, Memory, Log engines), ALTER TABLE (ADD/MODIFY COLUMN, DELETE, UPDATE), INSERT, DELETE, OPTIMIZE TABLE, and TRUNCATE or DROP TABLE of sluice_stage_* tables"
	}
	first := toks[0].text
	if len(toks) > 1 && toks[1].kind == tIdent {
		first += " " + toks[1].text
	}
	return "", denied("%q statements are not allowed; allowed: %s, on the bound %s", truncate(strings.ToUpper(first), 40), allowed, p.scope())
}

func (p policy) scope() string {
	if p.d == postgres {
		return "schema"
	}
	return "database"
}

func noCascade(toks []token) error {
	for _, t := range toks {
		if t.is("CASCADE") {
			return denied("CASCADE is not allowed: it reaches tables other than the ones named")
		}
	}
	return nil
}

// checkCreateIndex: CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON [ONLY] table ...; the
// index gets an unqualified name (it lives in its table's schema). The table after ON is
// found by scanTables (ON is a table context in this statement only).
func (p policy) checkCreateIndex(toks []token) error {
	for _, t := range toks {
		if t.is("TABLESPACE") || t.is("CONCURRENTLY") {
			return denied("CREATE INDEX ... %s is not allowed", t.upper())
		}
	}
	return nil
}

// checkAlter allows ALTER TABLE [IF EXISTS] [ONLY] t <action>[, <action>...] with actions
// ADD ... or ALTER [COLUMN] ... (postgres), ADD COLUMN, MODIFY COLUMN, DELETE WHERE, UPDATE
// (clickhouse).
func (p policy) checkAlter(toks []token) error {
	i := 2
	for i < len(toks) && (toks[i].is("IF") || toks[i].is("EXISTS") || toks[i].is("ONLY")) {
		i++
	}
	_, end := readPath(toks, i)
	if end == i {
		return denied("ALTER TABLE names no table")
	}
	depth := 0
	expectAction := true
	for k := end; k < len(toks); k++ {
		t := toks[k]
		switch {
		case t.punct("("):
			depth++
		case t.punct(")"):
			depth--
		case t.punct(",") && depth == 0:
			expectAction = true
			continue
		}
		if !expectAction {
			continue
		}
		expectAction = false
		ok := false
		if p.d == postgres {
			ok = t.is("ADD") || t.is("ALTER")
		} else {
			ok = (t.is("ADD") || t.is("MODIFY")) && k+1 < len(toks) && toks[k+1].is("COLUMN") || t.is("DELETE") || t.is("UPDATE")
		}
		if !ok {
			return denied("ALTER TABLE ... %s is not allowed (only ADD and ALTER [COLUMN]%s)", strings.ToUpper(t.text),
				map[bool]string{true: "", false: "; clickhouse: ADD COLUMN, MODIFY COLUMN, DELETE, UPDATE"}[p.d == postgres])
		}
	}
	if expectAction {
		return denied("ALTER TABLE has no action")
	}
	return nil
}

// checkEngine requires a clickhouse CREATE TABLE's ENGINE to keep data local.
func checkEngine(toks []token) error {
	for i, t := range toks {
		if !t.is("ENGINE") {
			continue
		}
		j := i + 1
		if j < len(toks) && toks[j].punct("=") {
			j++
		}
		if j >= len(toks) || toks[j].kind != tIdent || !chEngineRE.MatchString(toks[j].text) {
			name := ""
			if j < len(toks) {
				name = toks[j].text
			}
			return denied("table engine %q is not allowed (MergeTree family, Memory, Log, TinyLog, StripeLog)", truncate(name, 40))
		}
		return nil
	}
	for i := range toks {
		if toks[i].is("AS") {
			return denied("CREATE TABLE ... AS without ENGINE is not allowed: name an ENGINE")
		}
	}
	return denied("CREATE TABLE needs an ENGINE (MergeTree family, Memory, Log, TinyLog, StripeLog)")
}

// scanTables finds every table reference and resolves it in the bound schema. It returns
// the token positions that are table paths (they are not function calls).
func (p policy) scanTables(toks []token, res *checked) (map[int]bool, error) {
	consumed := map[int]bool{}
	type level struct {
		noFrom   bool // inside EXTRACT(...) and friends
		fromList bool // inside a FROM list: a comma starts another table item
	}
	// TRUNCATE a, b and DROP TABLE a, b: every item of the list is a table.
	stack := []level{{fromList: res.kind == stmtTruncate || res.kind == stmtDropTable}}
	indexOn := res.kind == stmtCreateIndex
	createAs := res.kind == stmtCreateTable && p.d == clickhouse
	createLike := res.kind == stmtCreateTable && p.d == postgres
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		top := &stack[len(stack)-1]
		switch {
		case t.punct("("):
			noFrom := i > 0 && toks[i-1].kind == tIdent && fromIsNotTable[toks[i-1].upper()]
			stack = append(stack, level{noFrom: noFrom})
			continue
		case t.punct(")"):
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		case t.kind == tIdent && endsFromList[t.upper()]:
			top.fromList = false
		}
		isItem := false
		switch {
		case t.kind == tIdent && tableContext[t.upper()]:
			if t.is("FROM") && top.noFrom || t.is("EXISTS") && !afterTableIf(toks, i) {
				continue
			}
			isItem = true
			if t.is("FROM") {
				top.fromList = true
			}
		case t.punct(",") && top.fromList:
			isItem = true
		case indexOn && t.is("ON"):
			indexOn = false
			isItem = true
		case createAs && t.is("AS"), createLike && t.is("LIKE"):
			isItem = true
		}
		if !isItem || i+1 >= len(toks) {
			continue
		}
		j := i + 1
		n := toks[j]
		if n.kind != tIdent && n.kind != tQuoted {
			continue // "(", a literal, a parameter
		}
		if n.kind == tIdent && (notTable[n.upper()] || tableContext[n.upper()] && !n.is("TABLE")) {
			continue
		}
		if n.kind == tIdent && n.is("TABLE") {
			continue
		}
		if createAs && t.is("AS") && n.is("SELECT") {
			continue
		}
		segs, end := readPath(toks, j)
		if end < len(toks) && toks[end].punct("(") && !t.is("INTO") && !t.is("TABLE") && !t.is("REFERENCES") && !t.is("ON") && !t.is("EXISTS") {
			return nil, denied("table function %s(...) is not allowed", truncate(segs[len(segs)-1].text, 64))
		}
		name, err := p.resolveTable(segs)
		if err != nil {
			return nil, err
		}
		for k := j; k < end; k++ {
			consumed[k] = true
		}
		res.tables = append(res.tables, name)
		i = end - 1
	}
	return consumed, nil
}

// afterTableIf: EXISTS at i ends TABLE IF [NOT] EXISTS (a table name follows), not
// ADD COLUMN IF NOT EXISTS or INDEX IF NOT EXISTS.
func afterTableIf(toks []token, i int) bool {
	j := i - 1
	if j >= 0 && toks[j].is("NOT") {
		j--
	}
	return j >= 1 && toks[j].is("IF") && toks[j-1].is("TABLE")
}

// checkWords refuses denied functions, schema-qualified function calls and words that
// reach outside the database, outside table paths.
func (p policy) checkWords(toks []token, consumed map[int]bool) error {
	for i, t := range toks {
		if consumed[i] || (t.kind != tIdent && t.kind != tQuoted) {
			continue
		}
		if i+1 >= len(toks) {
			continue
		}
		if toks[i+1].punct(".") && i+3 < len(toks) && (toks[i+2].kind == tIdent || toks[i+2].kind == tQuoted) && toks[i+3].punct("(") && !consumed[i+2] {
			return denied("schema-qualified function call %s.%s(...) is not allowed", truncate(t.text, 64), truncate(toks[i+2].text, 64))
		}
		if !toks[i+1].punct("(") {
			continue
		}
		if f := strings.ToLower(t.text); p.deniedFunc(f) {
			return denied("function %s(...) is not allowed: it reaches outside the bound %s", truncate(t.text, 64), p.scope())
		}
	}
	return nil
}

func (p policy) deniedFunc(f string) bool {
	prefixes, funcs := pgDeniedPrefixes, pgDeniedFuncs
	if p.d == clickhouse {
		prefixes, funcs = chDeniedPrefixes, chDeniedFuncs
	}
	if funcs[f] || (p.d == postgres && strings.Contains(f, "_to_xml")) {
		return true
	}
	for _, pre := range prefixes {
		if strings.HasPrefix(f, pre) {
			return true
		}
	}
	return false
}

// ident is one identifier segment as written.
type ident struct {
	text   string
	quoted bool
}

// canon is the name the server resolves: postgres folds unquoted names to lower case.
func (p policy) canon(i ident) string {
	if i.quoted || p.d == clickhouse {
		return i.text
	}
	return strings.ToLower(i.text)
}

// readPath reads a dotted path of identifiers starting at toks[i].
func readPath(toks []token, i int) ([]ident, int) {
	var segs []ident
	for i < len(toks) && (toks[i].kind == tIdent || toks[i].kind == tQuoted) {
		segs = append(segs, ident{toks[i].text, toks[i].kind == tQuoted})
		i++
		if i+1 < len(toks) && toks[i].punct(".") && (toks[i+1].kind == tIdent || toks[i+1].kind == tQuoted) {
			i++
			continue
		}
		break
	}
	return segs, i
}

// resolveTable checks that a path names a table of the bound schema (postgres: t, schema.t,
// database.schema.t) or database (clickhouse: t, database.t) and returns its canonical name.
func (p policy) resolveTable(segs []ident) (string, error) {
	var db, sch, table *ident
	switch {
	case len(segs) == 1:
		table = &segs[0]
	case len(segs) == 2 && p.d == postgres:
		sch, table = &segs[0], &segs[1]
	case len(segs) == 2:
		db, table = &segs[0], &segs[1]
	case len(segs) == 3 && p.d == postgres:
		db, sch, table = &segs[0], &segs[1], &segs[2]
	default:
		return "", denied("object name %q is not allowed", truncate(joinIdents(segs), 100))
	}
	if db != nil && p.canon(*db) != p.database {
		return "", denied("database %q is outside the bound database %q", truncate(db.text, 100), p.database)
	}
	if sch != nil && p.canon(*sch) != p.schema {
		return "", denied("schema %q is outside the bound schema %q", truncate(sch.text, 100), p.schema)
	}
	name := p.canon(*table)
	if name == "" || len(name) > 255 {
		return "", denied("invalid table name %q", truncate(table.text, 100))
	}
	if p.d == postgres && sch == nil && strings.HasPrefix(name, "pg_") {
		// An unqualified pg_* name may resolve to the system catalog (searched first).
		return "", denied("table %q may resolve to the system catalog; pg_* tables are not allowed", name)
	}
	return name, nil
}

func joinIdents(segs []ident) string {
	parts := make([]string, len(segs))
	for i, s := range segs {
		parts[i] = s.text
	}
	return strings.Join(parts, ".")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
