// Command versioned is a test destination built in several versions from one source
// (upgrade_e2e_test.go): -ldflags "-X main.version=2.0.0 -X main.partition=required" builds
// a version whose manifest adds a required "partition" key, which its sluice_validate
// refuses as "forbidden". Each run writes one JSON Lines object under <version>/, so the
// files show which module ran.
package main

import (
	"strconv"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

var (
	version   = "1.0.0"
	partition = "" // "required": the manifest has a required "partition" key
)

type destination struct {
	sdk.Base
	up      *sdk.Upload
	records int64
}

func (d *destination) Validate(c *sdk.Config) error {
	if c.Values["partition"] == "forbidden" {
		return sdk.FieldError("partition", "partition %q is reserved", "forbidden")
	}
	return nil
}

func (d *destination) Open(rc *sdk.RunContext) error {
	key := version + "/" + rc.IntervalEnd.UTC().Format(time.RFC3339) + ".jsonl"
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: key, ContentType: "application/jsonl"})
	d.up = up
	return err
}

func (d *destination) WriteBatch(b *sdk.Batch) error {
	var buf []byte
	err := b.Events(func(e *abi.Event) error {
		buf = strconv.AppendQuote(append(buf, `{"event":`...), e.Event)
		buf = append(buf, "}\n"...)
		d.records++
		return nil
	})
	if err != nil {
		return err
	}
	_, err = d.up.Write(buf)
	return err
}

func (d *destination) Finish() (abi.Result, error) {
	ci, err := d.up.Commit()
	if err != nil {
		return abi.Result{}, err
	}
	return abi.Result{Records: d.records, Bytes: ci.Bytes}, nil
}

func init() {
	config := []abi.Field{
		{Name: "bucket_name", Type: abi.TypeString, Required: true, Binding: "object.bucket"},
		{Name: "endpoint_url", Type: abi.TypeString, Binding: "object.endpoint_url"},
	}
	if partition == "required" {
		config = append(config, abi.Field{Name: "partition", Type: abi.TypeString, Required: true})
	}
	sdk.Register(abi.Manifest{
		Name: "versioned", Version: version, ABIVersion: "1.0",
		Description:  "test destination built in several versions",
		Capabilities: []string{abi.CapObject},
		Config:       config,
	}, func() sdk.Destination { return &destination{} })
}

func main() {}
