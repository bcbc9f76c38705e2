// Command importapi is the third-party example of docs/plugin-authors.md: a destination for
// a Mixpanel-like import API (POST /import, JSON Lines, a project secret in an Authorization
// header), written only against the SDK and the http capability (ABI 1.1). The host encodes
// every request body from the batch; the secret never enters the guest.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -tags sluice_abi_1_1 -o importapi.wasm ./sdk/examples/importapi
package main

import (
	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

type dest struct {
	sdk.Base
	records int64
}

func (d *dest) Open(rc *sdk.RunContext) error { return nil }

// WriteBatch sends each batch as one request: the host encodes it as gzip JSON Lines with
// the API's field names.
func (d *dest) WriteBatch(b *sdk.Batch) error {
	body, err := sdk.HTTPBody("application/x-ndjson", "gzip", "")
	if err != nil {
		return err
	}
	defer body.Abort()
	enc, err := body.Encoder(abi.EncoderSpec{Format: "jsonl", Compression: "gzip",
		Columns: []abi.ColumnSelect{{Name: "event"}, {Name: "distinct_id"}, {Name: "uuid", As: "$insert_id"},
			{Name: "timestamp", As: "time"}, {Name: "properties"}}})
	if err != nil {
		return err
	}
	if err := enc.WriteBatch(b); err != nil {
		return err
	}
	resp, err := sdk.HTTP(abi.HTTPRequest{Method: "POST", URL: "import?strict=1", BodyUpload: body.Handle(),
		Headers:         map[string]string{"Authorization": "Basic {secret:api_secret}"},
		ResponseHeaders: []string{"Retry-After"}, WaitRetryAfterMS: 5000})
	if err != nil {
		return err
	}
	if err := sdk.HTTPResponseError(resp); err != nil {
		return err
	}
	d.records += int64(b.Records())
	return nil
}

func (d *dest) Finish() (abi.Result, error) { return abi.Result{Records: d.records}, nil }

func (d *dest) Classify(e *abi.Error, attempt int) abi.Classification {
	if c, ok := sdk.ClassifyHTTP(e); ok { // the server's answer decides
		return c
	}
	return sdk.DefaultClassify(e, attempt) // no answer: timeout, refused address...
}

func init() {
	sdk.Register(abi.Manifest{
		Name: "importapi", Version: "0.1.0", Description: "Mixpanel-like import API (SDK example)",
		Capabilities: []string{abi.CapHTTP},
		Config: []abi.Field{
			{Name: "url", Type: abi.TypeString, Required: true, Binding: "http.base_url", Description: "the API's base URL"},
			{Name: "api_secret", Type: abi.TypeString, Secret: true, Required: true, Binding: "http.secret_api_secret"},
		},
	}, func() sdk.Destination { return &dest{} })
}

func main() {}
