package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// destination is one run: Parquet files encoded on the host into http_body uploads, PUT
// into a Unity Catalog volume (Files API), then COPY INTO a stage table and MERGE into the
// target on uuid (SQL Statement Execution API); the staged files and the stage are removed.
type destination struct {
	sdk.Base
	cfg    config
	sql    statements
	c      client
	ready  bool // logged in, volume and target table created
	body   *sdk.Upload
	enc    *sdk.Encoder
	inFile int
	files  []string // uploaded volume paths
	rows   int64    // rows in the uploaded files
	stage  bool     // the stage table may exist
	bytes  int64
}

func (d *destination) Validate(c *sdk.Config) error {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	return cfg.check(c.SecretSet)
}

func (d *destination) Open(rc *sdk.RunContext) error {
	*d = destination{}
	if err := rc.Config(&d.cfg); err != nil {
		return err
	}
	if err := d.cfg.check(nil); err != nil {
		return err
	}
	wh, _ := d.cfg.warehouseID()
	d.sql = newStatements(d.cfg, rc.RunID, rc.Attempt)
	d.c = client{warehouse: wh, waitS: d.cfg.StatementWaitS, auth: "Bearer {secret:access_token}"}
	return nil
}

// setup logs in (OAuth) and creates the volume and the target table, once per run, when
// the first file is due: a run without events sends no request.
func (d *destination) setup() error {
	if d.ready {
		return nil
	}
	if d.cfg.ClientID != "" {
		if err := d.c.login(d.cfg.ClientID); err != nil {
			return err
		}
	}
	for _, q := range []string{d.sql.createVolume(), d.sql.createTarget()} {
		if _, err := d.c.exec(q); err != nil {
			return err
		}
	}
	d.ready = true
	return nil
}

// WriteBatch encodes the batch into the open file (rows_per_file rows at most, cut earlier
// when the body reaches maxFileBytes) and uploads every full file.
func (d *destination) WriteBatch(b *sdk.Batch) error {
	d.c.deadline = time.Now().Add(callBudget)
	n := b.Records()
	for pos := 0; pos < n; {
		if d.body == nil {
			if err := d.openFile(); err != nil {
				return err
			}
		}
		take := min(n-pos, d.cfg.RowsPerFile-d.inFile)
		if err := d.enc.WriteRange(b, pos, take); err != nil {
			return fmt.Errorf("encode a Parquet file: %w", err)
		}
		pos += take
		d.inFile += take
		if d.inFile == d.cfg.RowsPerFile || d.body.Bytes() >= maxFileBytes {
			if err := d.upload(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *destination) openFile() error {
	body, err := sdk.HTTPBody("application/octet-stream", "", "")
	if err != nil {
		return err
	}
	enc, err := body.Encoder(abi.EncoderSpec{Format: "parquet", Compression: "zstd", Columns: fileColumns()})
	if err != nil {
		_ = body.Abort()
		return err
	}
	d.body, d.enc, d.inFile = body, enc, 0
	return nil
}

// upload closes the open file and PUTs it into the run's volume directory.
func (d *destination) upload() error {
	body, enc, rows := d.body, d.enc, d.inFile
	d.body, d.enc, d.inFile = nil, nil, 0
	defer body.Abort()
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode a Parquet file: %w", err)
	}
	if err := d.setup(); err != nil {
		return err
	}
	path := d.sql.filePath(len(d.files))
	size := body.Bytes()
	d.files = append(d.files, path) // removed by cleanup even if the PUT's answer is lost
	if err := d.c.do("PUT", filesURL("files", path)+"?overwrite=true", "", body, map[string]string{"Content-Type": "application/octet-stream"}, nil); err != nil {
		return err
	}
	d.rows += int64(rows)
	d.bytes += size
	return nil
}

// Finish uploads the last file, loads the files into the stage (COPY INTO), merges the
// stage into the target on uuid, and removes the files and the stage.
func (d *destination) Finish() (abi.Result, error) {
	d.c.deadline = time.Now().Add(callBudget)
	if d.body != nil && d.inFile > 0 {
		if err := d.upload(); err != nil {
			return abi.Result{}, err
		}
	}
	if d.body != nil {
		_ = d.body.Abort()
		d.body, d.enc = nil, nil
	}
	if len(d.files) == 0 {
		return abi.Result{Records: 0}, nil
	}
	d.stage = true
	if _, err := d.c.exec(d.sql.createStage()); err != nil {
		return abi.Result{}, err
	}
	r, err := d.c.exec(d.sql.copyInto())
	if err != nil {
		return abi.Result{}, err
	}
	copied := r.value("num_inserted_rows")
	if copied != d.rows {
		return abi.Result{}, fmt.Errorf("Databricks COPY INTO loaded %d rows from %d files holding %d rows", copied, len(d.files), d.rows)
	}
	r, err = d.c.exec(d.sql.merge())
	if err != nil {
		return abi.Result{}, err
	}
	inserted := r.value("num_inserted_rows")
	if err := d.cleanup(); err != nil {
		return abi.Result{}, err
	}
	if inserted != copied {
		sdk.Log(slog.LevelInfo, "MERGE kept rows the table already held (a retried or re-run interval)",
			"staged", copied, "inserted", inserted)
	}
	if err := errors.Join(sdk.Metric("databricks_requests", int64(d.c.requests)), sdk.Metric("databricks_rows_inserted", max(inserted, 0))); err != nil {
		return abi.Result{}, err
	}
	return abi.Result{Records: copied, Bytes: d.bytes,
		Outputs: []abi.Output{{Kind: "table", Name: d.cfg.Catalog + "." + d.cfg.Schema + "." + d.cfg.TableName, Records: copied, Bytes: d.bytes}}}, nil
}

// cleanup deletes the staged files, their directory and the stage table. A file already
// gone (404) is not an error: the answer to an earlier DELETE may have been lost.
func (d *destination) cleanup() error {
	for len(d.files) > 0 {
		if err := d.c.do("DELETE", filesURL("files", d.files[0]), "", nil, nil, nil); err != nil && !notFound(err) {
			return err
		}
		d.files = d.files[1:]
	}
	if err := d.c.do("DELETE", filesURL("directories", d.sql.dir), "", nil, nil, nil); err != nil && !notFound(err) {
		return err
	}
	if d.stage {
		if _, err := d.c.exec(d.sql.dropStage()); err != nil {
			return err
		}
		d.stage = false
	}
	return nil
}

func notFound(err error) bool {
	var e *apiError
	return errors.As(err, &e) && e.Status == 404
}

// Close removes what a failed run left (files, stage), as far as a short call allows; a
// leftover is logged, and the next attempt uses its own names.
func (d *destination) Close() error {
	if d.body != nil {
		_ = d.body.Abort()
		d.body, d.enc = nil, nil
	}
	if !d.ready || (len(d.files) == 0 && !d.stage) {
		return nil
	}
	d.c.deadline = time.Now().Add(20 * time.Second)
	if err := d.cleanup(); err != nil {
		sdk.Log(slog.LevelWarn, "could not remove the run's staged files or stage table", "dir", d.sql.dir, "stage", d.sql.stage, "error", err.Error())
	}
	return nil
}

func (d *destination) Classify(e *abi.Error, attempt int) abi.Classification {
	return classify(e, attempt)
}

// Test checks the config, the credentials (an OAuth token, or the access token on the
// first request) and the SQL warehouse (SELECT 1). It writes nothing.
func (d *destination) Test(rc *sdk.RunContext) (abi.TestReport, error) {
	var t sdk.TestSteps
	err := d.Open(rc)
	if !t.Step("config", err, "valid") {
		return t.Report, nil
	}
	d.c.deadline = time.Now().Add(callBudget)
	if d.cfg.ClientID != "" && !t.Step("oauth", d.c.login(d.cfg.ClientID), "got an access token for client "+d.cfg.ClientID) {
		return t.Report, nil
	}
	_, err = d.c.exec("SELECT 1")
	t.Step("warehouse", err, "SELECT 1 ran on warehouse "+d.c.warehouse)
	return t.Report, nil
}
