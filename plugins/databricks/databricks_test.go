package main

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

func validConfig() config {
	return config{ServerHostname: "dbc-a1b2c3d4-e5f6.cloud.databricks.com", HTTPPath: "/sql/1.0/warehouses/abc123",
		Catalog: "main", Schema: "analytics", TableName: "events", Volume: "sluice_staging", RowsPerFile: 50_000,
		StatementWaitS: 10, UseVariantType: true, SchemaEvolution: true}
}

func secrets(names ...string) func(string) bool {
	return func(n string) bool {
		for _, x := range names {
			if x == n {
				return true
			}
		}
		return false
	}
}

func TestConfigCheck(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(*config)
		secrets []string
		field   string // "" when valid
	}{
		{"pat", func(*config) {}, []string{"access_token"}, ""},
		{"oauth", func(c *config) { c.ClientID = "sp" }, []string{"client_secret"}, ""},
		{"oauth wins over a token", func(c *config) { c.ClientID = "sp" }, []string{"client_secret", "access_token"}, ""},
		{"loopback URL for tests", func(c *config) { c.ServerHostname = "http://127.0.0.1:8080" }, []string{"access_token"}, ""},
		{"https URL", func(c *config) { c.ServerHostname = "https://adb-1.2.azuredatabricks.net/" }, []string{"access_token"}, ""},
		{"no credentials", func(*config) {}, nil, "client_id"},
		{"secret without id", func(*config) {}, []string{"client_secret"}, "client_id"},
		{"id without secret", func(c *config) { c.ClientID = "sp" }, []string{"access_token"}, "client_secret"},
		{"hostname with a path", func(c *config) { c.ServerHostname = "dbc.cloud.databricks.com/sql" }, []string{"access_token"}, "server_hostname"},
		{"hostname with user info", func(c *config) { c.ServerHostname = "u:p@dbc.cloud.databricks.com" }, []string{"access_token"}, "server_hostname"},
		{"ftp", func(c *config) { c.ServerHostname = "ftp://dbc" }, []string{"access_token"}, "server_hostname"},
		{"cluster path", func(c *config) { c.HTTPPath = "sql/protocolv1/o/123/0123-abc" }, []string{"access_token"}, "http_path"},
		{"backtick", func(c *config) { c.TableName = "ev`ents" }, []string{"access_token"}, "table_name"},
		{"dot", func(c *config) { c.Schema = "a.b" }, []string{"access_token"}, "schema"},
		{"slash in volume", func(c *config) { c.Volume = "a/b" }, []string{"access_token"}, "volume"},
		{"rows", func(c *config) { c.RowsPerFile = 0 }, []string{"access_token"}, "rows_per_file"},
		{"wait", func(c *config) { c.StatementWaitS = 21 }, []string{"access_token"}, "statement_timeout_seconds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			c.edit(&cfg)
			err := cfg.check(secrets(c.secrets...))
			if c.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := sdk.ToABI(err); err == nil || got.Field != c.field {
				t.Fatalf("err %v, want one naming %s", err, c.field)
			}
		})
	}
}

func TestWarehouseID(t *testing.T) {
	for path, want := range map[string]string{"/sql/1.0/warehouses/abc123": "abc123", "sql/1.0/warehouses/a-b_c/": "a-b_c", "/sql/2.0/warehouses/x": "x"} {
		c := config{HTTPPath: path}
		if got, err := c.warehouseID(); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", path, got, err, want)
		}
	}
}

func TestStatements(t *testing.T) {
	cfg := validConfig()
	s := newStatements(cfg, "0192F3A4-run/ID", 2)
	if s.stage != "events_sluice_stage_0192f3a4_run_id_a2" || s.dir != "/Volumes/main/analytics/sluice_staging/sluice/events/0192f3a4_run_id-a2" {
		t.Fatalf("stage %q dir %q", s.stage, s.dir)
	}
	if got := s.filePath(3); got != s.dir+"/part-00003.parquet" {
		t.Errorf("file path %s", got)
	}
	for _, c := range []struct{ got, want string }{
		{s.createVolume(), "CREATE VOLUME IF NOT EXISTS `main`.`analytics`.`sluice_staging`"},
		{s.createTarget(), "CREATE TABLE IF NOT EXISTS `main`.`analytics`.`events` (`uuid` STRING, `event` STRING, `distinct_id` STRING, `person_id` STRING, `team_id` BIGINT, `properties` VARIANT, `person_properties` VARIANT, `elements_chain` STRING, `timestamp` TIMESTAMP, `created_at` TIMESTAMP, `inserted_at` TIMESTAMP, `databricks_ingested_timestamp` TIMESTAMP)"},
		{s.createStage(), "CREATE TABLE `main`.`analytics`.`events_sluice_stage_0192f3a4_run_id_a2` (`uuid` STRING, `event` STRING, `distinct_id` STRING, `person_id` STRING, `team_id` BIGINT, `properties` STRING, `person_properties` STRING, `elements_chain` STRING, `timestamp` TIMESTAMP, `created_at` TIMESTAMP, `inserted_at` TIMESTAMP)"},
		{s.copyInto(), "COPY INTO `main`.`analytics`.`events_sluice_stage_0192f3a4_run_id_a2` FROM '/Volumes/main/analytics/sluice_staging/sluice/events/0192f3a4_run_id-a2/' FILEFORMAT = PARQUET"},
		{s.dropStage(), "DROP TABLE IF EXISTS `main`.`analytics`.`events_sluice_stage_0192f3a4_run_id_a2`"},
	} {
		if c.got != c.want {
			t.Errorf("got  %s\nwant %s", c.got, c.want)
		}
	}
	m := s.merge()
	for _, want := range []string{"MERGE WITH SCHEMA EVOLUTION INTO `main`.`analytics`.`events` AS t USING (SELECT `uuid`, ",
		"PARSE_JSON(`properties`) AS `properties`", "current_timestamp() AS `databricks_ingested_timestamp`",
		"ON t.`uuid` = s.`uuid` WHEN NOT MATCHED THEN INSERT *"} {
		if !strings.Contains(m, want) {
			t.Errorf("merge lacks %q:\n%s", want, m)
		}
	}
	cfg.UseVariantType, cfg.SchemaEvolution = false, false
	m = newStatements(cfg, "r", 1).merge()
	if strings.Contains(m, "PARSE_JSON") || strings.Contains(m, "SCHEMA EVOLUTION") || !strings.Contains(m, "INSERT (`uuid`, `event`") ||
		!strings.Contains(m, "VALUES (s.`uuid`, s.`event`") {
		t.Errorf("merge without variant and evolution:\n%s", m)
	}
	if got := literal(`it's a \ path`); got != `'it\'s a \\ path'` {
		t.Errorf("literal %s", got)
	}
	if got := filesURL("files", "/Volumes/main/a b/v/x#1.parquet"); got != "/api/2.0/fs/files/Volumes/main/a%20b/v/x%231.parquet" {
		t.Errorf("files URL %s", got)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		e    apiError
		want string
	}{
		{apiError{Status: 401, ErrorCode: "UNAUTHENTICATED"}, abi.OutcomeFail},
		{apiError{Status: 403, ErrorCode: "403"}, abi.OutcomeFail},
		{apiError{Status: 401, ErrorCode: "invalid_client"}, abi.OutcomeFail},
		{apiError{Status: 400, ErrorCode: "PERMISSION_DENIED"}, abi.OutcomeFail},
		{apiError{Status: 404, ErrorCode: "NOT_FOUND"}, abi.OutcomeFail},
		{apiError{Status: 429, ErrorCode: "REQUEST_LIMIT_EXCEEDED"}, abi.OutcomeRetry},
		{apiError{Status: 503, ErrorCode: "TEMPORARILY_UNAVAILABLE"}, abi.OutcomeRetry},
		{apiError{Status: 502}, abi.OutcomeRetry},
		{apiError{Status: 400, ErrorCode: "TEMPORARILY_UNAVAILABLE"}, abi.OutcomeRetry},
		{apiError{State: "FAILED", ErrorCode: "BAD_REQUEST", Message: "[TABLE_OR_VIEW_NOT_FOUND]"}, abi.OutcomeFail},
		{apiError{State: "FAILED", ErrorCode: "TEMPORARILY_UNAVAILABLE"}, abi.OutcomeRetry},
		{apiError{State: "CANCELED"}, abi.OutcomeFail},
		{apiError{State: "TIMEOUT", ErrorCode: "DEADLINE_EXCEEDED"}, abi.OutcomeRetry},
	} {
		e := sdk.ToABI(wrap(&c.e))
		if got := classify(e, 1); got.Outcome != c.want {
			t.Errorf("%+v (code %s): %s (%s), want %s", c.e, e.Code, got.Outcome, got.Reason, c.want)
		}
	}
	// Failures with no answer follow the host status.
	if got := classify(&abi.Error{Status: abi.StatusRetryableIO.String()}, 1); got.Outcome != abi.OutcomeRetry {
		t.Errorf("retryable_io: %+v", got)
	}
	if got := classify(&abi.Error{Status: abi.StatusDenied.String()}, 1); got.Outcome != abi.OutcomeFail {
		t.Errorf("denied: %+v", got)
	}
}

func TestAnswerError(t *testing.T) {
	e := answerError("POST /oidc/v1/token", abi.HTTPResponse{Status: 401, Body: `{"error":"invalid_client","error_description":"Client authentication failed"}`})
	if e.ErrorCode != "invalid_client" || e.Message != "Client authentication failed" ||
		e.Error() != "Databricks POST /oidc/v1/token: HTTP 401: invalid_client: Client authentication failed" {
		t.Errorf("%+v: %s", e, e)
	}
	e = answerError("GET /x", abi.HTTPResponse{Status: 502, Body: "<html>bad gateway</html>"})
	if !e.Retryable || e.Message != "<html>bad gateway</html>" {
		t.Errorf("%+v", e)
	}
}
