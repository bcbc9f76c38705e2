package snowflake

// This file is the only one that imports the driver (github.com/snowflakedb/gosnowflake v1,
// the newest served here). Everything the capability needs from it goes through openDB,
// asSnowflakeError and putContext, so moving to gosnowflake v2 (which alone fixes an
// OCSP-related advisory against v1) is a change of this file and go.mod.

import (
	"context"
	"crypto/rsa"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	sf "github.com/snowflakedb/gosnowflake"
)

func init() {
	// The driver logs through its own global logger (every request at INFO, every failed
	// statement at ERROR); the capability maps and reports errors itself.
	_ = sf.GetLogger().SetLogLevel("OFF")
}

// openDB builds a lazy *sql.DB (no I/O) for the bound account with the driver's Config.
func openDB(cfg *Config, key *rsa.PrivateKey) (*sql.DB, error) {
	dc := sf.Config{
		Account:          cfg.Account,
		User:             cfg.User,
		Database:         cfg.Database,
		Schema:           cfg.Schema,
		Warehouse:        cfg.Warehouse,
		Role:             cfg.Role,
		Application:      "Sluice",
		Tracing:          "OFF", // the driver re-applies its level at every connect
		LoginTimeout:     cfg.LoginTimeout,
		RequestTimeout:   cfg.RequestTimeout,
		JWTExpireTimeout: time.Minute,
		MaxRetryCount:    cfg.MaxRetryCount,
		DisableTelemetry: true,
		// The driver's query-context cache and console login are not needed.
		DisableQueryContextCache:       true,
		DisableConsoleLogin:            sf.ConfigBoolTrue,
		ClientStoreTemporaryCredential: sf.ConfigBoolFalse,
		ClientRequestMfaToken:          sf.ConfigBoolFalse,
		DisableOCSPChecks:              cfg.DisableOCSPChecks,
		TmpDirPath:                     cfg.TempDir,
		Params:                         map[string]*string{},
	}
	if cfg.QueryTimeout > 0 {
		s := strconv.Itoa(int((cfg.QueryTimeout + time.Second - 1) / time.Second))
		dc.Params["STATEMENT_TIMEOUT_IN_SECONDS"] = &s
	}
	switch cfg.AuthType {
	case AuthKeyPair:
		dc.Authenticator = sf.AuthTypeJwt
		dc.PrivateKey = key
	default:
		dc.Authenticator = sf.AuthTypeSnowflake
		dc.Password = cfg.Password
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("snowflake: invalid endpoint %q: want http(s)://host:port", cfg.Endpoint)
		}
		dc.Protocol, dc.Host = u.Scheme, u.Hostname()
		if p := u.Port(); p != "" {
			if dc.Port, err = strconv.Atoi(p); err != nil {
				return nil, fmt.Errorf("snowflake: invalid endpoint port %q", p)
			}
		} else if u.Scheme == "http" {
			dc.Port = 80
		} else {
			dc.Port = 443
		}
	}
	return sql.OpenDB(sf.NewConnector(sf.SnowflakeDriver{}, dc)), nil
}

// snowflakeError is what the capability keeps of a driver error.
type snowflakeError struct {
	Number   int
	SQLState string
	QueryID  string
	text     string
}

func (e *snowflakeError) Error() string { return e.text }

func asSnowflakeError(err error) (*snowflakeError, bool) {
	var se *sf.SnowflakeError
	if !errors.As(err, &se) {
		return nil, false
	}
	return &snowflakeError{Number: se.Number, SQLState: se.SQLState, QueryID: se.QueryID, text: se.Error()}, true
}

// putContext makes a PUT report upload failures as errors rather than as result rows.
func putContext(ctx context.Context) context.Context {
	return sf.WithFileTransferOptions(ctx, &sf.SnowflakeFileTransferOptions{RaisePutGetError: true})
}

// DriverVersion is the gosnowflake version in use (docs, logs).
const DriverVersion = sf.SnowflakeGoDriverVersion
