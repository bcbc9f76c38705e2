package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/objstore"
)

// LocalEndpoint is the endpoint_url that sends an object capability to a directory under
// the data dir (DATA_DIR/exports/<bucket>) instead of an S3 server, so the embedded quick
// start writes real files with no cloud account. The admin cannot name an arbitrary path.
const LocalEndpoint = "local"

var bucketDirName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

// capBinding collects one capability's parameters from a destination config: every
// manifest field whose binding is "<capability>.<param>" fills <param>, from the public or
// the secret part of the config.
func capBinding(capability string, fields []abi.Field, public map[string]any, secret map[string]any) map[string]string {
	out := map[string]string{}
	for _, f := range fields {
		param, ok := strings.CutPrefix(f.Binding, capability+".")
		if !ok {
			continue
		}
		v, ok := secret[f.Name]
		if !ok {
			v, ok = public[f.Name]
		}
		if !ok || v == nil {
			continue
		}
		out[param] = fmt.Sprint(v)
	}
	return out
}

// openObjectStore binds the object capability of one export. dataDir roots the local sink;
// partSize and conc (0: objstore's defaults) size S3 multipart uploads; ambient lets an S3 binding
// without keys use the host's default AWS credential chain (Config.S3AmbientCredentials).
func openObjectStore(ctx context.Context, dataDir string, partSize int64, conc int, ambient bool, b map[string]string) (objstore.Store, error) {
	bucket := b["bucket"]
	if bucket == "" {
		return nil, errors.New("the destination config binds no bucket (object.bucket)")
	}
	if b["endpoint_url"] == LocalEndpoint {
		if !bucketDirName.MatchString(bucket) {
			return nil, fmt.Errorf("bucket %q is not a valid local directory name", bucket)
		}
		root := filepath.Join(dataDir, "exports", bucket)
		if err := os.MkdirAll(root, 0o750); err != nil {
			return nil, err
		}
		return objstore.NewLocalDir(root, b["prefix"])
	}
	if b["access_key_id"] == "" && b["secret_access_key"] == "" && !ambient {
		return nil, fmt.Errorf("%w (the host's own AWS credentials are used only when the operator sets SLUICE_S3_AMBIENT_CREDENTIALS=true)", objstore.ErrNoCredentials)
	}
	return objstore.NewS3(ctx, objstore.S3Config{
		Bucket:                 bucket,
		Prefix:                 b["prefix"],
		Region:                 b["region"],
		EndpointURL:            b["endpoint_url"],
		VirtualStyleAddressing: b["use_virtual_style_addressing"] == "true",
		AccessKeyID:            b["access_key_id"],
		SecretAccessKey:        b["secret_access_key"],
		AmbientCredentials:     ambient,
		Encryption:             b["encryption"],
		KMSKeyID:               b["kms_key_id"],
		PartSize:               partSize,
		Concurrency:            conc,
	})
}
