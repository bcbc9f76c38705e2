package main

import (
	"encoding/json"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

type destination struct {
	sdk.Base
	cfg       config
	spec      abi.EncoderSpec
	prefix    string
	start     time.Time
	end       time.Time
	split     bool
	maxBytes  int64
	up        *sdk.Upload
	enc       *sdk.Encoder
	n         int   // index of the open (or next) file
	fileRecs  int64 // records in the open file
	records   int64
	bytes     int64
	outputs   []abi.Output
	manifestK []string
}

func (d *destination) Validate(c *sdk.Config) error {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	if c.SecretSet("aws_access_key_id") != c.SecretSet("aws_secret_access_key") {
		return sdk.FieldError("aws_secret_access_key", "set both aws_access_key_id and aws_secret_access_key, or neither")
	}
	return cfg.check()
}

func (d *destination) Open(rc *sdk.RunContext) error {
	if err := rc.Config(&d.cfg); err != nil {
		return err
	}
	if err := d.cfg.check(); err != nil {
		return err
	}
	spec, err := d.cfg.encoderSpec(rc.Columns)
	if err != nil {
		return err
	}
	d.spec = spec
	d.start, d.end = rc.IntervalStart, rc.IntervalEnd
	if d.prefix, err = renderPrefix(d.cfg.Prefix, d.start, d.end); err != nil {
		return sdk.FieldError("prefix", "%v", err)
	}
	d.split = d.cfg.MaxFileSizeMB > 0
	d.maxBytes = d.cfg.MaxFileSizeMB << 20
	sdk.Log(slog.LevelInfo, "s3 export starting", "prefix", d.prefix, "format", d.cfg.FileFormat,
		"compression", d.cfg.Compression, "attempt", rc.Attempt)
	return nil
}

// openFile starts the next data file and its host encoder.
func (d *destination) openFile() error {
	n := -1
	if d.split {
		n = d.n
	}
	key := d.cfg.fileKey(d.prefix, d.start, d.end, n)
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: key, ContentType: contentType(d.cfg.FileFormat)})
	if err != nil {
		return err
	}
	enc, err := up.Encoder(d.spec)
	if err != nil {
		up.Abort()
		return err
	}
	d.up, d.enc, d.fileRecs = up, enc, 0
	return nil
}

// commitFile completes the open data file.
func (d *destination) commitFile() error {
	ci, err := d.up.Commit()
	d.up, d.enc = nil, nil
	if err != nil {
		return err
	}
	d.bytes += ci.Bytes
	d.outputs = append(d.outputs, abi.Output{Kind: "object", Name: ci.Key, Records: d.fileRecs, Bytes: ci.Bytes})
	d.manifestK = append(d.manifestK, ci.Key)
	d.n++
	return nil
}

func (d *destination) WriteBatch(b *sdk.Batch) error {
	if b.Records() == 0 {
		return nil
	}
	if d.up == nil {
		if err := d.openFile(); err != nil {
			return err
		}
	}
	if err := d.enc.WriteBatch(b); err != nil {
		return err
	}
	d.fileRecs += int64(b.Records())
	d.records += int64(b.Records())
	if d.split {
		if n := d.up.Bytes(); n >= d.maxBytes {
			return d.commitFile() // the next batch opens file n+1
		}
	}
	return nil
}

func (d *destination) Finish() (abi.Result, error) {
	if d.up != nil {
		if err := d.commitFile(); err != nil {
			return abi.Result{}, err
		}
	}
	if d.split {
		if err := d.writeManifest(); err != nil {
			return abi.Result{}, err
		}
	}
	if d.records == 0 {
		sdk.Log(slog.LevelInfo, "no events in the interval: no data file written")
	}
	_ = sdk.Metric("files_written", int64(len(d.manifestK)))
	return abi.Result{Records: d.records, Bytes: d.bytes, Outputs: d.outputs}, nil
}

// writeManifest writes {prefix}/{start}-{end}_manifest.json: {"files": [keys...]}, the
// keys as the host committed them (bucket-relative).
func (d *destination) writeManifest() error {
	files := d.manifestK
	if files == nil {
		files = []string{}
	}
	body, err := json.Marshal(struct {
		Files []string `json:"files"`
	}{files})
	if err != nil {
		return err
	}
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: manifestKey(d.prefix, d.start, d.end), ContentType: "application/json"})
	if err != nil {
		return err
	}
	if _, err := up.Write(body); err != nil {
		up.Abort()
		return err
	}
	ci, err := up.Commit()
	if err != nil {
		return err
	}
	d.bytes += ci.Bytes
	d.outputs = append(d.outputs, abi.Output{Kind: "object", Name: ci.Key, Bytes: ci.Bytes})
	return nil
}

// nonRetryable are the S3 error codes PostHog does not retry, and retryable the ones the
// host might report with a fatal status but that are transient.
var (
	s3Codes = sdk.ErrorCodes{Destination: "S3", Fatal: map[string]bool{"NoSuchBucket": true, "AccessDenied": true, "InvalidAccessKeyId": true,
		"SignatureDoesNotMatch": true, "InvalidBucketName": true, "AllAccessDisabled": true,
		"AccountProblem": true, "ExpiredToken": true, "InvalidToken": true, "KMS.AccessDeniedException": true,
		"KMS.NotFoundException": true, "KMS.DisabledException": true, "KeyTooLongError": true,
		"InvalidEncryptionAlgorithmError": true, "PermanentRedirect": true, "AuthorizationHeaderMalformed": true},
		Retryable: map[string]bool{"SlowDown": true, "RequestTimeout": true, "InternalError": true,
			"ServiceUnavailable": true, "OperationAborted": true, "RequestTimeTooSkewed": true}}
)

// Classify follows PostHog's S3 destination: missing bucket, bad credentials, an invalid
// key, a bad endpoint and an unsupported format or compression fail the run; the rest
// (throttling, timeouts, 5xx, resets, unknown errors) is retried.
func (d *destination) Classify(e *abi.Error, attempt int) abi.Classification {
	if c, ok := s3Codes.Classify(e); ok {
		return c
	}
	return sdk.DefaultClassify(e, attempt)
}

// Test checks the config, renders a key, and checks write access to the bucket without
// leaving data: an object capability check operation when the host has one, else an upload
// that is opened, written and aborted.
func (d *destination) Test(rc *sdk.RunContext) (abi.TestReport, error) {
	var t sdk.TestSteps
	step := t.Step
	if !step("config", d.Open(rc), "config is valid") {
		return t.Report, nil
	}
	key := d.cfg.fileKey(d.prefix, d.start, d.end, map[bool]int{true: 0, false: -1}[d.split])
	step("object key", nil, "files of this interval would be written as "+key)

	var resp map[string]any
	err := sdk.Call(abi.CapObject, map[string]string{"op": "check"}, &resp)
	if err == nil {
		step("bucket access", nil, "the host checked the bucket and credentials")
		return t.Report, nil
	}
	if !sdk.IsStatus(err, abi.StatusUnimplemented) {
		step("bucket access", err, "")
		return t.Report, nil
	}
	probe := joinKey(d.prefix, ".sluice-test-"+rc.RunID)
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: probe, ContentType: "text/plain"})
	if err == nil {
		_, err = up.Write([]byte("sluice destination test\n"))
		if aerr := up.Abort(); err == nil {
			err = aerr
		}
	}
	step("bucket access", err, "opened, wrote and aborted an upload at "+probe+" (nothing was kept)")
	return t.Report, nil
}
