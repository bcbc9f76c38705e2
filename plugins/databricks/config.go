package main

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/sdk"
)

// config is the export's non-secret config. The secrets (client_secret, access_token) are
// bound to the http capability and never reach the plugin: it names them as
// {secret:client_secret} and {secret:access_token}.
type config struct {
	ServerHostname  string `json:"server_hostname"`
	HTTPPath        string `json:"http_path"`
	Catalog         string `json:"catalog"`
	Schema          string `json:"schema"`
	TableName       string `json:"table_name"`
	UseVariantType  bool   `json:"use_variant_type"`
	SchemaEvolution bool   `json:"use_automatic_schema_evolution"`
	ClientID        string `json:"client_id"`
	Volume          string `json:"volume"`
	RowsPerFile     int    `json:"rows_per_file"`
	StatementWaitS  int    `json:"statement_timeout_seconds"`
}

const (
	maxRowsPerFile = 1_000_000
	// maxStatementWaitS keeps the server's wait_timeout under the request's timeout (the
	// host caps a request at 30 s by default).
	maxStatementWaitS = 20
	// maxFileBytes closes a file once its body holds this much: half the http capability's
	// 32 MiB of open bodies per run, leaving room for the row group still being encoded.
	maxFileBytes = 16 << 20
)

// warehouseRE finds the SQL warehouse id in an http_path: /sql/1.0/warehouses/<id>
// (Databricks' JDBC/ODBC path; the Statement Execution API takes the id alone).
var warehouseRE = regexp.MustCompile(`^/?sql/[0-9.]+/warehouses/([A-Za-z0-9_-]+)/?$`)

func (c *config) warehouseID() (string, error) {
	m := warehouseRE.FindStringSubmatch(strings.TrimSpace(c.HTTPPath))
	if m == nil {
		return "", sdk.FieldError("http_path", "want a SQL warehouse path /sql/1.0/warehouses/<id> (the warehouse's Connection details), got %q", c.HTTPPath)
	}
	return m[1], nil
}

// check validates the config; secretsSet says which secret fields have a value (nil: not
// known, as in Open, where the host already validated them).
func (c *config) check(secretsSet func(string) bool) error {
	if err := checkHostname(c.ServerHostname); err != nil {
		return err
	}
	if _, err := c.warehouseID(); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"catalog", c.Catalog}, {"schema", c.Schema}, {"table_name", c.TableName}, {"volume", c.Volume}} {
		if err := checkIdentifier(f.v); err != nil {
			return sdk.FieldError(f.name, "%v", err)
		}
	}
	if c.RowsPerFile < 1 || c.RowsPerFile > maxRowsPerFile {
		return sdk.FieldError("rows_per_file", "must be from 1 to %d, got %d", maxRowsPerFile, c.RowsPerFile)
	}
	if c.StatementWaitS < 5 || c.StatementWaitS > maxStatementWaitS {
		return sdk.FieldError("statement_timeout_seconds", "must be from 5 to %d, got %d", maxStatementWaitS, c.StatementWaitS)
	}
	if secretsSet == nil {
		return nil
	}
	// client_id chooses OAuth; without it, the personal access token.
	switch {
	case c.ClientID != "" && !secretsSet("client_secret"):
		return sdk.FieldError("client_secret", "client_id is set: its OAuth secret is required")
	case c.ClientID == "" && !secretsSet("access_token"):
		if secretsSet("client_secret") {
			return sdk.FieldError("client_id", "client_secret is set: the OAuth client id (the service principal's application id) is required with it")
		}
		return sdk.FieldError("client_id", "set an OAuth client (client_id and client_secret) or a personal access token (access_token)")
	}
	return nil
}

// checkHostname accepts a bare host name (the workspace's Server hostname, reached over
// HTTPS) or an http(s) URL with no path: the latter points tests at a loopback fake.
func checkHostname(h string) error {
	h = strings.TrimSpace(h)
	raw := h
	if !strings.Contains(h, "://") {
		raw = "https://" + h
	}
	u, err := url.Parse(raw)
	if err != nil || h == "" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" ||
		(u.Scheme != "https" && u.Scheme != "http") {
		return sdk.FieldError("server_hostname", "want the workspace's host name, e.g. dbc-a1b2c3d4-e5f6.cloud.databricks.com (or an http(s) URL with no path), got %q", h)
	}
	return nil
}

// checkIdentifier accepts any Unity Catalog name the plugin can quote safely (backticks).
func checkIdentifier(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > 255 {
		return fmt.Errorf("is longer than 255 characters")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '/' || r == '.' || r == '`' {
			return fmt.Errorf("%q: control characters, '/', '.' and '`' are not allowed", s)
		}
	}
	return nil
}
