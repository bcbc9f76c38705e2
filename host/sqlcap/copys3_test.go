package sqlcap

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/host/runtime"
)

// TestPolicyCopyS3: Redshift's COPY FROM 's3://...' is the one COPY a postgres binding
// allows; every other source, option form or table outside the schema is refused.
func TestPolicyCopyS3(t *testing.T) {
	p := policy{d: postgres, database: "dev", schema: "analytics"}
	for _, sql := range []string{
		`COPY sluice_stage_r1 ("uuid", "event") FROM 's3://my-bucket/exports/r1-g0/manifest.json' IAM_ROLE 'arn:aws:iam::123456789012:role/load' MANIFEST FORMAT AS JSON 'auto' GZIP TIMEFORMAT 'auto' REGION 'us-east-1'`,
		`COPY analytics.events FROM 's3://b.example/k' ACCESS_KEY_ID '{secret:aws_access_key_id}' SECRET_ACCESS_KEY '{secret:aws_secret_access_key}' MAXERROR 0;`,
		`copy events from 's3://bucket/a=1/b.json.gz' CREDENTIALS 'aws_access_key_id={secret:k};aws_secret_access_key={secret:s}' json 'auto'`,
	} {
		c, err := p.check(sql)
		if err != nil {
			t.Errorf("%s: refused: %v", sql, err)
			continue
		}
		if c.kind != stmtCopyS3 || len(c.tables) != 1 {
			t.Errorf("%s: %+v", sql, c)
		}
	}
	for sql, msg := range map[string]string{
		`COPY events FROM STDIN`:                                            "COPY is only allowed as Redshift's",
		`COPY events FROM '/etc/passwd'`:                                    "COPY reads only from an s3://bucket/key URL",
		`COPY events FROM 's3://bkt/../../etc/passwd'`:                      "no ..",
		`COPY events FROM 's3://bkt//x'`:                                    "no //",
		`COPY events FROM PROGRAM 'curl evil'`:                              "COPY is only allowed as Redshift's",
		`COPY events TO 's3://bkt/k'`:                                       "COPY is only allowed as Redshift's",
		`COPY other.events FROM 's3://bkt/k'`:                               `schema "other" is outside the bound schema`,
		`COPY events FROM 's3://bkt/k' WITH (FORMAT csv)`:                   "COPY ... WITH is not allowed",
		`COPY events FROM 's3://bkt/k' IAM_ROLE 'x' (FORMAT csv)`:           "COPY options are words, string literals and numbers",
		`COPY events FROM 's3://bkt/k' REGION '{secret:aws_access_key_id}'`: "may only follow ACCESS_KEY_ID",
		`COPY events (a, b FROM 's3://bkt/k'`:                               "column list must be column names",
		`COPY events FROM 's3://bkt/k'; DROP TABLE events`:                  "only one statement",
		`COPY pg_authid FROM 's3://bkt/k'`:                                  "pg_* tables are not allowed",
	} {
		_, err := p.check(sql)
		var ce *runtime.CapabilityError
		if !errors.As(err, &ce) || !strings.Contains(ce.Msg, msg) {
			t.Errorf("%s: %v, want a refusal containing %q", sql, err, msg)
		}
	}
	if _, err := (policy{d: clickhouse, database: "db"}).check(`COPY events FROM 's3://bkt/k'`); err == nil {
		t.Error("clickhouse accepted a COPY")
	}
}

// TestCopySecrets: the bound secrets are substituted into a COPY's credential literals only,
// an unknown name is refused, and error messages never carry a secret.
func TestCopySecrets(t *testing.T) {
	b, err := Bind(NewPools(Config{}), map[string]string{"driver": "postgres", "host": "127.0.0.1", "database": "dev",
		"user": "u", "password": "hunter2-pw", "secret_aws_access_key_id": "AKIAEXAMPLE", "secret_aws_secret_access_key": "s3cr3t/Key+="})
	if err != nil {
		t.Fatal(err)
	}
	sub := func(sql string) (string, error) {
		c, err := b.pol.check(sql)
		if err != nil {
			return "", err
		}
		return b.withSecrets(c, sql)
	}
	got, err := sub(`COPY events FROM 's3://bkt/k' ACCESS_KEY_ID '{secret:aws_access_key_id}' SECRET_ACCESS_KEY '{secret:aws_secret_access_key}' GZIP`)
	if want := `COPY events FROM 's3://bkt/k' ACCESS_KEY_ID 'AKIAEXAMPLE' SECRET_ACCESS_KEY 's3cr3t/Key+=' GZIP`; err != nil || got != want {
		t.Errorf("substituted %q %v, want %q", got, err, want)
	}
	if got, err := sub(`SELECT '{secret:aws_secret_access_key}' FROM events`); err != nil || strings.Contains(got, "s3cr3t") {
		t.Errorf("a SELECT got the secret: %q %v", got, err)
	}
	if _, err := sub(`COPY events FROM 's3://bkt/k' ACCESS_KEY_ID '{secret:nope}'`); err == nil || !strings.Contains(err.Error(), "sql.secret_nope") {
		t.Errorf("unknown secret: %v", err)
	}
	if _, err := sub(`COPY events FROM 's3://bkt/k' ACCESS_KEY_ID 'x' /* {secret:aws_secret_access_key} */`); err == nil {
		t.Error("a secret in a comment was substituted")
	}
	if _, err := sub(`COPY events ("{secret:aws_secret_access_key}") FROM 's3://bkt/k' ACCESS_KEY_ID 'x'`); err == nil {
		t.Error("a secret in an identifier was substituted")
	}
	if s := b.scrub("bad key AKIAEXAMPLE / s3cr3t/Key+= / hunter2-pw"); strings.Contains(s, "AKIA") || strings.Contains(s, "s3cr3t") || strings.Contains(s, "hunter2") {
		t.Errorf("scrub left a secret: %s", s)
	}
	if _, err := Bind(NewPools(Config{}), map[string]string{"driver": "postgres", "host": "h", "database": "d", "user": "u", "secret_Bad-Name": "x"}); err == nil {
		t.Error("a malformed secret binding was accepted")
	}
}
