package objstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/smithy-go"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeGCSChildEnv) == "1" {
		serveFakeGCS() // this process is a test's out-of-process fake-gcs-server
		return
	}
	// Never let the AWS SDK probe instance metadata or read a developer's
	// shared config: tests talk to loopback servers only.
	dir, err := os.MkdirTemp("", "objstore-aws")
	if err != nil {
		panic(err)
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, k := range []string{"AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		os.Unsetenv(k)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"events/2024-01-01T00:00:00-2024-01-01T01:00:00.jsonl.gz", true},
		{"a/b/c.parquet", true},
		{"with space/ünïcode/é.json", true},
		{"a..b/c...d", true},
		{".hidden", true},
		{strings.Repeat("k", MaxKeyLen), true},
		{"", false},
		{strings.Repeat("k", MaxKeyLen+1), false},
		{"/abs", false},
		{"/", false},
		{"a//b", false},
		{"a/", false},
		{"..", false},
		{"../x", false},
		{"a/../../x", false},
		{"a/..", false},
		{".", false},
		{"./a", false},
		{"a/./b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\tb", false},
		{"a\x7fb", false},
		{"a\u0085b", false}, // C1 control
		{"a\\..\\b", false},
		{"bad\xffutf8", false},
	}
	for _, tt := range tests {
		name := tt.key
		if len(name) > 20 {
			name = name[:20]
		}
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			err := ValidateKey(tt.key)
			if tt.ok && err != nil {
				t.Fatalf("ValidateKey(%q) = %v, want nil", tt.key, err)
			}
			if !tt.ok {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("ValidateKey(%q) = %v, want ErrInvalidKey", tt.key, err)
				}
				if Classify(err) != Fatal {
					t.Fatalf("Classify = %v, want fatal", Classify(err))
				}
			}
		})
	}
}

func TestPrefixAndFullKey(t *testing.T) {
	for _, tt := range []struct {
		prefix, want string
		ok           bool
	}{
		{"", "", true}, {"p", "p", true}, {"p/q/", "p/q", true},
		{"/", "", false}, {"/p", "", false}, {"p//", "", false}, {"../p", "", false},
	} {
		got, err := validatePrefix(tt.prefix)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("validatePrefix(%q) = %q, %v", tt.prefix, got, err)
		}
	}
	if k, err := fullKey("p", "a/b"); err != nil || k != "p/a/b" {
		t.Errorf("fullKey = %q, %v", k, err)
	}
	if _, err := fullKey(strings.Repeat("p", 1000), strings.Repeat("k", 100)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("fullKey over the limit: %v", err)
	}
}

func TestClassify(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, 0},
		{"NoSuchBucket", wrapS3("PutObject", "k", api("NoSuchBucket")), NotFound},
		{"AccessDenied", wrapS3("PutObject", "k", api("AccessDenied")), Denied},
		{"InvalidAccessKeyId", wrapS3("PutObject", "k", api("InvalidAccessKeyId")), Denied},
		{"SignatureDoesNotMatch", wrapS3("PutObject", "k", api("SignatureDoesNotMatch")), Denied},
		{"InvalidBucketName", wrapS3("PutObject", "k", api("InvalidBucketName")), Fatal},
		{"SlowDown", wrapS3("UploadPart", "k", api("SlowDown")), Retryable},
		{"RequestTimeout", wrapS3("UploadPart", "k", api("RequestTimeout")), Retryable},
		{"InternalError", wrapS3("UploadPart", "k", api("InternalError")), Retryable},
		{"unknown code", wrapS3("UploadPart", "k", api("Whatever")), Retryable},
		{"canceled", wrapS3("UploadPart", "k", fmt.Errorf("send: %w", context.Canceled)), Cancelled},
		{"deadline", wrapS3("UploadPart", "k", context.DeadlineExceeded), Retryable},
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, Retryable},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, Retryable},
		{"dns unknown host", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, Fatal},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, Retryable},
		{"invalid key", fmt.Errorf("x: %w", ErrInvalidKey), Fatal},
		{"config", configErr("bad"), Fatal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Fatalf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	var e *Error
	if err := wrapS3("PutObject", "k", api("NoSuchBucket")); !errors.As(err, &e) || e.Code != "NoSuchBucket" {
		t.Fatalf("code not kept: %v", err)
	}
	if !NotFound.Permanent() || !Denied.Permanent() || !Fatal.Permanent() || Retryable.Permanent() || Cancelled.Permanent() {
		t.Fatal("Permanent")
	}
}
