// Command example is a minimal Sluice destination that does its per-record work in the
// guest: it decodes each batch with Batch.Events, formats its own JSON lines and streams
// them into one object per run with upload_write. It is the per-record route of
// docs/plugin-authors.md (the s3 plugin shows the faster host-encoder route), the guest-side
// benchmark counterpart, and what the SDK's Example test mirrors.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o example.wasm ./plugins/example
package main

import (
	"encoding/hex"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

type destination struct {
	sdk.Base
	up      *sdk.Upload
	buf     []byte
	records int64
}

// Open starts one upload named after the interval: a retry overwrites it.
func (d *destination) Open(rc *sdk.RunContext) error {
	key := rc.IntervalStart.UTC().Format(time.RFC3339) + "-" + rc.IntervalEnd.UTC().Format(time.RFC3339) + ".jsonl"
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: key, ContentType: "application/jsonl"})
	d.up = up
	return err
}

// WriteBatch formats each event as one JSON line, flushing every 64 KiB.
func (d *destination) WriteBatch(b *sdk.Batch) error {
	err := b.Events(func(e *abi.Event) error {
		d.buf = appendEvent(d.buf, e)
		d.records++
		if len(d.buf) >= 64<<10 {
			return d.flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return d.flush()
}

func (d *destination) flush() error {
	if len(d.buf) == 0 {
		return nil
	}
	_, err := d.up.Write(d.buf)
	d.buf = d.buf[:0]
	return err
}

// Finish commits the object.
func (d *destination) Finish() (abi.Result, error) {
	ci, err := d.up.Commit()
	if err != nil {
		return abi.Result{}, err
	}
	return abi.Result{Records: d.records, Bytes: ci.Bytes,
		Outputs: []abi.Output{{Kind: "object", Name: ci.Key, Records: d.records, Bytes: ci.Bytes}}}, nil
}

func appendEvent(b []byte, e *abi.Event) []byte {
	b = append(b, `{"uuid":"`...)
	b = appendUUID(b, e.UUID[:])
	b = append(b, `","event":`...)
	b = strconv.AppendQuote(b, e.Event)
	b = append(b, `,"distinct_id":`...)
	b = strconv.AppendQuote(b, e.DistinctID)
	b = append(b, `,"properties":`...)
	b = append(b, e.Properties...)
	b = append(b, `,"timestamp":"`...)
	b = e.Timestamp.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","_inserted_at":"`...)
	b = e.InsertedAt.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	return append(b, "\"}\n"...)
}

func appendUUID(b, u []byte) []byte {
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:16])
	return append(b, s[:]...)
}

func init() {
	sdk.Register(abi.Manifest{
		Name:         "example",
		Version:      "0.1.0",
		ABIVersion:   "1.0",
		Description:  "Minimal per-record JSON Lines destination (SDK example)",
		Capabilities: []string{abi.CapObject},
		Formats:      []string{"jsonl"},
		Config: []abi.Field{
			{Name: "bucket_name", Type: abi.TypeString, Required: true, Binding: "object.bucket"},
			{Name: "endpoint_url", Type: abi.TypeString, Binding: "object.endpoint_url"},
			{Name: "region", Type: abi.TypeString, Binding: "object.region"},
			{Name: "aws_access_key_id", Type: abi.TypeString, Secret: true, Binding: "object.access_key_id"},
			{Name: "aws_secret_access_key", Type: abi.TypeString, Secret: true, Binding: "object.secret_access_key"},
		},
	}, func() sdk.Destination { return &destination{} })
}

func main() {}
