// Command azure-blob is Sluice's Azure Blob Storage destination plugin. It writes each run's
// events as JSON Lines or Parquet blobs named like PostHog's Azure Blob batch export (the
// same names as the s3 plugin's keys):
//
//	{prefix}/{data_interval_start}-{data_interval_end}[-{n}].{jsonl|parquet}[.{gz|br|zst|lz4|sz}]
//
// The shared object export (plugins/internal/objectexport) decides keys, format, columns,
// file splitting and partitions; the host's object capability, bound to Azure by the
// object.azure.* fields, stages the blocks of each blob and commits them. The plugin never
// sees the connection string or the account key. Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o azure-blob.wasm ./plugins/azure-blob
package main

import (
	"slices"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/plugins/internal/objectexport"
	"github.com/sluicehq/sluice/sdk"
)

// Version of the plugin.
const Version = "1.0.0"

func manifest() abi.Manifest {
	return abi.Manifest{
		Name:         "azure-blob",
		Version:      Version,
		ABIVersion:   "1.0",
		Description:  "Azure Blob Storage: JSON Lines or Parquet blobs per interval",
		Capabilities: []string{abi.CapObject},
		Formats:      []string{"jsonl", "parquet"},
		Config: slices.Concat([]abi.Field{
			{Name: "container_name", Type: abi.TypeString, Required: true, Binding: "object.azure.container",
				Description: "Blob container to write to."}},
			objectexport.FileFields("container", false), []abi.Field{
				{Name: "connection_string", Type: abi.TypeString, Secret: true, Binding: "object.azure.connection_string",
					Description: "Storage account connection string (DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...). " +
						"Or set account_name and account_key; connection_string wins when both are set."},
				{Name: "account_name", Type: abi.TypeString, Binding: "object.azure.account_name",
					Description: "Storage account name, with account_key (instead of connection_string)."},
				{Name: "account_key", Type: abi.TypeString, Secret: true, Binding: "object.azure.account_key",
					Description: "Storage account key, with account_name."},
				{Name: "endpoint_url", Type: abi.TypeString, Binding: "object.azure.endpoint_url",
					Description: "Blob service endpoint, with account_name and account_key " +
						"(default https://<account_name>.blob.core.windows.net)."},
				objectexport.ColumnsField(),
			}),
	}
}

// azureCodes are Azure Storage error codes (x-ms-error-code): bad names, missing containers
// and refused credentials fail the run; throttling and timeouts are retried.
var azureCodes = sdk.ErrorCodes{Destination: "Azure Blob Storage",
	Fatal: map[string]bool{"ContainerNotFound": true, "ContainerBeingDeleted": true, "ContainerDisabled": true,
		"AuthenticationFailed": true, "AuthorizationFailure": true, "AuthorizationPermissionMismatch": true,
		"AuthorizationProtocolMismatch": true, "AuthorizationSourceIPMismatch": true, "InvalidAuthenticationInfo": true,
		"InsufficientAccountPermissions": true, "AccountIsDisabled": true, "InvalidResourceName": true,
		"InvalidUri": true, "KeyVaultEncryptionKeyNotFound": true},
	Retryable: map[string]bool{"ServerBusy": true, "OperationTimedOut": true, "InternalError": true}}

var plugin = &objectexport.Plugin{
	Name:  "azure-blob",
	Store: "container",
	Secrets: func(c *sdk.Config) error {
		var cfg struct {
			AccountName string `json:"account_name"`
		}
		if err := c.Decode(&cfg); err != nil {
			return err
		}
		// connection_string wins when set; otherwise the account name and key are needed.
		if c.SecretSet("connection_string") {
			return nil
		}
		switch key := c.SecretSet("account_key"); {
		case key != (cfg.AccountName != ""):
			return sdk.FieldError("account_key", "set both account_name and account_key (or connection_string)")
		case !key:
			return sdk.FieldError("connection_string", "set connection_string, or account_name and account_key")
		}
		return nil
	},
	Codes: azureCodes,
}

func init() {
	objectexport.Register(manifest(), plugin)
}

func main() {}
