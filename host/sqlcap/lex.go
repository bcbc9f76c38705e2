package sqlcap

import (
	"strings"
)

// ---- lexer ---------------------------------------------------------------------------------
//
// The statement policy works on tokens, never on substrings: string literals, quoted
// identifiers, comments and dollar quotes are read as what they are, so a keyword inside a
// literal is not a keyword, and a keyword hidden in a comment is not seen at all.

type tokKind int

const (
	tIdent  tokKind = iota // bare identifier or keyword (text as written)
	tQuoted                // "quoted" (postgres, clickhouse) or `quoted` (clickhouse) identifier, unquoted
	tString                // string literal (text: the value)
	tNumber                // numeric literal
	tParam                 // $N (postgres) or ? (clickhouse)
	tPunct                 // one punctuation character, or a multi-character operator
)

type token struct {
	kind tokKind
	text string
}

func (t token) is(kw string) bool { return t.kind == tIdent && strings.EqualFold(t.text, kw) }

func (t token) punct(p string) bool { return t.kind == tPunct && t.text == p }

func (t token) upper() string { return strings.ToUpper(t.text) }

// lex splits one dialect's SQL into tokens, skipping comments. It errs (denied) on
// unterminated literals, identifiers and comments, and on bytes it does not know outside
// them: what it cannot read, the policy does not allow.
func lex(d dialect, sql string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-',
			d == clickhouse && c == '#' && i+1 < len(sql) && sql[i+1] == '!':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			n, ok := blockComment(sql[i:])
			if !ok {
				return nil, denied("unterminated comment")
			}
			i += n
		case c == '"' || (d == clickhouse && c == '`'):
			s, n, ok := readQuoted(sql[i:], c, d == clickhouse)
			if !ok {
				return nil, denied("unterminated quoted identifier")
			}
			toks = append(toks, token{tQuoted, s})
			i += n
		case c == '\'':
			s, n, ok := readString(sql[i:], d == clickhouse)
			if !ok {
				return nil, denied("unterminated string literal")
			}
			toks = append(toks, token{tString, s})
			i += n
		case d == postgres && (c == 'E' || c == 'e') && i+1 < len(sql) && sql[i+1] == '\'':
			s, n, ok := readString(sql[i+1:], true)
			if !ok {
				return nil, denied("unterminated string literal")
			}
			toks = append(toks, token{tString, s})
			i += n + 1
		case d == postgres && c == '$' && i+1 < len(sql) && isDigit(sql[i+1]):
			j := i + 1
			for j < len(sql) && isDigit(sql[j]) {
				j++
			}
			toks = append(toks, token{tParam, sql[i:j]})
			i = j
		case d == postgres && c == '$':
			// Dollar quoting: $tag$ ... $tag$ (tag empty or an identifier).
			j := i + 1
			for j < len(sql) && isIdentChar(sql[j]) {
				j++
			}
			if j >= len(sql) || sql[j] != '$' || (j > i+1 && isDigit(sql[i+1])) {
				return nil, denied("unexpected $ outside a literal")
			}
			tag := sql[i : j+1]
			end := strings.Index(sql[j+1:], tag)
			if end < 0 {
				return nil, denied("unterminated dollar-quoted string")
			}
			toks = append(toks, token{tString, sql[j+1 : j+1+end]})
			i = j + 1 + end + len(tag)
		case d == clickhouse && c == '?':
			toks = append(toks, token{tParam, "?"})
			i++
		case isDigit(c) || (c == '.' && i+1 < len(sql) && isDigit(sql[i+1])):
			j := i
			for j < len(sql) && (isIdentChar(sql[j]) || sql[j] == '.' ||
				((sql[j] == '+' || sql[j] == '-') && (sql[j-1] == 'e' || sql[j-1] == 'E'))) {
				j++
			}
			toks = append(toks, token{tNumber, sql[i:j]})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(sql) && (isIdentChar(sql[j]) || (d == postgres && sql[j] == '$')) {
				j++
			}
			toks = append(toks, token{tIdent, sql[i:j]})
			i = j
		case c >= 0x80:
			return nil, denied("unexpected non-ASCII character outside literals and quoted identifiers")
		case c == ':' && i+1 < len(sql) && sql[i+1] == ':':
			toks = append(toks, token{tPunct, "::"})
			i += 2
		case strings.IndexByte("(),.;=<>+-*/%|&!~^[]{}:@#?", c) >= 0:
			toks = append(toks, token{tPunct, string(c)})
			i++
		default:
			return nil, denied("unexpected character %q", string(c))
		}
	}
	return toks, nil
}

// blockComment reads a /* */ comment at the start of s (postgres nests them).
func blockComment(s string) (int, bool) {
	depth := 0
	for i := 0; i+1 < len(s); i++ {
		switch {
		case s[i] == '/' && s[i+1] == '*':
			depth++
			i++
		case s[i] == '*' && s[i+1] == '/':
			depth--
			i++
			if depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// readQuoted reads an identifier quoted by q at the start of s; a doubled q is an escaped
// one, and with backslashes (clickhouse) \q too.
func readQuoted(s string, q byte, backslashes bool) (string, int, bool) {
	var b strings.Builder
	for j := 1; j < len(s); j++ {
		switch {
		case backslashes && s[j] == '\\' && j+1 < len(s):
			b.WriteByte(s[j+1])
			j++
		case s[j] == q && j+1 < len(s) && s[j+1] == q:
			b.WriteByte(q)
			j++
		case s[j] == q:
			return b.String(), j + 1, true
		default:
			b.WriteByte(s[j])
		}
	}
	return "", 0, false
}

// readString reads a quoted string literal at the start of s (a doubled quote is one quote); with backslashes
// (clickhouse, postgres E'...') a backslash escapes the next byte.
func readString(s string, backslashes bool) (string, int, bool) {
	return readQuoted(s, '\'', backslashes)
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) }
