// Command snowflake is Sluice's Snowflake destination plugin. Like PostHog's Snowflake
// batch export, a run creates the events table if missing, stages its events as
// host-encoded, compressed files of ~100-250 MB in the table's stage (the `snowflake_stage`
// sink: the host PUTs them; the guest never touches a record) under a path deterministic
// per run, then loads them with one `COPY INTO table(cols) FROM (SELECT $1:col ...)
// FILE_FORMAT=(TYPE=...) PURGE=TRUE`; Snowflake's load metadata keeps a retried attempt,
// which re-stages the same files, from loading them twice. The host holds the password or
// private key; the plugin sees neither, nor any other schema. Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o snowflake.wasm ./plugins/snowflake
package main

import (
	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// Version of the plugin.
const Version = "0.1.0"

func manifest() abi.Manifest {
	return abi.Manifest{
		Name:         "snowflake",
		Version:      Version,
		ABIVersion:   "1.0",
		Description:  "Snowflake: PUT host-encoded files into the table stage, then COPY INTO the events table",
		Capabilities: []string{abi.CapSnowflake},
		Formats:      []string{"jsonl", "parquet"},
		Config: []abi.Field{
			{Name: "account", Type: abi.TypeString, Required: true, Binding: "snowflake.account",
				Description: "Account identifier (orgname-accountname, or the account locator with its region)."},
			{Name: "user", Type: abi.TypeString, Required: true, Binding: "snowflake.user",
				Description: "User to log in as."},
			{Name: "authentication_type", Type: abi.TypeString, Default: AuthPassword, Enum: []string{AuthPassword, AuthKeyPair},
				Binding: "snowflake.authentication_type", Description: "password, or keypair (RSA key-pair authentication)."},
			{Name: "password", Type: abi.TypeString, Secret: true, Binding: "snowflake.password",
				Description: "Password (authentication_type password)."},
			{Name: "private_key", Type: abi.TypeString, Secret: true, Binding: "snowflake.private_key",
				Description: "RSA private key, PEM (PKCS#8, optionally encrypted, or PKCS#1) (authentication_type keypair)."},
			{Name: "private_key_passphrase", Type: abi.TypeString, Secret: true, Binding: "snowflake.private_key_passphrase",
				Description: "Passphrase of an encrypted private key."},
			{Name: "database", Type: abi.TypeString, Required: true, Binding: "snowflake.database",
				Description: "Database of the table."},
			{Name: "schema", Type: abi.TypeString, Required: true, Binding: "snowflake.schema",
				Description: "Schema of the table."},
			{Name: "table_name", Type: abi.TypeString, Default: "events",
				Description: "Table to write to (created if missing; the name is used quoted, so case-sensitive, as PostHog does)."},
			{Name: "warehouse", Type: abi.TypeString, Binding: "snowflake.warehouse",
				Description: "Warehouse running the COPY (empty: the user's default)."},
			{Name: "role", Type: abi.TypeString, Binding: "snowflake.role",
				Description: "Role to use (empty: the user's default)."},
			{Name: "file_format", Type: abi.TypeString, Default: FormatJSONLines, Enum: []string{FormatJSONLines, FormatParquet},
				Description: "Format of the staged files (encoded by the host)."},
			{Name: "compression", Type: abi.TypeString, Default: "gzip", Enum: []string{"gzip", "zstd", "none"},
				Description: "Compression of JSON Lines files (Parquet files compress their pages with zstd)."},
			{Name: "max_file_size_mb", Type: abi.TypeInteger, Default: 200,
				Description: "Staged files are split at about this many MB, compressed (Snowflake recommends 100-250)."},
		},
	}
}

func init() {
	sdk.Register(manifest(), func() sdk.Destination { return &destination{} })
}

func main() {}
