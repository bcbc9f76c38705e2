package sqlcap

import (
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// ---- Redshift's COPY ... FROM 's3://...' and the secrets it names (SPEC 6.2) -------------
//
// A postgres binding accepts one form of COPY: Redshift's load from S3,
//
//	COPY t [(col, ...)] FROM 's3://bucket/key' option...
//
// where every option is a word, a string literal or a number (IAM_ROLE 'arn...', MANIFEST,
// FORMAT AS JSON 'auto', GZIP, REGION 'us-east-1', ACCESS_KEY_ID '...', ...). No other source
// (STDIN, PROGRAM, a server file) and no parenthesised PostgreSQL option list. On PostgreSQL
// itself the form is a syntax error, or at worst names a file under the data directory's
// "s3:" directory (no ".." is accepted), which does not exist.
//
// The plugin never holds the keys COPY needs: a string literal after ACCESS_KEY_ID,
// SECRET_ACCESS_KEY, SESSION_TOKEN or CREDENTIALS may name {secret:NAME}, which the host
// replaces with the value of the export's field bound to sql.secret_NAME, in a COPY only
// (anywhere else a {secret:...} stays as written: a plugin cannot select a secret back).

const stmtCopyS3 = "COPY FROM S3"

// secretParam starts a binding parameter holding a secret a COPY may name.
const secretParam = "secret_"

var (
	s3URLRE       = regexp.MustCompile(`^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*()/=+-]*)?$`)
	secretRefRE   = regexp.MustCompile(`\{secret:([A-Za-z0-9_]{1,64})\}`)
	secretValueRE = regexp.MustCompile(`^[A-Za-z0-9/+=_.:;-]*$`)
	secretNameRE  = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	// credentialWords may be followed by a literal naming {secret:...}.
	credentialWords = map[string]bool{"ACCESS_KEY_ID": true, "SECRET_ACCESS_KEY": true, "SESSION_TOKEN": true, "CREDENTIALS": true}
	// copyDenied are words that would turn the COPY into another source or a PostgreSQL form.
	copyDenied = map[string]bool{"STDIN": true, "STDOUT": true, "PROGRAM": true, "TO": true, "FROM": true, "WITH": true}
)

// checkCopyS3 checks the whole COPY grammar above (nothing else follows it, so no function
// call or other table can hide in it) and records the table.
func (p policy) checkCopyS3(toks []token, res *checked) (*checked, error) {
	segs, i := readPath(toks, 1)
	if len(segs) == 0 {
		return nil, denied("COPY names no table")
	}
	name, err := p.resolveTable(segs)
	if err != nil {
		return nil, err
	}
	res.tables = append(res.tables, name)
	if i < len(toks) && toks[i].punct("(") {
		for i++; ; i++ {
			if i >= len(toks) || toks[i].kind != tIdent && toks[i].kind != tQuoted {
				return nil, denied("COPY's column list must be column names")
			}
			i++
			if i < len(toks) && toks[i].punct(")") {
				i++
				break
			}
			if i >= len(toks) || !toks[i].punct(",") {
				return nil, denied("COPY's column list must be column names")
			}
		}
	}
	if i+1 >= len(toks) || !toks[i].is("FROM") || toks[i+1].kind != tString {
		return nil, denied("COPY is only allowed as Redshift's COPY t [(cols)] FROM 's3://bucket/key' ...")
	}
	url := toks[i+1].text
	if !s3URLRE.MatchString(url) || strings.Contains(url, "..") || strings.Contains(url[5:], "//") {
		return nil, denied("COPY reads only from an s3://bucket/key URL (no .., no //), not %q", truncate(url, 100))
	}
	secretOK := false
	for _, t := range toks[i+2:] {
		switch t.kind {
		case tIdent:
			if copyDenied[t.upper()] {
				return nil, denied("COPY ... %s is not allowed", t.upper())
			}
			secretOK = credentialWords[t.upper()]
			continue
		case tString:
			if strings.Contains(t.text, "{secret:") && !secretOK {
				return nil, denied("a {secret:NAME} may only follow ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN or CREDENTIALS")
			}
		case tNumber:
		default:
			return nil, denied("COPY options are words, string literals and numbers; %q is not allowed", truncate(t.text, 20))
		}
		secretOK = false
	}
	return res, nil
}

// withSecrets returns the statement with every {secret:NAME} replaced by the bound secret
// (a COPY only: the policy has checked where they stand).
func (b *Binding) withSecrets(c *checked, sql string) (string, error) {
	if c.kind != stmtCopyS3 || !strings.Contains(sql, "{secret:") {
		return sql, nil
	}
	// Only the literals the policy allowed may name secrets: not a comment, not an identifier.
	toks, err := lex(b.pol.d, sql)
	if err != nil {
		return "", err
	}
	inLiterals := 0
	for _, t := range toks {
		if t.kind == tString {
			inLiterals += strings.Count(t.text, "{secret:")
		}
	}
	if strings.Count(sql, "{secret:") != inLiterals {
		return "", denied("a {secret:NAME} may only stand in a credential's string literal")
	}
	out := secretRefRE.ReplaceAllStringFunc(sql, func(ref string) string {
		name := secretRefRE.FindStringSubmatch(ref)[1]
		v, ok := b.s.secrets[name]
		switch {
		case !ok && err == nil:
			err = &runtime.CapabilityError{Status: abi.StatusBadArgument, Code: "unknown_secret",
				Msg: "sql: the statement names {secret:" + name + "}, but the export binds no sql.secret_" + name}
		case ok && !secretValueRE.MatchString(v) && err == nil:
			err = badArg("the secret sql.secret_%s holds characters a COPY credential cannot (letters, digits and /+=_.:;- only)", name)
		}
		return v
	})
	if err != nil {
		return "", err
	}
	if strings.Contains(out, "{secret:") {
		return "", badArg("malformed {secret:NAME} in the statement")
	}
	return out, nil
}

// scrubSecrets removes the bound secrets from a message.
func (b *Binding) scrubSecrets(s string) string {
	for _, v := range b.s.secrets {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, redactedSecret)
		}
	}
	return s
}
