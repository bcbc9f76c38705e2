package storage

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	k, err := ParseKeyring("k1:correct horse")
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range [][]byte{nil, []byte(""), []byte(`{"password":"p"}`), bytes.Repeat([]byte{0, 1, 2}, 10000)} {
		sealed, err := k.Seal(pt)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sealed, "sluice.v1.k1.") {
			t.Fatalf("sealed = %q", sealed)
		}
		got, err := k.Open(sealed)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("open = %q, %v", got, err)
		}
	}
	a, _ := k.Seal([]byte("same"))
	b, _ := k.Seal([]byte("same"))
	if a == b {
		t.Fatal("two seals of one plaintext are equal: nonce reused")
	}
}

func TestOpenDetectsTampering(t *testing.T) {
	t.Parallel()
	k, err := ParseKeyring("k1:one,k2:two")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.TrimPrefix(sealed, "sluice.v1.k1.")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	flip := func(i int) string {
		c := bytes.Clone(raw)
		c[i] ^= 0x01
		return "sluice.v1.k1." + base64.RawURLEncoding.EncodeToString(c)
	}
	tests := []struct{ name, in string }{
		{"flipped nonce", flip(0)},
		{"flipped ciphertext", flip(13)},
		{"flipped tag", flip(len(raw) - 1)},
		{"truncated", sealed[:len(sealed)-4]},
		{"moved to another key id", "sluice.v1.k2." + payload},
		{"unknown key id", "sluice.v1.k9." + payload},
		{"no prefix", payload},
		{"wrong version", "sluice.v2.k1." + payload},
		{"empty payload", "sluice.v1.k1."},
		{"not base64", "sluice.v1.k1.!!!!"},
		{"too short", "sluice.v1.k1.AAAA"},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := k.Open(tc.in); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Open(%q) err = %v, want ErrDecrypt", tc.in, err)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	old, _ := ParseKeyring("2023:old passphrase")
	sealedOld, _ := old.Seal([]byte("v"))
	ring, err := ParseKeyring("2024:new passphrase, 2023:old passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if ring.CurrentKeyID() != "2024" || strings.Join(ring.KeyIDs(), ",") != "2024,2023" {
		t.Fatalf("ids %v current %s", ring.KeyIDs(), ring.CurrentKeyID())
	}
	if got, err := ring.Open(sealedOld); err != nil || string(got) != "v" {
		t.Fatalf("old ciphertext with new ring: %q %v", got, err)
	}
	if !ring.NeedsReseal(sealedOld) {
		t.Fatal("old ciphertext should need resealing")
	}
	sealedNew, _ := ring.Seal([]byte("v"))
	if id, _ := SealedKeyID(sealedNew); id != "2024" || ring.NeedsReseal(sealedNew) {
		t.Fatalf("new ciphertext sealed with %q", id)
	}
	if _, err := old.Open(sealedNew); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("old ring opened a new ciphertext: %v", err)
	}
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xab}, 32)
	hexKey := strings.Repeat("ab", 32)
	sealWith := func(t *testing.T, spec string) string {
		k, err := ParseKeyring(spec)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := k.Seal([]byte("x"))
		return s
	}
	// Equivalent spellings of one key open each other's ciphertexts.
	equiv := []string{
		"a:" + hexKey,
		"a:" + base64.StdEncoding.EncodeToString(raw),
		"a:" + base64.RawURLEncoding.EncodeToString(raw),
	}
	for _, spec := range equiv {
		k, err := ParseKeyring(equiv[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Open(sealWith(t, spec)); err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
	}
	k, err := ParseKeyring("just a passphrase")
	if err != nil || k.CurrentKeyID() != DefaultKeyID {
		t.Fatalf("passphrase without id: %v %v", k, err)
	}
	k, err = ParseKeyring("id:pass:with:colons")
	if err != nil || k.CurrentKeyID() != "id" {
		t.Fatalf("colons: %v", err)
	}
	for _, bad := range []string{"", " , ", "a:x,a:y", "a:"} {
		if _, err := ParseKeyring(bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ParseKeyring(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rings := make([]*Keyring, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rings[i], errs[i] = loadKeyring(Config{DataDir: dir})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		if rings[i].CurrentKeyID() != rings[0].CurrentKeyID() {
			t.Fatal("concurrent starts created different keys")
		}
	}
	st, err := os.Stat(filepath.Join(dir, SecretKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	sealed, _ := rings[0].Seal([]byte("x"))
	again, err := loadKeyring(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Open(sealed); err != nil {
		t.Fatalf("key file not reused: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".secret.key.*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
	// An explicit SecretKey wins and writes no file.
	dir2 := t.TempDir()
	if _, err := loadKeyring(Config{DataDir: dir2, SecretKey: "k:p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir2, SecretKeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key file written despite SecretKey: %v", err)
	}
	if _, err := loadKeyring(Config{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no key and no dir: %v", err)
	}
}
