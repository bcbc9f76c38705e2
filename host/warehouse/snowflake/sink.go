package snowflake

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// Sink is the `snowflake_stage` upload sink: an upload's key is a path in a table stage
// of the bound schema (options.table names the table) and its bytes — a host-encoded,
// compressed JSON Lines or Parquet file — are PUT there at Commit. It implements
// runtime.ObjectStore.
type Sink struct{ c *Capability }

// Sink returns the capability's snowflake_stage sink.
func (c *Capability) Sink() *Sink { return &Sink{c: c} }

var _ runtime.ObjectStore = (*Sink)(nil)

// StageOptions are the UploadSpec.options of a snowflake_stage upload.
type StageOptions struct {
	// Table whose stage (@%table) receives the file; used quoted (case-sensitive), like
	// the plugin's statements. Required.
	Table string
	// Overwrite replaces a staged file of the same path (default true: a retried attempt
	// rewrites its files; Snowflake's load metadata then keeps COPY from loading a file it
	// already loaded).
	Overwrite bool
	// SourceCompression is PUT's SOURCE_COMPRESSION: AUTO_DETECT (default), GZIP, BZ2,
	// BROTLI, ZSTD, DEFLATE, RAW_DEFLATE or NONE.
	SourceCompression string
}

var sourceCompressions = map[string]bool{"AUTO_DETECT": true, "GZIP": true, "BZ2": true, "BROTLI": true,
	"ZSTD": true, "DEFLATE": true, "RAW_DEFLATE": true, "NONE": true}

func parseStageOptions(m map[string]any) (StageOptions, error) {
	o := StageOptions{Overwrite: true, SourceCompression: "AUTO_DETECT"}
	t, ok := m["table"].(string)
	if !ok {
		return o, badArg("snowflake_stage: option table (a table of the bound schema) is required")
	}
	if err := checkTable(t); err != nil {
		return o, err
	}
	o.Table = t
	if v, ok := m["overwrite"]; ok && v != nil {
		b, ok := v.(bool)
		if !ok {
			return o, badArg("snowflake_stage: option overwrite must be a boolean")
		}
		o.Overwrite = b
	}
	if v, ok := m["source_compression"]; ok && v != nil {
		s, ok := v.(string)
		if !ok || !sourceCompressions[strings.ToUpper(s)] {
			return o, badArg("snowflake_stage: unsupported source_compression %v", v)
		}
		o.SourceCompression = strings.ToUpper(s)
	}
	return o, nil
}

// checkStagePath validates a key: "dir/.../file", segments [A-Za-z0-9_=.-]{1,255}, no "."
// or ".." segment, at most 1024 bytes. It returns the directory ("" for the stage root) and
// the file name.
func checkStagePath(key string) (dir, file string, err error) {
	if key == "" || len(key) > 1024 || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return "", "", badArg("snowflake_stage: invalid stage path %q", truncate(key, 100))
	}
	segs := strings.Split(key, "/")
	for _, s := range segs {
		if !stagePathRE.MatchString(s) || s == "." || s == ".." {
			return "", "", badArg("snowflake_stage: invalid stage path %q: segments are [A-Za-z0-9_=.-]{1,255}", truncate(key, 100))
		}
	}
	return strings.Join(segs[:len(segs)-1], "/"), segs[len(segs)-1], nil
}

// stageRef is the quoted table stage of a table of the bound schema, with a path.
func (c *Capability) stageRef(table, dir string) string {
	ref := "@" + boundIdent(c.cfg.Database) + "." + boundIdent(c.cfg.Schema) + ".%" + quoteIdent(table)
	if dir != "" {
		ref += "/" + dir
	}
	return ref
}

// Create starts a staged file: the bytes go to a temporary file (memory stays bounded),
// which Commit PUTs with the driver.
func (s *Sink) Create(ctx context.Context, key string, opts runtime.ObjectOptions) (runtime.Upload, error) {
	c := s.c
	dir, file, err := checkStagePath(key)
	if err != nil {
		return nil, err
	}
	o, err := parseStageOptions(opts.Options)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(c.cfg.TempDir, "sluice-snowflake-")
	if err != nil {
		return nil, errorf(abi.StatusInternal, "snowflake_stage: temp dir: %v", err)
	}
	f, err := os.OpenFile(filepath.Join(tmp, file), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, errorf(abi.StatusInternal, "snowflake_stage: temp file: %v", err)
	}
	return &stageUpload{c: c, key: key, dir: dir, file: file, opts: o, tmp: tmp, f: f, sum: md5.New()}, nil
}

type stageUpload struct {
	c    *Capability
	key  string
	dir  string
	file string
	opts StageOptions
	tmp  string

	mu      sync.Mutex
	f       *os.File
	sum     hash.Hash
	written int64
	ended   bool
}

func (u *stageUpload) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ended {
		return 0, badArg("snowflake_stage: upload already ended")
	}
	if u.written+int64(len(p)) > u.c.cfg.MaxStageFileBytes {
		return 0, errorf(abi.StatusLimitExceeded, "snowflake_stage: %s exceeds the %d-byte staged file cap; split the file", u.key, u.c.cfg.MaxStageFileBytes)
	}
	n, err := u.f.Write(p)
	u.sum.Write(p[:n])
	u.written += int64(n)
	if err != nil {
		return n, errorf(abi.StatusInternal, "snowflake_stage: temp file: %v", err)
	}
	return n, nil
}

func (u *stageUpload) Written() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.written
}

// Commit PUTs the file into the table stage (the driver uploads it to the stage's cloud
// storage) and removes the temporary file whatever the outcome.
func (u *stageUpload) Commit(ctx context.Context) (runtime.ObjectInfo, error) {
	u.mu.Lock()
	if u.ended {
		u.mu.Unlock()
		return runtime.ObjectInfo{}, badArg("snowflake_stage: upload already ended")
	}
	u.ended = true
	written := u.written
	etag := hex.EncodeToString(u.sum.Sum(nil))
	u.mu.Unlock()
	defer os.RemoveAll(u.tmp)
	ref := u.c.stageRef(u.opts.Table, u.dir)
	info := runtime.ObjectInfo{Key: "@%" + u.opts.Table + "/" + u.key, Bytes: written, ETag: etag}
	if err := u.f.Close(); err != nil {
		return info, errorf(abi.StatusInternal, "snowflake_stage: temp file: %v", err)
	}
	abs, err := filepath.Abs(filepath.Join(u.tmp, u.file))
	if err != nil {
		return info, errorf(abi.StatusInternal, "snowflake_stage: %v", err)
	}
	if strings.ContainsAny(abs, "'\\*?[") {
		return info, errorf(abi.StatusInternal, "snowflake_stage: temp path %q holds characters PUT cannot take", abs)
	}
	put := fmt.Sprintf("PUT 'file://%s' '%s' AUTO_COMPRESS=FALSE SOURCE_COMPRESSION=%s OVERWRITE=%s PARALLEL=4",
		filepath.ToSlash(abs), strings.ReplaceAll(ref, "'", "''"), u.opts.SourceCompression,
		strings.ToUpper(fmt.Sprint(u.opts.Overwrite)))
	res, err := u.c.query(putContext(ctx), put, nil)
	if err != nil {
		return info, mapError("snowflake_stage PUT "+u.key, err)
	}
	for _, row := range res.Rows {
		for i, col := range res.Columns {
			if strings.EqualFold(col, "status") {
				st := strings.ToUpper(fmt.Sprint(row[i]))
				if st != "UPLOADED" && st != "SKIPPED" {
					return info, errorf(abi.StatusRetryableIO, "snowflake_stage PUT %s: status %s", u.key, st)
				}
			}
		}
	}
	return info, nil
}

// Abort drops the temporary file: nothing was staged.
func (u *stageUpload) Abort(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ended {
		return nil
	}
	u.ended = true
	_ = u.f.Close()
	return os.RemoveAll(u.tmp)
}

// String describes the upload (logs).
func (u *stageUpload) String() string {
	return fmt.Sprintf("snowflake_stage @%%%s/%s", u.opts.Table, u.key)
}
