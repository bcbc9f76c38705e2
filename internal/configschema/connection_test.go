package configschema

import (
	"reflect"
	"strings"
	"testing"
)

func TestConnectionFields(t *testing.T) {
	var got []string
	for _, f := range ConnectionFields(s3Fields) {
		got = append(got, f.Name)
	}
	// Secrets and capability-bound fields; not prefix, file_format... (the plugin's own).
	want := []string{"bucket_name", "region", "aws_access_key_id", "aws_secret_access_key", "kms_key_id", "auth_mode"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("connection fields %v, want %v", got, want)
	}
}

func TestResolveConnection(t *testing.T) {
	tests := []struct {
		name       string
		input      string
		prev       *Stored
		wantPublic map[string]any
		wantSecret map[string]any
		errField   string
		errMsg     string
	}{
		{name: "any subset, no defaults, nothing required", input: `{"aws_secret_access_key":"SK"}`,
			wantPublic: map[string]any{}, wantSecret: map[string]any{"aws_secret_access_key": "SK"}},
		{name: "bound fields", input: `{"bucket_name":"b","region":"eu-west-1"}`,
			wantPublic: map[string]any{"bucket_name": "b", "region": "eu-west-1"}, wantSecret: map[string]any{}},
		{name: "plugin's own field", input: `{"prefix":"p/"}`, errField: "prefix", errMsg: "not a connection field"},
		{name: "unknown field", input: `{"regoin":"x"}`, errField: "regoin", errMsg: `did you mean "region"`},
		{name: "wrong type", input: `{"region":5}`, errField: "region", errMsg: "must be a string"},
		{name: "update keeps secrets and merges", input: `{"aws_access_key_id":"AK2","region":null}`,
			prev:       &Stored{Public: map[string]any{"region": "x", "bucket_name": "b"}, Secret: map[string]any{"aws_secret_access_key": "SK", "aws_access_key_id": "AK"}},
			wantPublic: map[string]any{"bucket_name": "b"}, wantSecret: map[string]any{"aws_access_key_id": "AK2", "aws_secret_access_key": "SK"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ResolveConnection(s3Fields, decode(t, tt.input), tt.prev)
			if tt.errField != "" {
				if len(errs) != 1 || errs[0].Field != tt.errField || !strings.Contains(errs[0].Message, tt.errMsg) {
					t.Fatalf("errors %v, want %s: %q", errs, tt.errField, tt.errMsg)
				}
				return
			}
			if errs != nil {
				t.Fatal(errs)
			}
			if !reflect.DeepEqual(got.Public, tt.wantPublic) || !reflect.DeepEqual(got.Secret, tt.wantSecret) {
				t.Fatalf("got %#v / %#v\nwant %#v / %#v", got.Public, got.Secret, tt.wantPublic, tt.wantSecret)
			}
		})
	}
}

func TestResolveOwnAndEffective(t *testing.T) {
	conn := Stored{Public: map[string]any{"region": "eu-west-1"}, Secret: map[string]any{"aws_access_key_id": "AK", "aws_secret_access_key": "SK"}}
	// The export's own part: no secrets, defaults only for the plugin's own fields.
	own, errs := ResolveOwn(s3Fields, decode(t, `{"bucket_name":"b"}`), nil, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	if _, ok := own.Public["region"]; ok || own.Public["file_format"] != "JSONLines" || len(own.Secret) != 0 {
		t.Fatalf("own %#v", own)
	}
	eff, errs := Effective(s3Fields, conn, own)
	if errs != nil {
		t.Fatal(errs)
	}
	if eff.Public["region"] != "eu-west-1" || eff.Public["bucket_name"] != "b" || eff.Secret["aws_secret_access_key"] != "SK" {
		t.Fatalf("effective %#v", eff)
	}
	// The export's own value wins over the connection's.
	own2, _ := ResolveOwn(s3Fields, decode(t, `{"bucket_name":"b","region":"us-east-2"}`), nil, nil)
	if eff, _ := Effective(s3Fields, conn, own2); eff.Public["region"] != "us-east-2" {
		t.Fatalf("override: %v", eff.Public["region"])
	}
	// A secret on the export is a conflict, named, its value not quoted.
	_, errs = ResolveOwn(s3Fields, decode(t, `{"bucket_name":"b","aws_secret_access_key":"hunter2"}`), nil, nil)
	if len(errs) != 1 || errs[0].Field != "aws_secret_access_key" || !strings.Contains(errs[0].Message, "conflicts with the connection") || strings.Contains(errs.Error(), "hunter2") {
		t.Fatalf("secret conflict: %v", errs)
	}
	// A required field neither part sets, named with where to set it.
	_, errs = Effective(s3Fields, Stored{Public: map[string]any{}, Secret: map[string]any{"aws_access_key_id": "AK"}}, Stored{})
	msgs := map[string]string{}
	for _, e := range errs {
		msgs[e.Field] = e.Message
	}
	if msgs["bucket_name"] != "required: set it on the connection or on the export" || msgs["aws_secret_access_key"] != "required secret is missing: set it on the connection" || len(msgs) != 2 {
		t.Fatalf("missing: %v", errs)
	}
	// Keys the schema does not declare (another plugin version) are left out, not errors.
	if eff, errs := Effective(s3Fields, Stored{Public: map[string]any{"gone": 1}, Secret: conn.Secret}, own); errs != nil || eff.Public["gone"] != nil {
		t.Fatalf("undeclared key: %v %v", eff.Public, errs)
	}
	// Attaching a connection drops the previous values of the fields it holds (a stored
	// default region would hide the connection's), keeps the others.
	prev := &Stored{Public: map[string]any{"region": "us-east-1", "bucket_name": "b", "prefix": "p"}, Secret: map[string]any{"aws_secret_access_key": "old"}}
	att, errs := ResolveOwn(s3Fields, map[string]any{}, prev, &conn)
	if errs != nil {
		t.Fatal(errs)
	}
	if _, ok := att.Public["region"]; ok || att.Public["bucket_name"] != "b" || att.Public["prefix"] != "p" || len(att.Secret) != 0 {
		t.Fatalf("attached %#v", att)
	}
	same, _ := ResolveOwn(s3Fields, map[string]any{}, prev, nil)
	if same.Public["region"] != "us-east-1" {
		t.Fatalf("same connection: %#v", same.Public)
	}
}
