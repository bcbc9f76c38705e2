package bigquery

import (
	"regexp"
	"strings"
	"unicode"
)

// tableIDRE is the table ids the capability accepts: no dots, backticks or other
// datasets can be named.
var tableIDRE = lenRE{regexp.MustCompile(`^[A-Za-z0-9_]+$`), 1024}

// lenRE is a character-class regexp with a length cap (RE2 repeats stop at 1000).
type lenRE struct {
	re  *regexp.Regexp
	max int
}

func (l lenRE) MatchString(s string) bool { return len(s) <= l.max && l.re.MatchString(s) }

// jobPrefixRE is the job id prefixes the plugin may give (BigQuery job ids: letters,
// digits, _ and -, up to 1024; the capability appends up to 4 characters).
var jobPrefixRE = lenRE{regexp.MustCompile(`^[A-Za-z0-9_-]+$`), 1000}

func checkTable(t string) error {
	if !tableIDRE.MatchString(t) {
		return badArg("invalid table id %q: want [A-Za-z0-9_]{1,1024}, relative to the bound dataset", truncate(t, 100))
	}
	return nil
}

// isStage reports whether t is a stage table: the only tables that may be dropped,
// replaced or truncated.
func isStage(t string) bool { return strings.HasPrefix(t, "stage_") }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ---- statement policy ----------------------------------------------------------------------

type tokKind int

const (
	tIdent  tokKind = iota // bare identifier or keyword
	tQuoted                // `backtick identifier`
	tString                // string or bytes literal
	tNumber                // numeric literal
	tPunct                 // one punctuation character
	tParam                 // @name or ?
)

type token struct {
	kind tokKind
	text string // identifier (unquoted for tQuoted), punctuation char, literal text
}

func (t token) is(kw string) bool { return t.kind == tIdent && strings.EqualFold(t.text, kw) }

// lex splits GoogleSQL text into tokens, skipping comments. It errs on unterminated
// literals and comments.
func lex(sql string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '#' || (c == '-' && i+1 < len(sql) && sql[i+1] == '-'):
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				return nil, denied("query: unterminated comment")
			}
			i += j + 4
		case c == '`':
			j := strings.IndexByte(sql[i+1:], '`')
			if j < 0 {
				return nil, denied("query: unterminated quoted identifier")
			}
			toks = append(toks, token{tQuoted, sql[i+1 : i+1+j]})
			i += j + 2
		case c == '\'' || c == '"' || ((c == 'r' || c == 'R' || c == 'b' || c == 'B') && i+1 < len(sql) && (sql[i+1] == '\'' || sql[i+1] == '"' || ((sql[i+1] == 'r' || sql[i+1] == 'R' || sql[i+1] == 'b' || sql[i+1] == 'B') && i+2 < len(sql) && (sql[i+2] == '\'' || sql[i+2] == '"')))):
			start := i
			raw := false
			for sql[i] != '\'' && sql[i] != '"' {
				if sql[i] == 'r' || sql[i] == 'R' {
					raw = true
				}
				i++
			}
			q := sql[i]
			delim := string(q)
			if strings.HasPrefix(sql[i:], strings.Repeat(delim, 3)) {
				delim = strings.Repeat(delim, 3)
			}
			i += len(delim)
			closed := false
			for i < len(sql) {
				if !raw && sql[i] == '\\' {
					i += 2
					continue
				}
				if strings.HasPrefix(sql[i:], delim) {
					i += len(delim)
					closed = true
					break
				}
				if len(delim) == 1 && sql[i] == '\n' {
					break
				}
				i++
			}
			if !closed {
				return nil, denied("query: unterminated string literal")
			}
			toks = append(toks, token{tString, sql[start:min(i, len(sql))]})
		case c == '@' || c == '?':
			j := i + 1
			for j < len(sql) && (isIdentChar(rune(sql[j])) || sql[j] == '@') {
				j++
			}
			toks = append(toks, token{tParam, sql[i:j]})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(sql) && (isIdentChar(rune(sql[j])) || sql[j] == '.') {
				j++
			}
			toks = append(toks, token{tNumber, sql[i:j]})
			i = j
		case isIdentChar(rune(c)):
			j := i
			for j < len(sql) && isIdentChar(rune(sql[j])) {
				j++
			}
			toks = append(toks, token{tIdent, sql[i:j]})
			i = j
		case c >= 0x80:
			return nil, denied("query: unexpected non-ASCII character outside literals")
		default:
			toks = append(toks, token{tPunct, string(c)})
			i++
		}
	}
	return toks, nil
}

func isIdentChar(r rune) bool {
	return r == '_' || r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// tableContext are the keywords after which a table path may follow.
var tableContext = map[string]bool{"FROM": true, "JOIN": true, "INTO": true, "USING": true,
	"TABLE": true, "MERGE": true, "UPDATE": true, "INSERT": true, "LIKE": true, "COPY": true,
	"CLONE": true, "EXISTS": true}

// notTable are keywords that may follow a table-context keyword without being a table.
var notTable = map[string]bool{"IF": true, "NOT": true, "EXISTS": true, "SELECT": true, "WITH": true,
	"SET": true, "ROW": true, "VALUES": true, "INTO": true, "TABLE": true, "UNNEST": true,
	"FUNCTION": true, "OPTIONS": true, "AS": true, "ON": true, "WHERE": true}

// endsFromItem are keywords that may follow a FROM item and are not an alias.
var endsFromItem = map[string]bool{"WHERE": true, "JOIN": true, "INNER": true, "LEFT": true, "RIGHT": true,
	"FULL": true, "CROSS": true, "ON": true, "USING": true, "GROUP": true, "ORDER": true, "LIMIT": true,
	"UNION": true, "WHEN": true, "WINDOW": true, "HAVING": true, "QUALIFY": true, "FOR": true,
	"TABLESAMPLE": true, "EXCEPT": true, "INTERSECT": true, "AS": true}

// Statement kinds the policy allows.
const (
	StmtInsert = "INSERT"
	StmtMerge  = "MERGE"
	StmtDrop   = "DROP_TABLE"
	StmtCreate = "CREATE_TABLE"
	StmtSelect = "SELECT" // only for dry runs (permission checks)
)

// checkStatement applies the query policy: one statement of an allowed kind whose every
// table reference resolves to the bound project and dataset. It returns the kind and the
// tables named. Anything it cannot check is denied.
func (c *Capability) checkStatement(sql string, allowSelect bool) (string, []string, error) {
	toks, err := lex(sql)
	if err != nil {
		return "", nil, err
	}
	for len(toks) > 0 && toks[len(toks)-1].kind == tPunct && toks[len(toks)-1].text == ";" {
		toks = toks[:len(toks)-1]
	}
	if len(toks) == 0 {
		return "", nil, badArg("query: empty statement")
	}
	for _, t := range toks {
		if t.kind == tPunct && t.text == ";" {
			return "", nil, denied("query: only one statement is allowed")
		}
	}
	kind, err := statementKind(toks, allowSelect)
	if err != nil {
		return "", nil, err
	}
	var tables []string
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind != tIdent || !tableContext[strings.ToUpper(t.text)] {
			continue
		}
		j := i + 1
		if j >= len(toks) {
			break
		}
		n := toks[j]
		if n.kind != tIdent && n.kind != tQuoted {
			continue // "(", a literal, a parameter
		}
		if n.kind == tIdent && notTable[strings.ToUpper(n.text)] {
			continue
		}
		segs, end := readPath(toks, j)
		kw := strings.ToUpper(t.text)
		if (kw == "FROM" || kw == "JOIN") && end < len(toks) && toks[end].kind == tPunct && toks[end].text == "(" {
			// A table-valued function: only UNNEST (handled by notTable) is allowed.
			return "", nil, denied("query: table function %s is not allowed", strings.Join(segs, "."))
		}
		table, err := c.resolveTable(segs)
		if err != nil {
			return "", nil, err
		}
		tables = append(tables, table)
		i = end - 1
		if kw == "FROM" || kw == "JOIN" {
			// Comma joins: FROM a [AS x], b ... — treat the item after a comma as a table.
			k := end
			if k < len(toks) && toks[k].is("AS") {
				k++
			}
			if k < len(toks) && toks[k].kind == tIdent && !endsFromItem[strings.ToUpper(toks[k].text)] {
				k++ // alias
			}
			if k < len(toks) && toks[k].kind == tPunct && toks[k].text == "," {
				toks[k] = token{tIdent, "FROM"} // re-scan the next item as a FROM item
				i = k - 1
			}
		}
	}
	switch kind {
	case StmtDrop:
		for _, t := range tables {
			if !isStage(t) {
				return "", nil, denied("query: only stage_* tables may be dropped (got %s)", t)
			}
		}
	case StmtCreate:
		if toks[1].is("OR") && len(tables) > 0 && !isStage(tables[0]) {
			return "", nil, denied("query: only stage_* tables may be replaced (got %s)", tables[0])
		}
	}
	return kind, tables, nil
}

func statementKind(toks []token, allowSelect bool) (string, error) {
	at := func(i int, kw string) bool { return i < len(toks) && toks[i].is(kw) }
	switch {
	case at(0, "INSERT"):
		return StmtInsert, nil
	case at(0, "MERGE"):
		return StmtMerge, nil
	case at(0, "DROP") && at(1, "TABLE"):
		return StmtDrop, nil
	case at(0, "CREATE"):
		i := 1
		if at(1, "OR") && at(2, "REPLACE") {
			i = 3
		}
		if at(i, "TABLE") && !at(i+1, "FUNCTION") {
			return StmtCreate, nil
		}
	case allowSelect && (at(0, "SELECT") || at(0, "WITH")):
		return StmtSelect, nil
	}
	first := ""
	if len(toks) > 0 {
		first = toks[0].text
	}
	return "", denied("query: statement %q is not allowed: only INSERT, MERGE, CREATE TABLE and DROP TABLE on tables of the bound dataset", truncate(first, 40))
}

// readPath reads a dotted path starting at toks[i]: identifiers and backtick-quoted
// identifiers (which may hold dots) joined by ".". It returns the segments and the index
// after the path.
func readPath(toks []token, i int) ([]string, int) {
	var segs []string
	for i < len(toks) {
		t := toks[i]
		if t.kind != tIdent && t.kind != tQuoted {
			break
		}
		if t.kind == tQuoted {
			segs = append(segs, strings.Split(t.text, ".")...)
		} else {
			segs = append(segs, t.text)
		}
		i++
		if i < len(toks) && toks[i].kind == tPunct && toks[i].text == "." {
			i++
			continue
		}
		break
	}
	return segs, i
}

// resolveTable checks that a path names a table of the bound dataset: `table` (the
// default dataset is the bound one), `dataset.table` or `project.dataset.table`.
func (c *Capability) resolveTable(segs []string) (string, error) {
	var proj, ds, table string
	switch len(segs) {
	case 1:
		table = segs[0]
	case 2:
		ds, table = segs[0], segs[1]
	case 3:
		proj, ds, table = segs[0], segs[1], segs[2]
	default:
		return "", denied("query: table path %q is not allowed", truncate(strings.Join(segs, "."), 100))
	}
	if proj != "" && proj != c.cfg.ProjectID {
		return "", denied("query: project %q is outside the bound project", truncate(proj, 100))
	}
	if ds != "" && ds != c.cfg.DatasetID {
		return "", denied("query: dataset %q is outside the bound dataset", truncate(ds, 100))
	}
	if !tableIDRE.MatchString(table) {
		return "", denied("query: invalid table name %q", truncate(table, 100))
	}
	return table, nil
}
