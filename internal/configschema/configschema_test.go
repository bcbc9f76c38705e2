package configschema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/abi"
)

var s3Fields = []abi.Field{
	{Name: "bucket_name", Type: abi.TypeString, Required: true, Binding: "object.bucket"},
	{Name: "region", Type: abi.TypeString, Default: "us-east-1", Binding: "object.region"},
	{Name: "prefix", Type: abi.TypeString, Default: ""},
	{Name: "file_format", Type: abi.TypeString, Enum: []string{"JSONLines", "Parquet"}, Default: "JSONLines"},
	{Name: "max_file_size_mb", Type: abi.TypeInteger, Default: float64(0)},
	{Name: "ratio", Type: abi.TypeNumber},
	{Name: "use_json", Type: abi.TypeBoolean},
	{Name: "exclude_events", Type: abi.TypeStringList},
	{Name: "compressions", Type: abi.TypeStringList, Enum: []string{"gzip", "zstd"}},
	{Name: "extra", Type: abi.TypeObject},
	{Name: "aws_access_key_id", Type: abi.TypeString, Required: true, Secret: true, Binding: "object.access_key_id"},
	{Name: "aws_secret_access_key", Type: abi.TypeString, Required: true, Secret: true, Binding: "object.secret_access_key"},
	{Name: "kms_key_id", Type: abi.TypeString, Secret: true},
	{Name: "auth_mode", Type: abi.TypeString, Secret: true, Enum: []string{"password", "keypair"}},
}

// decode parses JSON as the API does (UseNumber).
func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func TestResolveErrors(t *testing.T) {
	base := `"bucket_name":"b","aws_access_key_id":"AK","aws_secret_access_key":"SK"`
	tests := []struct {
		name  string
		input string
		field string
		msg   string
	}{
		{"unknown key", `{` + base + `,"bucket":"x"}`, "bucket", "unknown config key"},
		{"unknown key suggestion", `{` + base + `,"regoin":"x"}`, "regoin", `did you mean "region"`},
		{"missing required", `{"aws_access_key_id":"AK","aws_secret_access_key":"SK"}`, "bucket_name", "required"},
		{"empty required string", `{` + strings.Replace(base, `"b"`, `""`, 1) + `}`, "bucket_name", "required"},
		{"missing required secret", `{"bucket_name":"b","aws_access_key_id":"AK"}`, "aws_secret_access_key", "required secret is missing"},
		{"null required", `{` + base + `,"bucket_name":null}`, "bucket_name", "required"},
		{"string wrong type", `{` + strings.Replace(base, `"b"`, `5`, 1) + `}`, "bucket_name", "must be a string, got a number"},
		{"enum", `{` + base + `,"file_format":"CSV"}`, "file_format", "must be one of JSONLines, Parquet"},
		{"integer as float", `{` + base + `,"max_file_size_mb":5.0}`, "max_file_size_mb", "must be an integer, got a non-integer number"},
		{"integer as exponent", `{` + base + `,"max_file_size_mb":5e2}`, "max_file_size_mb", "must be an integer"},
		{"integer as string", `{` + base + `,"max_file_size_mb":"5"}`, "max_file_size_mb", "must be an integer, got a string"},
		{"number as bool", `{` + base + `,"ratio":true}`, "ratio", "must be a number, got a boolean"},
		{"boolean as string", `{` + base + `,"use_json":"true"}`, "use_json", "must be a boolean, got a string"},
		{"string_list not array", `{` + base + `,"exclude_events":"a"}`, "exclude_events", "must be an array of strings, got a string"},
		{"string_list element", `{` + base + `,"exclude_events":["a",1]}`, "exclude_events", "element 1 is a number"},
		{"string_list enum", `{` + base + `,"compressions":["gzip","lz4"]}`, "compressions", `"lz4"`},
		{"object", `{` + base + `,"extra":[1]}`, "extra", "must be an object, got an array"},
		{"secret enum", `{` + base + `,"auth_mode":"hunter2"}`, "auth_mode", "must be one of password, keypair"},
		{"redacted placeholder without stored secret", `{` + base + `,"kms_key_id":"********"}`, "kms_key_id", "secret is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Resolve(s3Fields, decode(t, tt.input), nil)
			if len(errs) == 0 {
				t.Fatalf("no error")
			}
			for _, e := range errs {
				if e.Field == tt.field && strings.Contains(e.Message, tt.msg) {
					return
				}
			}
			t.Fatalf("want %s: %q in %v", tt.field, tt.msg, errs)
		})
	}
}

// A secret's rejected value never appears in an error: it would reach the API's answer.
func TestResolveErrorsHideSecrets(t *testing.T) {
	_, errs := Resolve(s3Fields, decode(t, `{"bucket_name":"b","aws_access_key_id":"AK","aws_secret_access_key":"SK","auth_mode":"hunter2"}`), nil)
	if len(errs) != 1 || errs[0].Field != "auth_mode" {
		t.Fatalf("errors %v", errs)
	}
	if strings.Contains(fmt.Sprint(errs), "hunter2") {
		t.Fatalf("the error quotes the secret: %v", errs)
	}
}

func TestResolveAllErrorsAtOnce(t *testing.T) {
	_, errs := Resolve(s3Fields, decode(t, `{"zzz":1,"aaa":2,"use_json":1}`), nil)
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	want := []string{"aaa", "zzz", "bucket_name", "use_json", "aws_access_key_id", "aws_secret_access_key"}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("fields %v, want %v", fields, want)
	}
	if !strings.Contains(errs.Error(), "aaa: unknown config key") {
		t.Fatalf("Error() = %q", errs.Error())
	}
}

func TestResolveCreate(t *testing.T) {
	got, errs := Resolve(s3Fields, decode(t, `{"bucket_name":"b","max_file_size_mb":50,"ratio":0.5,
		"exclude_events":["$pageleave"],"extra":{"k":1},"aws_access_key_id":"AK","aws_secret_access_key":"SK","prefix":null}`), nil)
	if errs != nil {
		t.Fatal(errs)
	}
	wantPublic := map[string]any{
		"bucket_name": "b", "region": "us-east-1", "prefix": "", "file_format": "JSONLines",
		"max_file_size_mb": int64(50), "ratio": 0.5, "exclude_events": []string{"$pageleave"},
		"extra": map[string]any{"k": json.Number("1")},
	}
	if !reflect.DeepEqual(got.Public, wantPublic) {
		t.Fatalf("public %#v\nwant %#v", got.Public, wantPublic)
	}
	wantSecret := map[string]any{"aws_access_key_id": "AK", "aws_secret_access_key": "SK"}
	if !reflect.DeepEqual(got.Secret, wantSecret) {
		t.Fatalf("secret %#v", got.Secret)
	}
}

func TestResolveUpdateMerges(t *testing.T) {
	prev := &Stored{
		// As read back from storage: numbers are float64, lists []any.
		Public: map[string]any{"bucket_name": "old", "region": "eu-west-1", "max_file_size_mb": float64(10),
			"exclude_events": []any{"a"}, "removed_key": "x"},
		Secret: map[string]any{"aws_access_key_id": "AK", "aws_secret_access_key": "SK", "kms_key_id": "K"},
	}
	tests := []struct {
		name       string
		input      string
		wantPublic map[string]any
		wantSecret map[string]any
	}{
		{
			name:       "omitted secrets and keys are kept",
			input:      `{"bucket_name":"new"}`,
			wantPublic: map[string]any{"bucket_name": "new", "region": "eu-west-1", "prefix": "", "file_format": "JSONLines", "max_file_size_mb": int64(10), "exclude_events": []string{"a"}},
			wantSecret: map[string]any{"aws_access_key_id": "AK", "aws_secret_access_key": "SK", "kms_key_id": "K"},
		},
		{
			name:       "secret replaced, redacted placeholder keeps, null unsets to default",
			input:      `{"aws_secret_access_key":"SK2","aws_access_key_id":"********","kms_key_id":null,"region":null}`,
			wantPublic: map[string]any{"bucket_name": "old", "region": "us-east-1", "prefix": "", "file_format": "JSONLines", "max_file_size_mb": int64(10), "exclude_events": []string{"a"}},
			wantSecret: map[string]any{"aws_access_key_id": "AK", "aws_secret_access_key": "SK2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := Resolve(s3Fields, decode(t, tt.input), prev)
			if errs != nil {
				t.Fatal(errs)
			}
			if !reflect.DeepEqual(got.Public, tt.wantPublic) {
				t.Errorf("public %#v\nwant   %#v", got.Public, tt.wantPublic)
			}
			if !reflect.DeepEqual(got.Secret, tt.wantSecret) {
				t.Errorf("secret %#v\nwant   %#v", got.Secret, tt.wantSecret)
			}
		})
	}
	// Unsetting a required secret on update is an error.
	if _, errs := Resolve(s3Fields, decode(t, `{"aws_secret_access_key":null}`), prev); len(errs) != 1 || errs[0].Field != "aws_secret_access_key" {
		t.Fatalf("errs = %v", errs)
	}
	// A stored integer that is not integral is reported.
	bad := &Stored{Public: map[string]any{"bucket_name": "b", "max_file_size_mb": 1.5}, Secret: prev.Secret}
	if _, errs := Resolve(s3Fields, map[string]any{}, bad); len(errs) != 1 || errs[0].Field != "max_file_size_mb" {
		t.Fatalf("errs = %v", errs)
	}
}

func TestRedactAndSecretsSet(t *testing.T) {
	pub := Redact(s3Fields, map[string]any{"bucket_name": "b", "aws_secret_access_key": "leak"})
	if _, ok := pub["aws_secret_access_key"]; ok || pub["bucket_name"] != "b" {
		t.Fatalf("Redact = %v", pub)
	}
	got := SecretsSet(s3Fields, map[string]any{"aws_secret_access_key": "x", "aws_access_key_id": "", "bucket_name": "b"})
	if !reflect.DeepEqual(got, []string{"aws_secret_access_key"}) {
		t.Fatalf("SecretsSet = %v", got)
	}
	if got := SecretsSet(s3Fields, nil); got == nil || len(got) != 0 {
		t.Fatalf("SecretsSet(nil) = %#v, want empty non-nil", got)
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown(abi.Manifest{Name: "s3", Version: "1.2.0", ABIVersion: "1.0", Description: "Amazon S3 | compatible",
		Capabilities: []string{"object"}, Formats: []string{"jsonl", "parquet"}, Config: s3Fields})
	for _, want := range []string{
		"# s3 1.2.0", "Amazon S3 | compatible", "- Capabilities: `object`", "- Formats: `jsonl`, `parquet`",
		"| `bucket_name` | string | yes |  | (binds `object.bucket`) |",
		"| `region` | string | no | `\"us-east-1\"` |",
		"| `file_format` | string | no | `\"JSONLines\"` | (one of `JSONLines`, `Parquet`) |",
		"| `aws_secret_access_key` | string | yes |  | (**secret**; binds `object.secret_access_key`) |",
		`"type": "s3"`, `"bucket_name": "<bucket_name>"`,
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if md := Markdown(abi.Manifest{Name: "x", Version: "0.1.0"}); !strings.Contains(md, "takes no configuration") {
		t.Errorf("empty config: %s", md)
	}
}
