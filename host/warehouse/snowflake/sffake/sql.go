package sffake

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Statement type ids as Snowflake reports them (the driver looks at SELECT and DML).
const (
	stmtSelect = 0x1000
	stmtDML    = 0x3000
	stmtDDL    = 0x6000
)

// ---- lexer ---------------------------------------------------------------------------------

type tk int

const (
	kIdent tk = iota
	kQuoted
	kString
	kNumber
	kPunct
	kParam
	kColumn // $N
	kStage  // @... (text after @)
)

type tok struct {
	k tk
	s string
}

func (t tok) is(kw string) bool { return t.k == kIdent && strings.EqualFold(t.s, kw) }
func (t tok) p(s string) bool   { return t.k == kPunct && t.s == s }
func (t tok) name() (string, bool) {
	switch t.k {
	case kIdent:
		return strings.ToUpper(t.s), true
	case kQuoted:
		return t.s, true
	}
	return "", false
}

func syntaxErr(format string, args ...any) *Fault {
	return &Fault{Code: "001003", SQLState: "42000", Message: "SQL compilation error:\n" + fmt.Sprintf(format, args...)}
}

func lexSQL(sql string) ([]tok, *Fault) {
	var out []tok
	i := 0
	quoted := func(s string) (string, int, bool) {
		var b strings.Builder
		for j := 1; j < len(s); j++ {
			if s[j] == '"' {
				if j+1 < len(s) && s[j+1] == '"' {
					b.WriteByte('"')
					j++
					continue
				}
				return b.String(), j + 1, true
			}
			b.WriteByte(s[j])
		}
		return "", 0, false
	}
	isD := func(c byte) bool { return c >= '0' && c <= '9' }
	isI := func(c byte) bool { return c == '_' || c == '$' || isD(c) || (c|0x20 >= 'a' && c|0x20 <= 'z') }
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case (c == '-' || c == '/') && i+1 < len(sql) && sql[i+1] == c:
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				return nil, syntaxErr("unterminated comment")
			}
			i += j + 4
		case c == '"':
			s, n, ok := quoted(sql[i:])
			if !ok {
				return nil, syntaxErr("unterminated identifier")
			}
			out = append(out, tok{kQuoted, s})
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
				return nil, syntaxErr("unterminated string")
			}
			out = append(out, tok{kString, b.String()})
			i = j
		case c == '$' && i+1 < len(sql) && isD(sql[i+1]):
			j := i + 1
			for j < len(sql) && isD(sql[j]) {
				j++
			}
			out = append(out, tok{kColumn, sql[i+1 : j]})
			i = j
		case c == '?':
			out = append(out, tok{kParam, "?"})
			i++
		case c == ':' && i+1 < len(sql) && sql[i+1] == ':':
			out = append(out, tok{kPunct, "::"})
			i += 2
		case c == ':' && i+1 < len(sql) && isD(sql[i+1]):
			j := i + 1
			for j < len(sql) && isD(sql[j]) {
				j++
			}
			out = append(out, tok{kParam, sql[i:j]})
			i = j
		case c == '@':
			j := i + 1
			for j < len(sql) {
				if sql[j] == '"' {
					_, n, ok := quoted(sql[j:])
					if !ok {
						return nil, syntaxErr("unterminated identifier")
					}
					j += n
					continue
				}
				if !isI(sql[j]) && !strings.ContainsRune(".%/~=-", rune(sql[j])) {
					break
				}
				j++
			}
			out = append(out, tok{kStage, sql[i+1 : j]})
			i = j
		case isD(c):
			j := i
			for j < len(sql) && (isD(sql[j]) || sql[j] == '.') {
				j++
			}
			out = append(out, tok{kNumber, sql[i:j]})
			i = j
		case isI(c):
			j := i
			for j < len(sql) && isI(sql[j]) {
				j++
			}
			out = append(out, tok{kIdent, sql[i:j]})
			i = j
		default:
			out = append(out, tok{kPunct, string(c)})
			i++
		}
	}
	for len(out) > 0 && out[len(out)-1].p(";") {
		out = out[:len(out)-1]
	}
	return out, nil
}

// parser walks tokens.
type parser struct {
	t []tok
	i int
}

func (p *parser) peek() tok {
	if p.i < len(p.t) {
		return p.t[p.i]
	}
	return tok{kPunct, ""}
}
func (p *parser) at(kw string) bool { return p.peek().is(kw) }
func (p *parser) eat(kw string) bool {
	if p.at(kw) {
		p.i++
		return true
	}
	return false
}
func (p *parser) eatP(s string) bool {
	if p.peek().p(s) {
		p.i++
		return true
	}
	return false
}
func (p *parser) done() bool { return p.i >= len(p.t) }

// objName reads a dotted name (1-3 parts) and resolves it with the session's defaults.
func (p *parser) objName(sess *session) (db, schema, name string, f *Fault) {
	var parts []string
	for {
		n, ok := p.peek().name()
		if !ok {
			break
		}
		p.i++
		parts = append(parts, n)
		if !p.eatP(".") {
			break
		}
	}
	switch len(parts) {
	case 1:
		return sess.db, sess.schema, parts[0], nil
	case 2:
		return sess.db, parts[0], parts[1], nil
	case 3:
		return parts[0], parts[1], parts[2], nil
	}
	return "", "", "", syntaxErr("syntax error: object name expected near %q", p.peek().s)
}

// ---- execution -----------------------------------------------------------------------------

func objNotFound(kind, name string) *Fault {
	return &Fault{Code: "002003", SQLState: "02000", Message: fmt.Sprintf("SQL compilation error:\n%s '%s' does not exist or not authorized.", kind, name)}
}

func statusResult(sess *session, typ int64, msg string) *result {
	return &result{Columns: []Column{{Name: "status", Type: "VARCHAR"}}, Rows: [][]*string{{str(msg)}}, StmtType: typ, Session: sess}
}

// exec runs one statement for a session.
func (s *Server) exec(sess *session, sql string, binds []Binding) (*result, *Fault) {
	toks, f := lexSQL(sql)
	if f != nil {
		return nil, f
	}
	if len(toks) == 0 {
		return nil, &Fault{Code: "000900", SQLState: "42601", Message: "SQL compilation error:\nEmpty SQL statement."}
	}
	p := &parser{t: toks}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case p.at("SELECT"):
		return s.execSelect(sess, p)
	case p.at("USE"):
		return s.execUse(sess, p)
	case p.at("CREATE"):
		return s.execCreate(sess, p)
	case p.at("DROP"):
		return s.execDrop(sess, p)
	case p.at("PUT"):
		return s.execPut(sess, p)
	case p.at("COPY"):
		return s.execCopy(sess, p)
	case p.at("REMOVE"), p.at("RM"):
		return s.execRemove(sess, p)
	case p.at("LIST"), p.at("LS"):
		return s.execList(sess, p)
	case p.at("SHOW"):
		return s.execShow(sess, p)
	case p.at("MERGE"), p.at("INSERT"):
		// Recorded, not evaluated: the counts are zero.
		return &result{Columns: []Column{{Name: "number of rows inserted", Type: "NUMBER"}, {Name: "number of rows updated", Type: "NUMBER"}},
			Rows: [][]*string{{str("0"), str("0")}}, StmtType: stmtDML, Session: sess}, nil
	}
	return nil, syntaxErr("syntax error line 1 at position 0 unexpected '%s'.", toks[0].s)
}

func (s *Server) execSelect(sess *session, p *parser) (*result, *Fault) {
	p.eat("SELECT")
	var cols []Column
	var row []*string
	for !p.done() {
		t := p.peek()
		p.i++
		var v *string
		name := t.s
		switch {
		case t.k == kNumber:
			v = str(t.s)
		case t.k == kString:
			v = str(t.s)
		case t.k == kIdent:
			fn := strings.ToUpper(t.s)
			if !p.eatP("(") || !p.eatP(")") {
				return nil, syntaxErr("sffake: only SELECT of literals and CURRENT_*() functions")
			}
			name = fn + "()"
			switch fn {
			case "CURRENT_DATABASE":
				v = strPtrOrNil(s.dbIfExists(sess))
			case "CURRENT_SCHEMA":
				v = strPtrOrNil(s.schemaIfExists(sess))
			case "CURRENT_WAREHOUSE":
				v = strPtrOrNil(sess.warehouse)
			case "CURRENT_ROLE":
				v = strPtrOrNil(sess.role)
			case "CURRENT_USER":
				v = str(sess.user)
			case "CURRENT_ACCOUNT":
				v = str(strings.ToUpper(s.opts.Account))
			default:
				return nil, syntaxErr("Unknown function %s", fn)
			}
		default:
			return nil, syntaxErr("sffake: only SELECT of literals and CURRENT_*() functions")
		}
		cols = append(cols, Column{Name: name, Type: "VARCHAR"})
		row = append(row, v)
		if !p.eatP(",") {
			break
		}
	}
	if !p.done() {
		return nil, syntaxErr("sffake: SELECT ... FROM is not supported")
	}
	return &result{Columns: cols, Rows: [][]*string{row}, StmtType: stmtSelect, Session: sess}, nil
}

func strPtrOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Server) execUse(sess *session, p *parser) (*result, *Fault) {
	p.eat("USE")
	kind := "DATABASE"
	for _, k := range []string{"DATABASE", "SCHEMA", "WAREHOUSE", "ROLE"} {
		if p.eat(k) {
			kind = k
		}
	}
	var parts []string
	for {
		n, ok := p.peek().name()
		if !ok {
			break
		}
		p.i++
		parts = append(parts, n)
		if !p.eatP(".") {
			break
		}
	}
	if len(parts) == 0 || !p.done() {
		return nil, syntaxErr("syntax error in USE")
	}
	switch kind {
	case "DATABASE":
		sess.db = parts[0]
		if s.dbIfExists(sess) == "" {
			return nil, objNotFound("Database", parts[0])
		}
	case "SCHEMA":
		db, sc := sess.db, parts[0]
		if len(parts) == 2 {
			db, sc = parts[0], parts[1]
		}
		if !s.schemas[db+"."+sc] {
			return nil, objNotFound("Schema", db+"."+sc)
		}
		sess.db, sess.schema = db, sc
	case "WAREHOUSE":
		sess.warehouse = parts[0]
	case "ROLE":
		sess.role = parts[0]
	}
	return statusResult(sess, stmtDDL, "Statement executed successfully."), nil
}

func (s *Server) schemaFault(db, schema string) *Fault {
	if db == "" || schema == "" {
		return &Fault{Code: "090105", SQLState: "22000", Message: "Cannot perform operation. This session does not have a current database or schema. Call 'USE DATABASE', or use a qualified name."}
	}
	if !s.schemas[db+"."+schema] {
		return objNotFound("Schema", db+"."+schema)
	}
	return nil
}

func (s *Server) execCreate(sess *session, p *parser) (*result, *Fault) {
	p.eat("CREATE")
	replace := false
	if p.eat("OR") {
		if !p.eat("REPLACE") {
			return nil, syntaxErr("expected REPLACE")
		}
		replace = true
	}
	for p.eat("TEMPORARY") || p.eat("TEMP") || p.eat("TRANSIENT") || p.eat("VOLATILE") || p.eat("LOCAL") || p.eat("GLOBAL") {
	}
	if !p.eat("TABLE") {
		return nil, syntaxErr("sffake: only CREATE TABLE is supported")
	}
	ifNot := false
	if p.eat("IF") {
		if !p.eat("NOT") || !p.eat("EXISTS") {
			return nil, syntaxErr("expected IF NOT EXISTS")
		}
		ifNot = true
	}
	db, sc, name, f := p.objName(sess)
	if f != nil {
		return nil, f
	}
	if f := s.schemaFault(db, sc); f != nil {
		return nil, f
	}
	key := db + "." + sc + "." + name
	t := &Table{Database: db, Schema: sc, Name: name}
	if !p.eatP("(") {
		return nil, syntaxErr("sffake: CREATE TABLE needs a column list")
	}
	for {
		cn, ok := p.peek().name()
		if !ok {
			return nil, syntaxErr("column name expected near %q", p.peek().s)
		}
		p.i++
		tn, ok := p.peek().name()
		if !ok {
			return nil, syntaxErr("column type expected")
		}
		p.i++
		// skip type arguments and column options up to the next top-level comma
		depth := 0
		for !p.done() {
			t := p.peek()
			if depth == 0 && (t.p(",") || t.p(")")) {
				break
			}
			if t.p("(") {
				depth++
			} else if t.p(")") {
				depth--
			}
			p.i++
		}
		t.Columns = append(t.Columns, Column{Name: cn, Type: baseType(tn)})
		if p.eatP(",") {
			continue
		}
		if p.eatP(")") {
			break
		}
		return nil, syntaxErr("unexpected end of column list")
	}
	if p.eat("COMMENT") {
		p.eatP("=")
		if p.peek().k == kString {
			t.Comment = p.peek().s
			p.i++
		}
	}
	if !p.done() {
		return nil, syntaxErr("sffake: unsupported CREATE TABLE clause near %q", p.peek().s)
	}
	if _, exists := s.tables[key]; exists {
		if ifNot {
			return statusResult(sess, stmtDDL, name+" already exists, statement succeeded."), nil
		}
		if !replace {
			return nil, &Fault{Code: "002002", SQLState: "42710", Message: "SQL compilation error:\nObject '" + key + "' already exists."}
		}
	}
	s.tables[key] = t
	delete(s.loadMeta, key) // a new table has no load history
	return statusResult(sess, stmtDDL, "Table "+name+" successfully created."), nil
}

// baseType maps a column type to the fake's type classes.
func baseType(t string) string {
	switch strings.ToUpper(t) {
	case "STRING", "VARCHAR", "TEXT", "CHAR", "CHARACTER", "NCHAR", "NVARCHAR":
		return "VARCHAR"
	case "INTEGER", "INT", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT", "NUMBER", "NUMERIC", "DECIMAL":
		return "NUMBER"
	case "FLOAT", "FLOAT4", "FLOAT8", "DOUBLE", "REAL":
		return "FLOAT"
	case "BOOLEAN":
		return "BOOLEAN"
	case "TIMESTAMP", "TIMESTAMP_NTZ", "DATETIME", "TIMESTAMP_LTZ", "TIMESTAMP_TZ":
		return "TIMESTAMP"
	case "VARIANT", "OBJECT", "ARRAY":
		return "VARIANT"
	case "DATE":
		return "DATE"
	}
	return strings.ToUpper(t)
}

func (s *Server) execDrop(sess *session, p *parser) (*result, *Fault) {
	p.eat("DROP")
	if !p.eat("TABLE") {
		return nil, syntaxErr("sffake: only DROP TABLE is supported")
	}
	ifExists := p.eat("IF") && p.eat("EXISTS")
	db, sc, name, f := p.objName(sess)
	if f != nil {
		return nil, f
	}
	key := db + "." + sc + "." + name
	if _, ok := s.tables[key]; !ok {
		if ifExists {
			return statusResult(sess, stmtDDL, "Drop statement executed successfully ("+name+" already dropped)."), nil
		}
		return nil, objNotFound("Table", key)
	}
	delete(s.tables, key)
	delete(s.loadMeta, key)
	_ = os.RemoveAll(s.stageDir(db, sc, name))
	return statusResult(sess, stmtDDL, name+" successfully dropped."), nil
}

func (s *Server) execShow(sess *session, p *parser) (*result, *Fault) {
	p.eat("SHOW")
	if !p.eat("TABLES") {
		return nil, syntaxErr("sffake: only SHOW TABLES is supported")
	}
	like := ""
	if p.eat("LIKE") {
		if p.peek().k != kString {
			return nil, syntaxErr("LIKE pattern expected")
		}
		like = p.peek().s
		p.i++
	}
	db, sc := sess.db, sess.schema
	if p.eat("IN") {
		p.eat("SCHEMA")
		var parts []string
		for {
			n, ok := p.peek().name()
			if !ok {
				break
			}
			p.i++
			parts = append(parts, n)
			if !p.eatP(".") {
				break
			}
		}
		switch len(parts) {
		case 1:
			sc = parts[0]
		case 2:
			db, sc = parts[0], parts[1]
		default:
			return nil, syntaxErr("schema expected")
		}
	}
	if f := s.schemaFault(db, sc); f != nil {
		return nil, f
	}
	cols := []Column{{Name: "created_on", Type: "VARCHAR"}, {Name: "name", Type: "VARCHAR"},
		{Name: "database_name", Type: "VARCHAR"}, {Name: "schema_name", Type: "VARCHAR"},
		{Name: "kind", Type: "VARCHAR"}, {Name: "rows", Type: "NUMBER"}}
	var rows [][]*string
	var names []string
	for k, t := range s.tables {
		if t.Database == db && t.Schema == sc && (like == "" || strings.EqualFold(like, t.Name)) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		t := s.tables[k]
		rows = append(rows, []*string{str("2026-01-01 00:00:00.000 +0000"), str(t.Name), str(db), str(sc), str("TABLE"), str(fmt.Sprint(len(t.Rows)))})
	}
	return &result{Columns: cols, Rows: rows, StmtType: stmtSelect, Session: sess}, nil
}

// ---- stages --------------------------------------------------------------------------------

func (s *Server) stageDir(db, schema, table string) string {
	enc := func(x string) string { return hex.EncodeToString([]byte(x)) }
	return filepath.Join(s.opts.Dir, enc(db), enc(schema), enc(table))
}

// resolveStage resolves a table stage reference (text after '@') to its table key, stage
// directory and path. Only table stages (@%t, @db.schema.%t) are supported.
func (s *Server) resolveStage(sess *session, body string) (key, dir, path string, f *Fault) {
	name, path := body, ""
	inQ := false
	for i := 0; i < len(body); i++ {
		if body[i] == '"' {
			inQ = !inQ
		}
		if body[i] == '/' && !inQ {
			name, path = body[:i], body[i+1:]
			break
		}
	}
	toks, lf := lexSQL(strings.ReplaceAll(name, "%", " "))
	if lf != nil {
		return "", "", "", lf
	}
	if !strings.Contains(name, "%") {
		return "", "", "", &Fault{Code: "002003", SQLState: "02000", Message: "SQL compilation error:\nStage '" + name + "' does not exist or not authorized."}
	}
	p := &parser{t: toks}
	db, sc, tbl, f := p.objName(sess)
	if f != nil || !p.done() {
		return "", "", "", syntaxErr("invalid stage reference @%s", body)
	}
	key = db + "." + sc + "." + tbl
	if _, ok := s.tables[key]; !ok {
		return "", "", "", &Fault{Code: "002003", SQLState: "02000", Message: "SQL compilation error:\nStage '" + db + "." + sc + ".%" + tbl + "' does not exist or not authorized."}
	}
	path = strings.Trim(path, "/")
	if strings.Contains(path, "..") {
		return "", "", "", syntaxErr("invalid stage path")
	}
	return key, s.stageDir(db, sc, tbl), path, nil
}

func stageArg(p *parser) (string, bool) {
	t := p.peek()
	switch {
	case t.k == kStage:
		p.i++
		return t.s, true
	case t.k == kString && strings.HasPrefix(t.s, "@"):
		p.i++
		return t.s[1:], true
	}
	return "", false
}

// options reads KEY = value pairs (values: identifiers, strings, numbers, (...) lists).
func (p *parser) options() map[string]any {
	out := map[string]any{}
	for !p.done() {
		k := p.peek()
		if k.k != kIdent {
			break
		}
		p.i++
		if !p.eatP("=") {
			out[strings.ToUpper(k.s)] = true
			continue
		}
		if p.eatP("(") {
			var list []tok
			depth := 0
			for !p.done() {
				t := p.peek()
				p.i++
				if t.p("(") {
					depth++
				}
				if t.p(")") {
					if depth == 0 {
						break
					}
					depth--
				}
				list = append(list, t)
			}
			out[strings.ToUpper(k.s)] = list
			continue
		}
		v := p.peek()
		p.i++
		out[strings.ToUpper(k.s)] = v.s
	}
	return out
}

func optBool(o map[string]any, k string, dflt bool) bool {
	v, ok := o[k]
	if !ok {
		return dflt
	}
	s, _ := v.(string)
	return strings.EqualFold(s, "TRUE")
}

func (s *Server) execPut(sess *session, p *parser) (*result, *Fault) {
	p.eat("PUT")
	var src string
	switch t := p.peek(); {
	case t.k == kString:
		src = t.s
		p.i++
	default:
		return nil, syntaxErr("sffake: PUT takes a quoted 'file://...' path")
	}
	if !strings.HasPrefix(src, "file://") {
		return nil, syntaxErr("PUT source must be file://")
	}
	src = strings.TrimPrefix(src, "file://")
	body, ok := stageArg(p)
	if !ok {
		return nil, syntaxErr("PUT target must be a stage")
	}
	_, dir, path, f := s.resolveStage(sess, body)
	if f != nil {
		return nil, f
	}
	o := p.options()
	loc := filepath.Join(dir, filepath.FromSlash(path))
	if err := os.MkdirAll(loc, 0o700); err != nil {
		return nil, &Fault{Code: "000603", SQLState: "XX000", Message: "internal error: " + err.Error()}
	}
	srcComp := "auto_detect"
	if v, ok := o["SOURCE_COMPRESSION"].(string); ok {
		srcComp = strings.ToLower(v)
	}
	return &result{StmtType: stmtDDL, Session: sess, Upload: map[string]any{
		"command": "UPLOAD", "src_locations": []string{src}, "autoCompress": optBool(o, "AUTO_COMPRESS", true),
		"sourceCompression": srcComp, "overwrite": optBool(o, "OVERWRITE", false), "parallel": 4,
		"threshold": 200 << 20, "kind": nil, "operation": "Node",
		"stageInfo": map[string]any{"locationType": "LOCAL_FS", "location": loc + string(filepath.Separator), "path": path},
	}, Columns: []Column{{Name: "status", Type: "VARCHAR"}}}, nil
}

func walkFiles(root string, fn func(rel string)) error {
	return filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if info.Mode().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			fn(filepath.ToSlash(rel))
		}
		return nil
	})
}

// stageFiles lists the files of a stage under path (a directory prefix or a file).
func stageFiles(dir, path string) []string {
	var out []string
	_ = walkFiles(dir, func(rel string) {
		if path == "" || rel == path || strings.HasPrefix(rel, path+"/") {
			out = append(out, rel)
		}
	})
	sort.Strings(out)
	return out
}

func (s *Server) execRemove(sess *session, p *parser) (*result, *Fault) {
	p.i++
	body, ok := stageArg(p)
	if !ok {
		return nil, syntaxErr("REMOVE takes a stage")
	}
	_, dir, path, f := s.resolveStage(sess, body)
	if f != nil {
		return nil, f
	}
	var rows [][]*string
	for _, rel := range stageFiles(dir, path) {
		_ = os.Remove(filepath.Join(dir, filepath.FromSlash(rel)))
		rows = append(rows, []*string{str(rel), str("removed")})
	}
	return &result{Columns: []Column{{Name: "name", Type: "VARCHAR"}, {Name: "result", Type: "VARCHAR"}}, Rows: rows, StmtType: stmtSelect, Session: sess}, nil
}

func (s *Server) execList(sess *session, p *parser) (*result, *Fault) {
	p.i++
	body, ok := stageArg(p)
	if !ok {
		return nil, syntaxErr("LIST takes a stage")
	}
	_, dir, path, f := s.resolveStage(sess, body)
	if f != nil {
		return nil, f
	}
	var rows [][]*string
	for _, rel := range stageFiles(dir, path) {
		b, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		sum := md5.Sum(b)
		rows = append(rows, []*string{str(rel), str(fmt.Sprint(len(b))), str(hex.EncodeToString(sum[:])), str("Mon, 1 Jan 2026 00:00:00 GMT")})
	}
	return &result{Columns: []Column{{Name: "name", Type: "VARCHAR"}, {Name: "size", Type: "NUMBER"},
		{Name: "md5", Type: "VARCHAR"}, {Name: "last_modified", Type: "VARCHAR"}}, Rows: rows, StmtType: stmtSelect, Session: sess}, nil
}

// ---- COPY INTO -----------------------------------------------------------------------------

func (s *Server) execCopy(sess *session, p *parser) (*result, *Fault) {
	p.eat("COPY")
	if !p.eat("INTO") {
		return nil, syntaxErr("expected INTO")
	}
	db, sc, name, f := p.objName(sess)
	if f != nil {
		return nil, f
	}
	key := db + "." + sc + "." + name
	t, ok := s.tables[key]
	if !ok {
		if f := s.schemaFault(db, sc); f != nil {
			return nil, f
		}
		return nil, objNotFound("Table", name)
	}
	var cols []string
	if p.eatP("(") {
		for {
			n, ok := p.peek().name()
			if !ok {
				return nil, syntaxErr("column name expected")
			}
			p.i++
			cols = append(cols, n)
			if p.eatP(")") {
				break
			}
			if !p.eatP(",") {
				return nil, syntaxErr("expected , or )")
			}
		}
	}
	if !p.eat("FROM") {
		return nil, syntaxErr("expected FROM")
	}
	var exprs [][]tok
	var stage string
	if p.eatP("(") {
		if !p.eat("SELECT") {
			return nil, syntaxErr("expected SELECT")
		}
		var cur []tok
		depth := 0
		for !p.done() {
			tt := p.peek()
			if depth == 0 && tt.is("FROM") {
				break
			}
			p.i++
			if tt.p("(") {
				depth++
			}
			if tt.p(")") {
				depth--
			}
			if depth == 0 && tt.p(",") {
				exprs = append(exprs, cur)
				cur = nil
				continue
			}
			cur = append(cur, tt)
		}
		exprs = append(exprs, cur)
		if !p.eat("FROM") {
			return nil, syntaxErr("expected FROM in the COPY transformation")
		}
		var ok bool
		if stage, ok = stageArg(p); !ok {
			return nil, syntaxErr("the COPY transformation must read a stage")
		}
		// optional alias
		if p.peek().k == kIdent && !p.peek().is("FILES") {
			p.i++
		}
		if !p.eatP(")") {
			return nil, syntaxErr("expected ) after the COPY transformation")
		}
	} else {
		var ok bool
		if stage, ok = stageArg(p); !ok {
			return nil, syntaxErr("COPY source must be a stage")
		}
	}
	skey, dir, path, f := s.resolveStage(sess, stage)
	if f != nil {
		return nil, f
	}
	_ = skey
	o := p.options()
	if !p.done() {
		return nil, syntaxErr("unexpected '%s'", p.peek().s)
	}
	format := "CSV"
	if ff, ok := o["FILE_FORMAT"].([]tok); ok {
		fp := &parser{t: ff}
		fo := fp.options()
		if v, ok := fo["TYPE"].(string); ok {
			format = strings.ToUpper(v)
		}
	}
	if format != "JSON" && format != "PARQUET" {
		return nil, syntaxErr("sffake: FILE_FORMAT TYPE %s is not supported (JSON, PARQUET)", format)
	}
	if len(cols) == 0 {
		for _, c := range t.Columns {
			cols = append(cols, c.Name)
		}
	}
	if exprs == nil {
		return nil, syntaxErr("sffake: COPY needs a transformation (SELECT $1:col ...)")
	}
	if len(exprs) != len(cols) {
		return nil, &Fault{Code: "002020", SQLState: "21S01", Message: fmt.Sprintf("SQL compilation error:\nInsert value list does not match column list expecting %d but got %d", len(cols), len(exprs))}
	}
	colType := map[string]string{}
	for _, c := range t.Columns {
		colType[c.Name] = c.Type
	}
	for _, c := range cols {
		if _, ok := colType[c]; !ok {
			return nil, &Fault{Code: "000904", SQLState: "42000", Message: "SQL compilation error: error line 1 at position 0\ninvalid identifier '" + c + "'"}
		}
	}
	files := stageFiles(dir, path)
	if list, ok := o["FILES"].([]tok); ok {
		want := map[string]bool{}
		for _, x := range list {
			if x.k == kString {
				rel := x.s
				if path != "" {
					rel = path + "/" + x.s
				}
				want[rel] = true
			}
		}
		var sel []string
		for _, fl := range files {
			if want[fl] {
				sel = append(sel, fl)
			}
		}
		files = sel
	}
	force := optBool(o, "FORCE", false)
	purge := optBool(o, "PURGE", false)
	meta := s.loadMeta[key]
	if meta == nil {
		meta = map[string]string{}
		s.loadMeta[key] = meta
	}
	type loadedFile struct {
		rel  string
		b    []byte
		sum  string
		rows []map[string]any
	}
	var todo []loadedFile
	for _, rel := range files {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			continue
		}
		sum := md5.Sum(b)
		hs := hex.EncodeToString(sum[:])
		if !force && meta[rel] == hs {
			continue // load metadata: already loaded, unchanged
		}
		recs, err := decodeFile(format, b)
		if err != nil {
			return nil, &Fault{Code: "100069", SQLState: "22P02", Message: fmt.Sprintf("Error parsing %s: %v\n  File '%s', line 1", format, err, rel)}
		}
		var rows []map[string]any
		for li, rec := range recs {
			row := map[string]any{}
			for ci, e := range exprs {
				v, err := evalExpr(e, rec, colType[cols[ci]])
				if err != nil {
					return nil, &Fault{Code: "100038", SQLState: "22018", Message: fmt.Sprintf("%v\n  File '%s', line %d, column %s", err, rel, li+1, cols[ci])}
				}
				row[cols[ci]] = v
			}
			rows = append(rows, row)
		}
		todo = append(todo, loadedFile{rel, b, hs, rows})
	}
	if len(todo) == 0 {
		return statusResult(sess, stmtDML, "Copy executed with 0 files processed."), nil
	}
	res := &result{Columns: []Column{{Name: "file", Type: "VARCHAR"}, {Name: "status", Type: "VARCHAR"},
		{Name: "rows_parsed", Type: "NUMBER"}, {Name: "rows_loaded", Type: "NUMBER"}, {Name: "error_limit", Type: "NUMBER"},
		{Name: "errors_seen", Type: "NUMBER"}, {Name: "first_error", Type: "VARCHAR"}, {Name: "first_error_line", Type: "NUMBER"},
		{Name: "first_error_character", Type: "NUMBER"}, {Name: "first_error_column_name", Type: "VARCHAR"}},
		StmtType: stmtSelect, Session: sess}
	for _, lf := range todo {
		t.Rows = append(t.Rows, lf.rows...)
		meta[lf.rel] = lf.sum
		s.loaded = append(s.loaded, LoadedFile{Table: key, Path: lf.rel, Bytes: lf.b, MD5: lf.sum, Rows: len(lf.rows)})
		n := fmt.Sprint(len(lf.rows))
		res.Rows = append(res.Rows, []*string{str(lf.rel), str("LOADED"), str(n), str(n), str("1"), str("0"), nil, nil, nil, nil})
		if purge {
			_ = os.Remove(filepath.Join(dir, filepath.FromSlash(lf.rel)))
		}
	}
	return res, nil
}

// evalExpr evaluates a COPY transformation expression over one staged record and coerces
// it to the column type.
func evalExpr(e []tok, rec map[string]any, colType string) (any, error) {
	ep := &exprParser{t: e, rec: rec}
	v, err := ep.expr()
	if err != nil {
		return nil, err
	}
	if ep.i != len(e) {
		return nil, fmt.Errorf("sffake: unsupported expression near %q", e[ep.i].s)
	}
	return coerce(v, colType)
}

type exprParser struct {
	t   []tok
	i   int
	rec map[string]any
}

func (p *exprParser) peek() tok {
	if p.i < len(p.t) {
		return p.t[p.i]
	}
	return tok{kPunct, ""}
}

func (p *exprParser) expr() (any, error) {
	t := p.peek()
	var v any
	switch {
	case t.k == kColumn:
		p.i++
		if t.s != "1" {
			return nil, fmt.Errorf("sffake: only $1 of semi-structured files")
		}
		v = map[string]any(p.rec)
	case t.k == kString:
		p.i++
		v = t.s
	case t.k == kNumber:
		p.i++
		v = json.Number(t.s)
	case t.is("NULL"):
		p.i++
		v = nil
	case t.is("TRUE"), t.is("FALSE"):
		p.i++
		v = t.is("TRUE")
	case t.k == kIdent && p.i+1 < len(p.t) && p.t[p.i+1].p("("):
		fn := strings.ToUpper(t.s)
		p.i += 2
		arg, err := p.expr()
		if err != nil {
			return nil, err
		}
		if !p.peek().p(")") {
			return nil, fmt.Errorf("sffake: %s takes one argument", fn)
		}
		p.i++
		switch fn {
		case "PARSE_JSON":
			s, ok := arg.(string)
			if arg == nil {
				v = nil
			} else if !ok {
				return nil, fmt.Errorf("PARSE_JSON: not a string")
			} else if err := decodeJSON([]byte(s), &v); err != nil {
				return nil, fmt.Errorf("Error parsing JSON: %v", err)
			}
		case "TO_VARIANT":
			v = arg
		case "TO_VARCHAR", "TO_CHAR":
			v = toText(arg)
		default:
			return nil, fmt.Errorf("sffake: unsupported function %s", fn)
		}
	default:
		return nil, fmt.Errorf("sffake: unsupported expression near %q", t.s)
	}
	for {
		t := p.peek()
		switch {
		case t.p(":"):
			p.i++
			k := p.peek()
			if k.k != kIdent && k.k != kQuoted {
				return nil, fmt.Errorf("sffake: path element expected")
			}
			p.i++
			m, _ := v.(map[string]any)
			if k.k == kIdent {
				// unquoted path elements are case-insensitive in JSON paths? No: Snowflake
				// keeps them case-sensitive as written.
				v = m[k.s]
			} else {
				v = m[k.s]
			}
		case t.p("::"):
			p.i++
			ty := p.peek()
			p.i++
			cv, err := coerce(v, baseType(ty.s))
			if err != nil {
				return nil, err
			}
			v = cv
		default:
			return v, nil
		}
	}
}
