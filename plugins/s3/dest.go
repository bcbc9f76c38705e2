package main

import (
	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/plugins/internal/objectexport"
	"github.com/sluicehq/sluice/sdk"
)

// s3Codes are the S3 error codes PostHog does not retry (Fatal), and the ones the host
// might report with a fatal status but that are transient (Retryable).
var s3Codes = sdk.ErrorCodes{Destination: "S3", Fatal: map[string]bool{"NoSuchBucket": true, "AccessDenied": true, "InvalidAccessKeyId": true,
	"SignatureDoesNotMatch": true, "InvalidBucketName": true, "AllAccessDisabled": true,
	"AccountProblem": true, "ExpiredToken": true, "InvalidToken": true, "KMS.AccessDeniedException": true,
	"KMS.NotFoundException": true, "KMS.DisabledException": true, "KeyTooLongError": true,
	"InvalidEncryptionAlgorithmError": true, "PermanentRedirect": true, "AuthorizationHeaderMalformed": true},
	Retryable: map[string]bool{"SlowDown": true, "RequestTimeout": true, "InternalError": true,
		"ServiceUnavailable": true, "OperationAborted": true, "RequestTimeTooSkewed": true}}

var plugin = &objectexport.Plugin{
	Name:   "s3",
	Store:  "bucket",
	Decode: decode,
	Secrets: func(c *sdk.Config) error {
		if c.SecretSet("aws_access_key_id") != c.SecretSet("aws_secret_access_key") {
			return sdk.FieldError("aws_secret_access_key", "set both aws_access_key_id and aws_secret_access_key, or neither")
		}
		return nil
	},
	Codes: s3Codes,
}

// destination is the shared object export (keys, files, manifest, write loop) with S3's
// config and error codes.
type destination struct {
	objectexport.Destination
}

// Classify follows PostHog's S3 destination: missing bucket, bad credentials, an invalid
// key, a bad endpoint and an unsupported format or compression fail the run; the rest
// (throttling, timeouts, 5xx, resets, unknown errors) is retried.
func (d *destination) Classify(e *abi.Error, attempt int) abi.Classification {
	if c, ok := s3Codes.Classify(e); ok {
		return c
	}
	return sdk.DefaultClassify(e, attempt)
}
