package main

import (
	"time"

	"github.com/sluicehq/sluice/plugins/internal/objectexport"
	"github.com/sluicehq/sluice/sdk"
)

// File formats, as the config names them.
const (
	FormatJSONLines = objectexport.FormatJSONLines
	FormatParquet   = objectexport.FormatParquet
)

type config struct {
	BucketName                string   `json:"bucket_name"`
	Region                    string   `json:"region"`
	Prefix                    string   `json:"prefix"`
	FileFormat                string   `json:"file_format"`
	Compression               string   `json:"compression"`
	MaxFileSizeMB             int64    `json:"max_file_size_mb"`
	Encryption                string   `json:"encryption"`
	KMSKeyID                  string   `json:"kms_key_id"`
	EndpointURL               string   `json:"endpoint_url"`
	UseVirtualStyleAddressing bool     `json:"use_virtual_style_addressing"`
	Columns                   []string `json:"columns"`
	// LegacyParquetExtension is on when unset: exports made before the option keep their
	// .parquet.<codec> names (PostHog grandfathers them the same way).
	LegacyParquetExtension *bool  `json:"legacy_parquet_extension"`
	PartitionBy            string `json:"partition_by"`
}

// options are the shared object-export options of the config.
func (c *config) options() objectexport.Options {
	return objectexport.Options{Prefix: c.Prefix, FileFormat: c.FileFormat, Compression: c.Compression,
		MaxFileSizeMB: c.MaxFileSizeMB, Columns: c.Columns,
		LegacyParquetExtension: c.LegacyParquetExtension == nil || *c.LegacyParquetExtension,
		PartitionBy:            c.PartitionBy}
}

// decode reads the config and applies the S3-only rules.
func decode(decode func(any) error) (objectexport.Options, error) {
	var c config
	if err := decode(&c); err != nil {
		return objectexport.Options{}, err
	}
	if c.KMSKeyID != "" && c.Encryption != "aws:kms" {
		return objectexport.Options{}, sdk.FieldError("kms_key_id", "kms_key_id needs encryption aws:kms")
	}
	return c.options(), nil
}

// ---- keys (the shared naming, under the names this plugin's tests use) -----------------------

func isoTime(t time.Time) string { return objectexport.IsoTime(t) }

func renderPrefix(tmpl string, start, end time.Time) (string, error) {
	return objectexport.RenderPrefix(tmpl, start, end)
}

func (c *config) fileKey(prefix string, start, end time.Time, n int) string {
	o := c.options()
	return o.FileKey(prefix, start, end, n)
}

func manifestKey(prefix string, start, end time.Time) string {
	return objectexport.ManifestKey(prefix, start, end)
}
