package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/objstore"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/sqlcap"
	"github.com/sluicehq/sluice/host/warehouse/bigquery"
	"github.com/sluicehq/sluice/host/warehouse/snowflake"
	"github.com/sluicehq/sluice/storage"
)

var errNoBucket = errors.New("the destination config binds no bucket")

// bindings binds the plugin's granted capabilities to one export's destination config: the
// object capability to its bucket (S3, GCS) or container (Azure) and prefix, or local
// directory, with its credentials, the
// bigquery capability to its project and dataset with its service-account key, the snowflake
// capability to its account, database and schema with its password or key pair. This is the
// security boundary: the plugin only ever sees handles. release frees what was bound; the
// caller calls it once the plugin session is closed.
func (h *Host) bindings(ctx context.Context, run storage.Run, e storage.BatchExport, m abi.Manifest, public map[string]any) (b runtime.Bindings, release func(), err error) {
	pluginSource := "plugin:" + e.DestinationType
	var closers []func() error
	release = func() {
		for _, c := range closers {
			if err := c(); err != nil {
				h.log.Warn("releasing a capability failed", "run_id", run.ID, "plugin", e.DestinationType, "err", err)
			}
		}
	}
	b = runtime.Bindings{
		Encoders: encoderFactory(h.cfg.EncoderWorkers),
		Log: func(level slog.Level, msg string) {
			h.runLog(ctx, run, pluginSource, level, msg)
		},
		Metric: func(name string, v int64) {
			h.log.Debug("plugin metric", "run_id", run.ID, "plugin", e.DestinationType, "name", name, "value", v)
		},
	}
	// A plugin that uses object storage only in some modes (redshift's COPY) binds no
	// object.* parameter in the others: the capability stays unbound (its calls are denied).
	if params := capBinding(abi.CapObject, m.Config, public, e.SecretConfig); slices.Contains(m.Capabilities, abi.CapObject) &&
		(len(params) > 0 || !slices.ContainsFunc(m.Capabilities, func(c string) bool { return c != abi.CapObject })) {
		store, err := openObjectStore(ctx, objectSettings{
			dataDir: h.cfg.DataDir, partSize: h.cfg.S3PartSize, conc: h.cfg.S3Concurrency,
			ambient: h.cfg.S3AmbientCredentials, gcsEndpoint: h.cfg.GCSEndpoint,
		}, params)
		if err != nil {
			return b, release, err
		}
		if c, ok := store.(io.Closer); ok { // GCS: the client's connections
			closers = append(closers, c.Close)
		}
		b.Objects = objectStore{s: store, runCtx: ctx, log: b.Log}
	}
	if slices.Contains(m.Capabilities, abi.CapBigQuery) {
		cfg, err := bigquery.FromBindings(capBinding(abi.CapBigQuery, m.Config, public, e.SecretConfig))
		if err != nil && h.cfg.BigQueryEndpoint == "" {
			return b, release, err
		}
		if h.cfg.BigQueryEndpoint != "" {
			// A loopback fake or an emulator: no key is needed (or sent).
			if err != nil && (cfg.ProjectID == "" || cfg.DatasetID == "") {
				return b, release, err
			}
			cfg.Endpoint = h.cfg.BigQueryEndpoint
		}
		bq, err := bigquery.New(ctx, cfg)
		if err != nil {
			return b, release, err
		}
		closers = append(closers, bq.Close)
		b.Warehouses = map[string]runtime.Caller{abi.CapBigQuery: bq}
		b.Sinks = map[string]runtime.ObjectStore{abi.SinkBigQueryLoad: bq.Sink()}
	}
	if slices.Contains(m.Capabilities, abi.CapSnowflake) {
		cfg, err := snowflake.FromBindings(capBinding(abi.CapSnowflake, m.Config, public, e.SecretConfig))
		if err != nil {
			return b, release, err
		}
		if h.cfg.SnowflakeEndpoint != "" {
			// A loopback fake: plain HTTP, so no certificate to check.
			cfg.Endpoint = h.cfg.SnowflakeEndpoint
			cfg.DisableOCSPChecks = true
		}
		sf, err := snowflake.New(ctx, cfg)
		if err != nil {
			return b, release, err
		}
		closers = append(closers, sf.Close)
		if b.Warehouses == nil {
			b.Warehouses = map[string]runtime.Caller{}
			b.Sinks = map[string]runtime.ObjectStore{}
		}
		b.Warehouses[abi.CapSnowflake] = sf
		b.Sinks[abi.SinkSnowflakeStage] = sf.Sink()
	}
	if slices.Contains(m.Capabilities, abi.CapHTTP) {
		hb, err := httpcap.Bind(h.cfg.HTTP, capBinding(abi.CapHTTP, m.Config, public, e.SecretConfig))
		if err != nil {
			return b, release, err
		}
		closers = append(closers, hb.Close)
		b.HTTP = hb
		if b.Sinks == nil {
			b.Sinks = map[string]runtime.ObjectStore{}
		}
		b.Sinks[abi.SinkHTTPBody] = hb.Sink()
	}
	if slices.Contains(m.Capabilities, abi.CapSQL) {
		sb, err := sqlcap.Bind(h.sql, capBinding(abi.CapSQL, m.Config, public, e.SecretConfig))
		if err != nil {
			return b, release, err
		}
		closers = append(closers, sb.Close) // rolls back a transaction the run left open
		b.SQL = sb
	}
	return b, release, nil
}

// encoderFactory returns the runtime's encoder constructor; workers > 0 sets how many
// goroutines compress one file's blocks (Config.EncoderWorkers), 0 leaves encode's default.
func encoderFactory(workers int) func(io.Writer, abi.EncoderSpec, []abi.Column) (runtime.BatchEncoder, error) {
	var opts []encode.Option
	if workers > 0 {
		opts = append(opts, encode.Workers(workers))
	}
	return func(w io.Writer, spec abi.EncoderSpec, cols []abi.Column) (runtime.BatchEncoder, error) {
		extra, err := httpcap.EncodeOptions(w, spec)
		if err != nil {
			return nil, err
		}
		enc, err := encode.New(w, spec, cols, append(slices.Clip(opts), extra...)...)
		if err != nil {
			return nil, &runtime.CapabilityError{Err: err, Status: abi.StatusBadArgument}
		}
		return enc, nil
	}
}

// objectStore adapts objstore.Store to the runtime's ObjectStore, carrying each error's
// class into the ABI status the plugin sees (retryable_io, fatal_io, denied...).
//
// An upload outlives the guest call that opened it (a plugin opens a file in one
// write_batch and commits it in finish), so it is bound to the run's context, not to the
// call's.
type objectStore struct {
	s      objstore.Store
	runCtx context.Context
	log    func(slog.Level, string) // the run's log
}

// Check is the store's access check (HeadBucket; a probe file in a local directory).
func (o objectStore) Check(ctx context.Context) error { return objError(o.s.Check(ctx)) }

func (o objectStore) Create(_ context.Context, key string, opts runtime.ObjectOptions) (runtime.Upload, error) {
	u, err := o.s.Create(o.runCtx, key, objstore.ObjectOptions{ContentType: opts.ContentType, ContentEncoding: opts.ContentEncoding, Metadata: opts.Metadata})
	if err != nil {
		return nil, objError(err)
	}
	return upload{u: u, log: o.log}, nil
}

type upload struct {
	u   objstore.Upload
	log func(slog.Level, string)
}

func (u upload) Write(p []byte) (int, error) {
	n, err := u.u.Write(p)
	return n, objError(err)
}
func (u upload) Written() int64 { return u.u.Written() }
func (u upload) Commit(ctx context.Context) (runtime.ObjectInfo, error) {
	info, err := u.u.Commit(ctx)
	if err == nil && u.log != nil {
		if info.StaleUploadsAborted > 0 {
			u.log(slog.LevelInfo, fmt.Sprintf("aborted %d stale multipart upload(s) left open at %s", info.StaleUploadsAborted, info.Key))
		}
		if info.CleanupErr != nil {
			u.log(slog.LevelWarn, fmt.Sprintf("%s is committed, but stale multipart uploads at its key may remain open "+
				"(a bucket lifecycle rule AbortIncompleteMultipartUpload removes them): %v", info.Key, info.CleanupErr))
		}
	}
	return runtime.ObjectInfo{Key: info.Key, Bytes: info.Bytes, ETag: info.ETag}, objError(err)
}
func (u upload) Abort(ctx context.Context) error { return objError(u.u.Abort(ctx)) }

func objError(err error) error {
	if err == nil {
		return nil
	}
	se := &runtime.CapabilityError{Err: err, Status: abi.StatusRetryableIO}
	var oe *objstore.Error
	if errors.As(err, &oe) {
		se.Code = oe.Code
	}
	switch {
	case errors.Is(err, objstore.ErrInvalidKey):
		se.Status = abi.StatusBadArgument
	default:
		switch objstore.Classify(err) {
		case objstore.Fatal, objstore.Denied, objstore.NotFound:
			// Authentication, permissions, a missing bucket: the destination refuses,
			// retrying cannot help (SPEC section 4: fatal_io; the S3 code says which).
			se.Status = abi.StatusFatalIO
		case objstore.Cancelled:
			se.Status = abi.StatusCancelled
		}
	}
	return se
}
