package objectexport

import "github.com/sluicehq/sluice/abi"

// The manifest fields every object destination shares, with PostHog's names. The prefix is
// never bound: the plugin renders its template and puts it in the keys, so the host binds
// the bucket or container root.

// FileFields are the fields that shape the files, in the order the plugins list them:
// prefix, file_format, compression, max_file_size_mb, legacy_parquet_extension (default
// legacyParquet) and partition_by. store is "bucket" or "container".
func FileFields(store string, legacyParquet bool) []abi.Field {
	return []abi.Field{PrefixField(store), FileFormatField(), CompressionField(), MaxFileSizeField(),
		LegacyParquetExtensionField(legacyParquet), PartitionByField()}
}

// PrefixField is the prefix template field; store is "bucket" or "container".
func PrefixField(store string) abi.Field {
	return abi.Field{Name: "prefix", Type: abi.TypeString, Default: "",
		Description: "Key prefix; may use {year} {month} {day} {hour} {minute} {second} (of the interval end), " +
			"{data_interval_start} {data_interval_end} {table}, and {event} with partition_by: event. " +
			"Rendered by the plugin: the host binds the " + store + " root."}
}

// FileFormatField is file_format.
func FileFormatField() abi.Field {
	return abi.Field{Name: "file_format", Type: abi.TypeString, Default: FormatJSONLines,
		Enum: []string{FormatJSONLines, FormatParquet}, Description: "File format."}
}

// CompressionField is compression.
func CompressionField() abi.Field {
	return abi.Field{Name: "compression", Type: abi.TypeString, Default: "none", Enum: CompressionNames,
		Description: "Compression: of the whole file for JSONLines, of the pages for Parquet."}
}

// MaxFileSizeField is max_file_size_mb.
func MaxFileSizeField() abi.Field {
	return abi.Field{Name: "max_file_size_mb", Type: abi.TypeInteger, Default: 0,
		Description: "Split files past this size (after compression), adding a manifest object; 0 writes one file."}
}

// LegacyParquetExtensionField is legacy_parquet_extension with its default: on for a
// plugin whose Parquet files were always named .parquet.<codec> (s3), off for new ones.
func LegacyParquetExtensionField(def bool) abi.Field {
	return abi.Field{Name: "legacy_parquet_extension", Type: abi.TypeBoolean, Default: def,
		Description: "Name compressed Parquet files .parquet.<codec> (.parquet.zst) instead of .parquet " +
			"(Parquet records its codec inside the file). No effect on JSONLines."}
}

// PartitionByField is partition_by.
func PartitionByField() abi.Field {
	return abi.Field{Name: "partition_by", Type: abi.TypeString, Enum: []string{PartitionEvent},
		Description: "event: one file set per event name, under {event} in the prefix (which it requires); " +
			"at most 16 distinct event names per run. Unset: one file set per run."}
}

// ColumnsField is columns.
func ColumnsField() abi.Field {
	return abi.Field{Name: "columns", Type: abi.TypeStringList,
		Description: "Columns to export, in order (default: " + DefaultColumnsText + "). " +
			"_inserted_at is the run's inserted_at."}
}
