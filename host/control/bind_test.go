package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/sluicehq/sluice/host/objstore"
)

func uniqueName(prefix string) string {
	var rnd [6]byte
	rand.Read(rnd[:])
	return prefix + hex.EncodeToString(rnd[:])
}

// putObject writes one small object through a bound store and commits it.
func putObject(t *testing.T, st objstore.Store, key, body string) objstore.ObjectInfo {
	t.Helper()
	ctx := context.Background()
	u, err := st.Create(ctx, key, objstore.ObjectOptions{ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Abort(ctx)
	if _, err := io.WriteString(u, body); err != nil {
		t.Fatal(err)
	}
	info, err := u.Commit(ctx)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return info
}

// The object capability's backend is chosen by the bound parameter names: object.azure.*
// binds Azure Blob Storage (here Azurite), object.gcs.* Google Cloud Storage (here an
// in-process fake-gcs-server at the host's GCS endpoint).
func TestOpenObjectStoreRoutesByBindingNames(t *testing.T) {
	ctx := context.Background()
	t.Run("azure", func(t *testing.T) {
		cs := os.Getenv("SLUICE_TEST_AZURITE_CONNECTION_STRING")
		if cs == "" {
			if os.Getenv("SLUICE_REQUIRE_SERVICES") == "1" {
				t.Fatal("SLUICE_TEST_AZURITE_CONNECTION_STRING is not set and SLUICE_REQUIRE_SERVICES=1")
			}
			t.Skip("SLUICE_TEST_AZURITE_CONNECTION_STRING not set: eval \"$(bash .ci/services/azurite.sh)\"")
		}
		admin, err := service.NewClientFromConnectionString(cs, nil)
		if err != nil {
			t.Fatal(err)
		}
		name := uniqueName("sluice-bind-")
		if _, err := admin.CreateContainer(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.DeleteContainer(context.Background(), name, nil) })
		st, err := openObjectStore(ctx, objectSettings{partSize: objstore.MinPartSize}, map[string]string{
			"azure.container": name, "azure.prefix": "team-1", "azure.connection_string": cs,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
		info := putObject(t, st, "a/b.txt", "hello azure")
		if info.Key != "team-1/a/b.txt" {
			t.Fatalf("key %q", info.Key)
		}
		out, err := admin.NewContainerClient(name).NewBlobClient(info.Key).DownloadStream(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Body.Close()
		if got, _ := io.ReadAll(out.Body); string(got) != "hello azure" {
			t.Fatalf("read back %q", got)
		}
	})
	t.Run("gcs", func(t *testing.T) {
		srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Writer: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Stop()
		bucket := uniqueName("sluice-bind-")
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
		st, err := openObjectStore(ctx, objectSettings{partSize: objstore.MinPartSize, gcsEndpoint: srv.URL() + "/storage/v1/"}, map[string]string{
			"gcs.bucket": bucket, "gcs.prefix": "team-1", "gcs.service_account_key": `{"type":"service_account"}`,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer st.(io.Closer).Close()
		info := putObject(t, st, "a/b.txt", "hello gcs")
		obj, err := srv.GetObject(bucket, info.Key)
		if err != nil || info.Key != "team-1/a/b.txt" || string(obj.Content) != "hello gcs" {
			t.Fatalf("key %q: %q (%v)", info.Key, obj.Content, err)
		}
	})
}

func TestOpenObjectStoreRefusesBadBindings(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		set     objectSettings
		params  map[string]string
		wantErr string
		is      error
	}{
		{"no bucket", objectSettings{}, map[string]string{"region": "us-east-1"}, "object.bucket", errNoBucket},
		{"azure without container", objectSettings{}, map[string]string{"azure.connection_string": "x"}, "object.azure.container", errNoBucket},
		{"gcs without bucket", objectSettings{}, map[string]string{"gcs.prefix": "p"}, "object.gcs.bucket", errNoBucket},
		{"azure and gcs", objectSettings{}, map[string]string{"azure.container": "c-1", "gcs.bucket": "b-1"}, "both Azure", nil},
		{"azure and s3", objectSettings{}, map[string]string{"azure.container": "c-1", "bucket": "b"}, "object.bucket", nil},
		{"misspelt s3 parameter", objectSettings{}, map[string]string{"bucket": "b", "bukket": "b"}, "object.bukket", nil},
		{"misspelt azure parameter", objectSettings{}, map[string]string{"azure.container": "c-1", "azure.acount_key": "k"}, "object.azure.acount_key", nil},
		{"azure without credentials", objectSettings{}, map[string]string{"azure.container": "c-1"}, "no credentials", objstore.ErrNoAzureCredentials},
		{"gcs without key or endpoint", objectSettings{}, map[string]string{"gcs.bucket": "b-1"}, "service-account key", objstore.ErrNoGCSCredentials},
		{"gcs key of another type", objectSettings{}, map[string]string{"gcs.bucket": "b-1", "gcs.service_account_key": `{"type":"external_account"}`}, "want service_account", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openObjectStore(ctx, tc.set, tc.params)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
