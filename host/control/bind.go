package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// objectSettings are the host's settings for the object capability.
type objectSettings struct {
	dataDir     string // roots the local sink
	partSize    int64  // part (S3), block (Azure) or chunk (GCS) size; 0: objstore's default
	conc        int    // parts sent at once per upload (S3, Azure); 0: objstore's default
	ambient     bool   // Config.S3AmbientCredentials
	gcsEndpoint string // Config.GCSEndpoint
}

// Parameter namespaces that select a backend of the object capability: a binding
// "object.azure.container" selects Azure Blob Storage, "object.gcs.bucket" Google Cloud
// Storage; every other object binding is S3's (or the local sink's). The plugin-facing
// contract is the same for all of them.
const (
	azureParams = "azure."
	gcsParams   = "gcs."
)

var (
	azureParamNames = []string{"container", "prefix", "connection_string", "account_name", "account_key", "endpoint_url"}
	gcsParamNames   = []string{"bucket", "prefix", "service_account_key"}
	// s3ParamNames are the S3 (and local directory) parameters: abi/SPEC.md section 7.
	s3ParamNames = []string{"bucket", "prefix", "region", "endpoint_url", "access_key_id", "secret_access_key",
		"encryption", "kms_key_id", "use_virtual_style_addressing"}
)

// openObjectStore binds the object capability of one export to the backend its bound
// parameters name (see azureParams).
func openObjectStore(ctx context.Context, set objectSettings, b map[string]string) (objstore.Store, error) {
	azure, err := subParams(b, azureParams, azureParamNames)
	if err != nil {
		return nil, err
	}
	gcs, err := subParams(b, gcsParams, gcsParamNames)
	if err != nil {
		return nil, err
	}
	var others []string
	for k, v := range b {
		if strings.HasPrefix(k, azureParams) || strings.HasPrefix(k, gcsParams) {
			continue
		}
		if !slices.Contains(s3ParamNames, k) { // a misspelt binding must not go unnoticed
			return nil, fmt.Errorf("unknown object capability parameter object.%s (known: object.%s; object.azure.*, object.gcs.*)", k, strings.Join(s3ParamNames, ", object."))
		}
		if v != "" {
			others = append(others, "object."+k)
		}
	}
	slices.Sort(others)
	switch {
	case azure != nil && gcs != nil:
		return nil, errors.New("the destination config binds both Azure (object.azure.*) and GCS (object.gcs.*) parameters")
	case (azure != nil || gcs != nil) && len(others) > 0:
		return nil, fmt.Errorf("the destination config binds S3 parameters (%s) beside Azure or GCS ones", strings.Join(others, ", "))
	case azure != nil:
		return openAzure(ctx, set, azure)
	case gcs != nil:
		return openGCS(ctx, set, gcs)
	}
	return openS3(ctx, set, b)
}

// subParams returns the parameters under prefix (without it), nil when none has a value; a
// name not in known is an error, so that a misspelt binding does not go unnoticed.
func subParams(b map[string]string, prefix string, known []string) (map[string]string, error) {
	var out map[string]string
	for k, v := range b {
		name, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("unknown object capability parameter object.%s (known: object.%s%s)", k, prefix, strings.Join(known, ", object."+prefix))
		}
		if v == "" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = v
	}
	return out, nil
}

func openAzure(ctx context.Context, set objectSettings, p map[string]string) (objstore.Store, error) {
	if p["container"] == "" {
		return nil, fmt.Errorf("%w (object.azure.container)", errNoBucket)
	}
	return objstore.NewAzureBlob(ctx, objstore.AzureConfig{
		Container:        p["container"],
		Prefix:           p["prefix"],
		ConnectionString: p["connection_string"],
		AccountName:      p["account_name"],
		AccountKey:       p["account_key"],
		EndpointURL:      p["endpoint_url"],
		PartSize:         set.partSize,
		Concurrency:      set.conc,
	})
}

func openGCS(ctx context.Context, set objectSettings, p map[string]string) (objstore.Store, error) {
	if p["bucket"] == "" {
		return nil, fmt.Errorf("%w (object.gcs.bucket)", errNoBucket)
	}
	cfg := objstore.GCSConfig{Bucket: p["bucket"], Prefix: p["prefix"], PartSize: set.partSize}
	if set.gcsEndpoint != "" {
		// The operator's loopback fake or emulator: no key is needed (or sent).
		cfg.Endpoint = set.gcsEndpoint
	} else {
		cfg.CredentialsJSON = []byte(p["service_account_key"])
	}
	return objstore.NewGCS(ctx, cfg)
}

func openS3(ctx context.Context, set objectSettings, b map[string]string) (objstore.Store, error) {
	bucket := b["bucket"]
	if bucket == "" {
		return nil, fmt.Errorf("%w (object.bucket)", errNoBucket)
	}
	if b["endpoint_url"] == LocalEndpoint {
		if !bucketDirName.MatchString(bucket) {
			return nil, fmt.Errorf("bucket %q is not a valid local directory name", bucket)
		}
		root := filepath.Join(set.dataDir, "exports", bucket)
		if err := os.MkdirAll(root, 0o750); err != nil {
			return nil, err
		}
		return objstore.NewLocalDir(root, b["prefix"])
	}
	if b["access_key_id"] == "" && b["secret_access_key"] == "" && !set.ambient {
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
		AmbientCredentials:     set.ambient,
		Encryption:             b["encryption"],
		KMSKeyID:               b["kms_key_id"],
		PartSize:               set.partSize,
		Concurrency:            set.conc,
	})
}
