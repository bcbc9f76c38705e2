package snowflake

import (
	"regexp"
	"strings"
)

// ---- names ---------------------------------------------------------------------------------

// tableRE is the unquoted table names the capability's own operations accept (table_info,
// the stage sink): a plain Snowflake identifier, resolved in the bound database and schema.
var tableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,254}$`)

// stagePathRE is one segment of a stage path (directories and the file name).
var stagePathRE = regexp.MustCompile(`^[A-Za-z0-9_=.-]{1,255}$`)

func checkTable(t string) error {
	if !tableRE.MatchString(t) {
		return badArg("snowflake: invalid table name %q: want [A-Za-z_][A-Za-z0-9_$]{0,254}, relative to the bound schema", truncate(t, 100))
	}
	return nil
}

// isStage reports whether t (a canonical or raw name) is a stage table: the only tables that
// may be dropped, replaced or overwritten.
func isStage(t string) bool { return strings.HasPrefix(strings.ToLower(t), "stage_") }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// boundIdent quotes a bound object name as Snowflake resolves it: a name that is a plain
// identifier is upper-cased (as if written unquoted), any other is taken as written.
func boundIdent(s string) string {
	if tableRE.MatchString(s) {
		return quoteIdent(strings.ToUpper(s))
	}
	return quoteIdent(s)
}

// quoteIdent quotes a Snowflake identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// ident is one identifier segment as written: quoted ("x") or not.
type ident struct {
	text   string
	quoted bool
}

// canon is the name Snowflake resolves: unquoted identifiers are upper-cased.
func (i ident) canon() string {
	if i.quoted {
		return i.text
	}
	return strings.ToUpper(i.text)
}

// sameObject reports whether a reference names the bound object (database, schema,
// warehouse, role) configured as bound: unquoted references compare case-insensitively
// (Snowflake upper-cases them); quoted ones must match the configured spelling or its
// upper-case canonical form.
func sameObject(ref ident, bound string) bool {
	bc := bound
	if tableRE.MatchString(bound) {
		bc = strings.ToUpper(bound)
	}
	if ref.quoted {
		return ref.text == bound || ref.text == bc
	}
	return strings.ToUpper(ref.text) == bc
}

// ---- lexer ---------------------------------------------------------------------------------

type tokKind int

const (
	tIdent  tokKind = iota // bare identifier or keyword
	tQuoted                // "quoted identifier" (text unquoted)
	tString                // '...' or $$...$$ literal (text: the value)
	tNumber                // numeric literal
	tPunct                 // one punctuation character, or "::"
	tParam                 // ? or :N bind parameter
	tColumn                // $N positional column of a staged file
	tStage                 // @stage reference (text after '@', quotes kept)
)

type token struct {
	kind tokKind
	text string
}

func (t token) is(kw string) bool { return t.kind == tIdent && strings.EqualFold(t.text, kw) }

func (t token) punct(p string) bool { return t.kind == tPunct && t.text == p }

// lex splits Snowflake SQL into tokens, skipping comments (--, //, /* */). It errs on
// unterminated literals, identifiers and comments, and on non-ASCII text outside them.
func lex(sql string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case (c == '-' || c == '/') && i+1 < len(sql) && sql[i+1] == c:
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				return nil, denied("execute: unterminated comment")
			}
			i += j + 4
		case c == '"':
			s, n, ok := readQuoted(sql[i:])
			if !ok {
				return nil, denied("execute: unterminated quoted identifier")
			}
			toks = append(toks, token{tQuoted, s})
			i += n
		case c == '\'':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(sql) {
				if sql[j] == '\\' && j+1 < len(sql) {
					b.WriteByte(sql[j+1])
					j += 2
					continue
				}
				if sql[j] == '\'' {
					if j+1 < len(sql) && sql[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				b.WriteByte(sql[j])
				j++
			}
			if !closed {
				return nil, denied("execute: unterminated string literal")
			}
			toks = append(toks, token{tString, b.String()})
			i = j
		case c == '$' && i+1 < len(sql) && sql[i+1] == '$':
			j := strings.Index(sql[i+2:], "$$")
			if j < 0 {
				return nil, denied("execute: unterminated $$ literal")
			}
			toks = append(toks, token{tString, sql[i+2 : i+2+j]})
			i += j + 4
		case c == '$' && i+1 < len(sql) && isDigit(sql[i+1]):
			j := i + 1
			for j < len(sql) && isDigit(sql[j]) {
				j++
			}
			toks = append(toks, token{tColumn, sql[i:j]})
			i = j
		case c == '?':
			toks = append(toks, token{tParam, "?"})
			i++
		case c == ':' && i+1 < len(sql) && sql[i+1] == ':':
			toks = append(toks, token{tPunct, "::"})
			i += 2
		case c == ':' && i+1 < len(sql) && isDigit(sql[i+1]):
			j := i + 1
			for j < len(sql) && isDigit(sql[j]) {
				j++
			}
			toks = append(toks, token{tParam, sql[i:j]})
			i = j
		case c == '@':
			j := i + 1
			for j < len(sql) {
				if sql[j] == '"' {
					_, n, ok := readQuoted(sql[j:])
					if !ok {
						return nil, denied("execute: unterminated quoted identifier in a stage reference")
					}
					j += n
					continue
				}
				if !isStageChar(sql[j]) {
					break
				}
				j++
			}
			toks = append(toks, token{tStage, sql[i+1 : j]})
			i = j
		case isDigit(c) || (c == '.' && i+1 < len(sql) && isDigit(sql[i+1])):
			j := i
			for j < len(sql) && (isIdentChar(sql[j]) || sql[j] == '.') {
				j++
			}
			toks = append(toks, token{tNumber, sql[i:j]})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(sql) && (isIdentChar(sql[j]) || sql[j] == '$') {
				j++
			}
			toks = append(toks, token{tIdent, sql[i:j]})
			i = j
		case c >= 0x80:
			return nil, denied("execute: unexpected non-ASCII character outside literals")
		default:
			toks = append(toks, token{tPunct, string(c)})
			i++
		}
	}
	return toks, nil
}

// readQuoted reads a "quoted identifier" ("" is an escaped quote) at the start of s.
func readQuoted(s string) (string, int, bool) {
	var b strings.Builder
	j := 1
	for j < len(s) {
		if s[j] == '"' {
			if j+1 < len(s) && s[j+1] == '"' {
				b.WriteByte('"')
				j += 2
				continue
			}
			return b.String(), j + 1, true
		}
		b.WriteByte(s[j])
		j++
	}
	return "", 0, false
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) }
func isStageChar(c byte) bool {
	return isIdentChar(c) || strings.IndexByte("$.%/~=-", c) >= 0
}

// ---- statement policy ----------------------------------------------------------------------

// Statement kinds the policy allows.
const (
	StmtCreateTable = "CREATE_TABLE"
	StmtDropTable   = "DROP_TABLE"
	StmtCopy        = "COPY"
	StmtMerge       = "MERGE"
	StmtInsert      = "INSERT"
	StmtUse         = "USE"
	StmtRemove      = "REMOVE"
)

// tableContext are the keywords after which a table path may follow.
var tableContext = map[string]bool{"FROM": true, "JOIN": true, "INTO": true, "USING": true,
	"TABLE": true, "UPDATE": true, "LIKE": true, "CLONE": true, "EXISTS": true, "MERGE": true}

// notTable are keywords that may follow a table-context keyword without being a table.
var notTable = map[string]bool{"IF": true, "NOT": true, "EXISTS": true, "SELECT": true, "WITH": true,
	"SET": true, "VALUES": true, "INTO": true, "TABLE": true, "AS": true, "ON": true, "WHERE": true,
	"ALL": true, "ANY": true, "SOME": true, "DISTINCT": true}

// deniedFuncs are functions a statement may not call: they read other objects by name,
// earlier results, or act on the account.
var deniedFuncs = map[string]bool{"IDENTIFIER": true, "RESULT_SCAN": true, "GET_DDL": true, "TABLE": true,
	"INFER_SCHEMA": true, "GENERATE_COLUMN_DESCRIPTION": true, "GET_PRESIGNED_URL": true,
	"BUILD_SCOPED_FILE_URL": true, "BUILD_STAGE_FILE_URL": true, "GET_STAGE_LOCATION": true,
	"GET_ABSOLUTE_PATH": true, "GET_RELATIVE_PATH": true, "FLATTEN": false}

// deniedWords may not appear anywhere as keywords (external locations and credentials).
var deniedWords = map[string]bool{"STORAGE_INTEGRATION": true, "CREDENTIALS": true, "ENCRYPTION": true,
	"FORMAT_NAME": true}

// checked is the outcome of the policy for one statement.
type checked struct {
	kind   string
	tables []string // canonical names of the tables referenced (bound schema)
	stages []string // canonical table names of the table stages referenced
}

// checkStatement applies the execute policy: one statement of an allowed kind whose every
// object reference — tables, table stages, USE targets — is in the bound database and
// schema (or is the bound warehouse/role). Anything it cannot check is denied.
func (c *Capability) checkStatement(sql string) (*checked, error) {
	toks, err := lex(sql)
	if err != nil {
		return nil, err
	}
	for len(toks) > 0 && toks[len(toks)-1].punct(";") {
		toks = toks[:len(toks)-1]
	}
	if len(toks) == 0 {
		return nil, badArg("execute: empty statement")
	}
	for i, t := range toks {
		if t.punct(";") {
			return nil, denied("execute: only one statement is allowed")
		}
		if t.kind == tIdent && deniedWords[strings.ToUpper(t.text)] {
			return nil, denied("execute: %s is not allowed", strings.ToUpper(t.text))
		}
		if t.kind == tIdent && i+1 < len(toks) && toks[i+1].punct("(") {
			up := strings.ToUpper(t.text)
			if deniedFuncs[up] || strings.HasPrefix(up, "SYSTEM$") {
				return nil, denied("execute: function %s is not allowed", up)
			}
		}
	}
	res := &checked{}
	at := func(i int, kw string) bool { return i < len(toks) && toks[i].is(kw) }
	switch {
	case at(0, "USE"):
		return res, c.checkUse(toks)
	case at(0, "CREATE"):
		i := 1
		replace := false
		if at(1, "OR") && at(2, "REPLACE") {
			i, replace = 3, true
		}
		for at(i, "TEMPORARY") || at(i, "TEMP") || at(i, "TRANSIENT") || at(i, "VOLATILE") || at(i, "LOCAL") || at(i, "GLOBAL") {
			i++
		}
		if !at(i, "TABLE") {
			break
		}
		res.kind = StmtCreateTable
		ifNotExists := at(i+1, "IF") && at(i+2, "NOT") && at(i+3, "EXISTS")
		if err := c.scanRefs(toks, res); err != nil {
			return nil, err
		}
		if len(res.tables) == 0 {
			return nil, denied("execute: CREATE TABLE names no table")
		}
		if (replace || !ifNotExists) && !isStage(res.tables[0]) {
			return nil, denied("execute: only stage_* tables may be created without IF NOT EXISTS or replaced (got %s)", res.tables[0])
		}
		return res, nil
	case at(0, "DROP") && at(1, "TABLE"):
		res.kind = StmtDropTable
		if err := c.scanRefs(toks, res); err != nil {
			return nil, err
		}
		for _, t := range res.tables {
			if !isStage(t) {
				return nil, denied("execute: only stage_* tables may be dropped (got %s)", t)
			}
		}
		if len(res.tables) == 0 {
			return nil, denied("execute: DROP TABLE names no table")
		}
		return res, nil
	case at(0, "COPY") && at(1, "INTO"):
		res.kind = StmtCopy
		if len(toks) < 3 || (toks[2].kind != tIdent && toks[2].kind != tQuoted) {
			return nil, denied("execute: COPY INTO must load into a table of the bound schema (unloading to a stage or location is not allowed)")
		}
		if err := c.scanRefs(toks, res); err != nil {
			return nil, err
		}
		return res, nil
	case at(0, "MERGE"):
		res.kind = StmtMerge
		if err := c.scanRefs(toks, res); err != nil {
			return nil, err
		}
		return res, nil
	case at(0, "INSERT"):
		res.kind = StmtInsert
		if err := c.scanRefs(toks, res); err != nil {
			return nil, err
		}
		if at(1, "OVERWRITE") && len(res.tables) > 0 && !isStage(res.tables[0]) {
			return nil, denied("execute: INSERT OVERWRITE is only allowed on stage_* tables (got %s)", res.tables[0])
		}
		return res, nil
	case (at(0, "REMOVE") || at(0, "RM")) && len(toks) == 2 && (toks[1].kind == tStage || toks[1].kind == tString):
		res.kind = StmtRemove
		body := toks[1].text
		if toks[1].kind == tString {
			if !strings.HasPrefix(body, "@") {
				return nil, denied("execute: REMOVE takes a table stage")
			}
			body = body[1:]
		}
		t, err := c.resolveStage(body)
		if err != nil {
			return nil, err
		}
		res.stages = append(res.stages, t)
		return res, nil
	}
	first := toks[0].text
	return nil, denied("execute: statement %q is not allowed: only CREATE TABLE IF NOT EXISTS, CREATE/DROP of stage_* tables, COPY INTO a table, MERGE, INSERT, USE and REMOVE on the bound schema", truncate(first, 40))
}

// checkUse allows USE of the bound database, schema, warehouse or role only.
func (c *Capability) checkUse(toks []token) error {
	kind := "DATABASE"
	i := 1
	if i < len(toks) && toks[i].kind == tIdent {
		switch strings.ToUpper(toks[i].text) {
		case "DATABASE", "SCHEMA", "WAREHOUSE", "ROLE":
			kind = strings.ToUpper(toks[i].text)
			i++
		case "SECONDARY":
			return denied("execute: USE SECONDARY ROLES is not allowed")
		}
	}
	segs, end, err := readPath(toks, i)
	if err != nil || end != len(toks) || len(segs) == 0 {
		return denied("execute: USE %s must name one object", kind)
	}
	cfg := c.cfg
	ok := false
	switch kind {
	case "DATABASE":
		ok = len(segs) == 1 && sameObject(segs[0], cfg.Database)
	case "SCHEMA":
		ok = (len(segs) == 1 && sameObject(segs[0], cfg.Schema)) ||
			(len(segs) == 2 && sameObject(segs[0], cfg.Database) && sameObject(segs[1], cfg.Schema))
	case "WAREHOUSE":
		ok = len(segs) == 1 && cfg.Warehouse != "" && sameObject(segs[0], cfg.Warehouse)
	case "ROLE":
		ok = len(segs) == 1 && cfg.Role != "" && sameObject(segs[0], cfg.Role)
	}
	if !ok {
		return denied("execute: USE %s is only allowed on the bound %s", kind, strings.ToLower(kind))
	}
	return nil
}

// scanRefs finds every table and stage reference and resolves it in the bound schema.
func (c *Capability) scanRefs(toks []token, res *checked) error {
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind == tStage {
			tb, err := c.resolveStage(t.text)
			if err != nil {
				return err
			}
			res.stages = append(res.stages, tb)
			continue
		}
		if t.kind != tIdent || !tableContext[strings.ToUpper(t.text)] {
			continue
		}
		kw := strings.ToUpper(t.text)
		j := i + 1
		if j >= len(toks) {
			break
		}
		n := toks[j]
		if kw == "FROM" && n.kind == tString {
			if !strings.HasPrefix(n.text, "@") {
				return denied("execute: loading from an external location is not allowed; use the table stage")
			}
			tb, err := c.resolveStage(n.text[1:])
			if err != nil {
				return err
			}
			res.stages = append(res.stages, tb)
			i = j
			continue
		}
		if n.kind != tIdent && n.kind != tQuoted {
			continue // "(", a parameter, a stage (handled above)
		}
		if n.kind == tIdent && notTable[strings.ToUpper(n.text)] {
			continue
		}
		if kw == "MERGE" && !n.is("INTO") {
			continue
		}
		segs, end, err := readPath(toks, j)
		if err != nil {
			return err
		}
		if (kw == "FROM" || kw == "JOIN" || kw == "USING") && end < len(toks) && toks[end].punct("(") {
			return denied("execute: table function %s is not allowed", segs[len(segs)-1].text)
		}
		tb, err := c.resolveTable(segs)
		if err != nil {
			return err
		}
		res.tables = append(res.tables, tb)
		i = end - 1
		if kw == "FROM" || kw == "JOIN" {
			// Comma joins: FROM a [AS] [x], b ... — the item after a comma is a table too.
			k := end
			if k < len(toks) && toks[k].is("AS") {
				k++
			}
			if k < len(toks) && (toks[k].kind == tIdent && !endsFromItem[strings.ToUpper(toks[k].text)] || toks[k].kind == tQuoted) {
				k++
			}
			if k < len(toks) && toks[k].punct(",") {
				toks[k] = token{tIdent, "FROM"}
				i = k - 1
			}
		}
	}
	return nil
}

// endsFromItem are keywords that may follow a FROM item and are not an alias.
var endsFromItem = map[string]bool{"WHERE": true, "JOIN": true, "INNER": true, "LEFT": true, "RIGHT": true,
	"FULL": true, "CROSS": true, "ON": true, "USING": true, "GROUP": true, "ORDER": true, "LIMIT": true,
	"UNION": true, "WHEN": true, "HAVING": true, "QUALIFY": true, "EXCEPT": true, "MINUS": true,
	"INTERSECT": true, "AS": true, "FILE_FORMAT": true, "FILES": true, "PATTERN": true, "NATURAL": true,
	"LATERAL": true, "SAMPLE": true, "TABLESAMPLE": true, "AT": true, "BEFORE": true, "CHANGES": true}

// readPath reads a dotted path of identifiers (quoted or not) starting at toks[i].
func readPath(toks []token, i int) ([]ident, int, error) {
	var segs []ident
	for i < len(toks) {
		t := toks[i]
		if t.kind != tIdent && t.kind != tQuoted {
			if len(segs) > 0 {
				return nil, i, denied("execute: empty segment in an object name")
			}
			break
		}
		segs = append(segs, ident{t.text, t.kind == tQuoted})
		i++
		if i < len(toks) && toks[i].punct(".") {
			i++
			continue
		}
		break
	}
	return segs, i, nil
}

// resolveTable checks that a path names a table of the bound schema: `table`,
// `schema.table` or `database.schema.table`. It returns the table's canonical name.
func (c *Capability) resolveTable(segs []ident) (string, error) {
	var db, sch, table ident
	switch len(segs) {
	case 1:
		table = segs[0]
	case 2:
		sch, table = segs[0], segs[1]
	case 3:
		db, sch, table = segs[0], segs[1], segs[2]
	default:
		return "", denied("execute: object name %q is not allowed", truncate(joinIdents(segs), 100))
	}
	if db.text != "" && !sameObject(db, c.cfg.Database) {
		return "", denied("execute: database %q is outside the bound database", truncate(db.text, 100))
	}
	if sch.text != "" && !sameObject(sch, c.cfg.Schema) {
		return "", denied("execute: schema %q is outside the bound schema", truncate(sch.text, 100))
	}
	if table.text == "" || len(table.text) > 255 {
		return "", denied("execute: invalid table name %q", truncate(table.text, 100))
	}
	return table.canon(), nil
}

func joinIdents(segs []ident) string {
	var parts []string
	for _, s := range segs {
		parts = append(parts, s.text)
	}
	return strings.Join(parts, ".")
}

// resolveStage checks a stage reference (the text after '@'): only table stages of the
// bound schema — `%t`, `schema.%t`, `db.schema.%t` — with an optional `/path`. Named
// stages (which may be external) and the user stage `~` are denied.
func (c *Capability) resolveStage(body string) (string, error) {
	name, _ := splitStage(body)
	if name == "" || name == "~" || strings.HasPrefix(name, "~") {
		return "", denied("execute: only table stages (@%%table) of the bound schema may be used (got @%s)", truncate(body, 100))
	}
	var segs []ident
	rest := name
	for rest != "" {
		var seg ident
		pct := false
		if rest[0] == '%' {
			pct = true
			rest = rest[1:]
		}
		if rest != "" && rest[0] == '"' {
			s, n, ok := readQuoted(rest)
			if !ok {
				return "", denied("execute: invalid stage reference @%s", truncate(body, 100))
			}
			seg, rest = ident{s, true}, rest[n:]
		} else {
			j := strings.IndexByte(rest, '.')
			if j < 0 {
				j = len(rest)
			}
			seg, rest = ident{rest[:j], false}, rest[j:]
			if !tableRE.MatchString(seg.text) {
				return "", denied("execute: invalid stage reference @%s", truncate(body, 100))
			}
		}
		if pct {
			seg.text = "%" + seg.text
		}
		segs = append(segs, seg)
		if rest != "" {
			if rest[0] != '.' {
				return "", denied("execute: invalid stage reference @%s", truncate(body, 100))
			}
			rest = rest[1:]
			if rest == "" {
				return "", denied("execute: invalid stage reference @%s", truncate(body, 100))
			}
		}
	}
	last := segs[len(segs)-1]
	if !strings.HasPrefix(last.text, "%") || len(last.text) < 2 {
		return "", denied("execute: only table stages (@%%table) of the bound schema may be used (got @%s)", truncate(body, 100))
	}
	for _, s := range segs[:len(segs)-1] {
		if strings.HasPrefix(s.text, "%") {
			return "", denied("execute: invalid stage reference @%s", truncate(body, 100))
		}
	}
	segs[len(segs)-1].text = last.text[1:]
	return c.resolveTable(segs)
}

// splitStage splits a stage reference into its name and its path (after the first '/'
// outside quotes).
func splitStage(body string) (name, path string) {
	inQ := false
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			inQ = !inQ
		case '/':
			if !inQ {
				return body[:i], body[i+1:]
			}
		}
	}
	return body, ""
}
