package pluginreg

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func key(t *testing.T, seed byte) ed25519.PrivateKey {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// The payload is specified byte for byte (docs/plugin-authors.md): a change breaks every
// signature ever made.
func TestPayloadBytes(t *testing.T) {
	got := string(Payload(sha, []string{"object", "log", "http", "object"}))
	want := "sluice-plugin-signature/v1\nsha256:" + sha + "\ncapabilities:http,object\n"
	if got != want {
		t.Fatalf("payload:\n%q\nwant\n%q", got, want)
	}
	if got := string(Payload(sha, nil)); got != "sluice-plugin-signature/v1\nsha256:"+sha+"\ncapabilities:\n" {
		t.Fatalf("payload without capabilities: %q", got)
	}
}

func TestVerify(t *testing.T) {
	trusted, other := key(t, 1), key(t, 2)
	trust := NewTrust(trusted.Public().(ed25519.PublicKey))
	good := Sign(trusted, sha, []string{"object"}).Marshal()
	tampered := Sign(trusted, sha, []string{"object"})
	tampered.Capabilities = []string{"http"}
	otherSHA := strings.Repeat("f", 64)
	for _, tc := range []struct {
		name    string
		sha     string
		caps    []string
		docs    [][]byte
		wantErr error
		msg     string
	}{
		{"signed by a trusted key", sha, []string{"object", "log"}, [][]byte{good}, nil, ""},
		{"one good signature among bad ones", sha, []string{"object"}, [][]byte{Sign(other, sha, []string{"object"}).Marshal(), good}, nil, ""},
		{"unsigned", sha, []string{"object"}, nil, ErrUnsigned, "comes without a signature"},
		{"untrusted key", sha, []string{"object"}, [][]byte{Sign(other, sha, []string{"object"}).Marshal()}, ErrUntrusted, "not among the trusted keys"},
		{"another module", otherSHA, []string{"object"}, [][]byte{good}, ErrUntrusted, "is for module sha256 " + sha},
		{"document altered", sha, []string{"http"}, [][]byte{tampered.Marshal()}, ErrUntrusted, "does not verify"},
		{"signed for other capabilities", sha, []string{"object", "http"}, [][]byte{good}, ErrUntrusted, "signed for capabilities [object], but the module requests [http,object]"},
		{"not a signature", sha, []string{"object"}, [][]byte{[]byte(`{"format":"x"}`)}, ErrUntrusted, "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := trust.Verify(tc.sha, tc.caps, tc.docs)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %q lacks %q", err, tc.msg)
			}
		})
	}
	if err := (Trust{}).Verify(sha, nil, nil); err != nil {
		t.Fatalf("no trusted keys: want no check, got %v", err)
	}
}

func TestParseTrustedKeysAndKeyFiles(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	pk, err := GenerateKey(priv, pub, "test")
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(priv); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", fi.Mode())
	}
	sk, err := ReadPrivateKey(priv)
	if err != nil || !sk.Public().(ed25519.PublicKey).Equal(pk) {
		t.Fatalf("private key read back: %v", err)
	}
	k2 := key(t, 7).Public().(ed25519.PublicKey)
	trust, err := ParseTrustedKeys(pub + ", " + hex.EncodeToString(k2) + "\n" + base64.StdEncoding.EncodeToString(k2))
	if err != nil {
		t.Fatal(err)
	}
	if len(trust.keys) != 3 || !trust.keys[0].Equal(pk) || !trust.keys[1].Equal(k2) || !trust.keys[2].Equal(k2) {
		t.Fatalf("keys: %v", trust.keys)
	}
	if _, err := ParseTrustedKeys("not-a-key"); err == nil || !strings.Contains(err.Error(), "SLUICE_PLUGIN_TRUSTED_KEYS") {
		t.Fatalf("a bad entry: %v", err)
	}
	if trust, err := ParseTrustedKeys(" "); err != nil || trust.Enabled() {
		t.Fatalf("empty: %v %v", trust, err)
	}
}

func TestParseSignatureRefusesBadDocuments(t *testing.T) {
	good := Sign(key(t, 1), sha, []string{"object"})
	mut := func(f func(*Signature)) []byte { s := good; f(&s); return s.Marshal() }
	for name, doc := range map[string][]byte{
		"unknown field":  []byte(strings.Replace(string(good.Marshal()), `"format"`, `"extra":1,"format"`, 1)),
		"upper-case sha": mut(func(s *Signature) { s.SHA256 = strings.ToUpper(sha) }),
		"bad capability": mut(func(s *Signature) { s.Capabilities = []string{"Object,x"} }),
		"short key":      mut(func(s *Signature) { s.Key = "AAAA" }),
		"short sig":      mut(func(s *Signature) { s.Sig = "AAAA" }),
		"too large":      append(good.Marshal(), make([]byte, MaxSignatureBytes)...),
	} {
		if _, err := ParseSignature(doc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var back Signature
	if err := json.Unmarshal(good.Marshal(), &back); err != nil || back.Sig != good.Sig {
		t.Fatal(err)
	}
}
