package snowflake

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Binding parameter names (manifest Field.binding "snowflake.<param>"), as the host passes
// them to FromBindings with the "snowflake." prefix removed.
const (
	ParamAccount              = "account"
	ParamUser                 = "user"
	ParamDatabase             = "database"
	ParamSchema               = "schema"
	ParamWarehouse            = "warehouse"
	ParamRole                 = "role"
	ParamAuthenticationType   = "authentication_type" // password | keypair
	ParamPassword             = "password"            // secret
	ParamPrivateKey           = "private_key"         // secret (PEM)
	ParamPrivateKeyPassphrase = "private_key_passphrase"
	ParamQueryTimeoutSeconds  = "query_timeout_seconds" // optional
)

// FromBindings builds a Config from an export's bound parameters: account, user, database,
// schema (required), warehouse, role, authentication_type (password, the default, or
// keypair) with password or private_key (+ private_key_passphrase), and an optional
// query_timeout_seconds. Endpoint, DisableOCSPChecks and the other knobs are left for the
// caller. The private key is parsed by New, not here.
func FromBindings(params map[string]string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(params[k]) }
	cfg := Config{
		Account:   get(ParamAccount),
		User:      get(ParamUser),
		Database:  get(ParamDatabase),
		Schema:    get(ParamSchema),
		Warehouse: get(ParamWarehouse),
		Role:      get(ParamRole),
		AuthType:  strings.ToLower(get(ParamAuthenticationType)),
	}
	for _, req := range []struct{ name, v string }{{ParamAccount, cfg.Account}, {ParamUser, cfg.User},
		{ParamDatabase, cfg.Database}, {ParamSchema, cfg.Schema}} {
		if req.v == "" {
			return cfg, fmt.Errorf("snowflake: the destination config binds no %s (snowflake.%s)", req.name, req.name)
		}
	}
	switch cfg.AuthType {
	case "", AuthPassword:
		cfg.AuthType = AuthPassword
		cfg.Password = params[ParamPassword]
		if cfg.Password == "" {
			return cfg, errors.New("snowflake: password authentication needs a password (snowflake.password)")
		}
	case AuthKeyPair, "key_pair", "key-pair":
		cfg.AuthType = AuthKeyPair
		cfg.PrivateKeyPEM = []byte(params[ParamPrivateKey])
		cfg.PrivateKeyPassphrase = params[ParamPrivateKeyPassphrase]
		if strings.TrimSpace(params[ParamPrivateKey]) == "" {
			return cfg, errors.New("snowflake: key-pair authentication needs a private key (snowflake.private_key)")
		}
	default:
		return cfg, fmt.Errorf("snowflake: unknown authentication_type %q (want password or keypair)", cfg.AuthType)
	}
	if s := get(ParamQueryTimeoutSeconds); s != "" {
		d, err := time.ParseDuration(s + "s")
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("snowflake: invalid query_timeout_seconds %q", s)
		}
		cfg.QueryTimeout = d
	}
	return cfg, nil
}
