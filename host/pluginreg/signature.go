// Package pluginreg distributes and authenticates plugin modules: it stores and fetches them
// as OCI artifacts in a registry (oras-go), and signs and verifies them with ed25519 over the
// module's sha256 and the capabilities it requests (the idea of wasmCloud's claims). The
// formats are specified byte for byte in docs/plugin-authors.md ("Signed plugins from an
// OCI registry"); docs/RATIONALE.md says why.
package pluginreg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/abi"
)

// SignatureFormat names version 1 of the signed payload and of the signature document.
const SignatureFormat = "sluice-plugin-signature/v1"

// MaxSignatureBytes bounds one signature document (an upload's field, a registry referrer).
const MaxSignatureBytes = 16 << 10

var (
	shaRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	capRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
)

// ErrUnsigned: trusted keys are configured and the module comes without a signature.
var ErrUnsigned = errors.New("unsigned plugin")

// ErrUntrusted: no signature that came with the module verifies with a trusted key for its
// sha256 and requested capabilities.
var ErrUntrusted = errors.New("plugin signature refused")

// Requested is the capabilities a manifest requests that need a grant: its list without the
// always-granted ones (log, metrics, encode), sorted, each once. It is what a signature
// covers and what plugins.lock pins.
func Requested(manifestCaps []string) []string {
	out := []string{}
	for _, c := range manifestCaps {
		if !slices.Contains(abi.AlwaysGranted, c) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// Payload is the exact byte string a signature signs, for a module's lower-case hex sha256
// and its requested capabilities (normalised with Requested):
//
//	sluice-plugin-signature/v1\n
//	sha256:<64 lower-case hex digits>\n
//	capabilities:<names, sorted, comma-separated; empty when none>\n
func Payload(sha256Hex string, capabilities []string) []byte {
	return []byte(SignatureFormat + "\nsha256:" + sha256Hex + "\ncapabilities:" + strings.Join(Requested(capabilities), ",") + "\n")
}

// Signature is the signature document stored next to a module: an upload's "signature"
// field, a registry artifact's referrer, a line of plugins.lock.sig. Key and Sig are
// standard base64 (32 and 64 bytes).
type Signature struct {
	Format       string   `json:"format"`
	SHA256       string   `json:"sha256"`
	Capabilities []string `json:"capabilities"`
	Key          string   `json:"key"`
	Sig          string   `json:"signature"`
}

// Sign signs a module's sha256 and requested capabilities.
func Sign(key ed25519.PrivateKey, sha256Hex string, capabilities []string) Signature {
	caps := Requested(capabilities)
	return Signature{Format: SignatureFormat, SHA256: sha256Hex, Capabilities: caps,
		Key: base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(key, Payload(sha256Hex, caps)))}
}

// Marshal encodes a signature document as one line of JSON.
func (s Signature) Marshal() []byte {
	b, _ := json.Marshal(s)
	return b
}

// ParseSignature decodes and checks the shape of a signature document (not its validity:
// Trust.Verify does that).
func ParseSignature(b []byte) (Signature, error) {
	var s Signature
	if len(b) > MaxSignatureBytes {
		return s, fmt.Errorf("signature document is %d bytes; at most %d", len(b), MaxSignatureBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("signature document is not valid JSON of format %s: %w", SignatureFormat, err)
	}
	switch {
	case s.Format != SignatureFormat:
		return s, fmt.Errorf("signature format %q is not supported (want %q)", s.Format, SignatureFormat)
	case !shaRE.MatchString(s.SHA256):
		return s, fmt.Errorf("signature sha256 %q is not 64 lower-case hex digits", s.SHA256)
	}
	for _, c := range s.Capabilities {
		if !capRE.MatchString(c) {
			return s, fmt.Errorf("signature names an invalid capability %q", c)
		}
	}
	if _, err := decodeKey(s.Key); err != nil {
		return s, fmt.Errorf("signature key: %w", err)
	}
	if sig, err := base64.StdEncoding.DecodeString(s.Sig); err != nil || len(sig) != ed25519.SignatureSize {
		return s, fmt.Errorf("signature: want %d bytes in standard base64", ed25519.SignatureSize)
	}
	return s, nil
}

// Trust is the set of public keys an operator trusts (SLUICE_PLUGIN_TRUSTED_KEYS). Empty:
// signatures are not required and not checked.
type Trust struct{ keys []ed25519.PublicKey }

// NewTrust trusts these keys.
func NewTrust(keys ...ed25519.PublicKey) Trust { return Trust{keys: keys} }

// Enabled reports whether any key is trusted, so that modules must be signed.
func (t Trust) Enabled() bool { return len(t.keys) > 0 }

func (t Trust) trusts(k ed25519.PublicKey) bool {
	for _, tk := range t.keys {
		if tk.Equal(k) {
			return true
		}
	}
	return false
}

// Verify accepts a module when one of the signature documents that came with it is signed
// by a trusted key over its sha256 and exactly the capabilities it requests (requested as in
// its manifest; normalised with Requested). Otherwise it returns ErrUnsigned (none came) or
// ErrUntrusted with every document's reason. A Trust without keys accepts everything.
func (t Trust) Verify(sha256Hex string, requested []string, docs [][]byte) error {
	if !t.Enabled() {
		return nil
	}
	if len(docs) == 0 {
		return fmt.Errorf("%w: module sha256 %s comes without a signature, and this host installs only plugins signed by a trusted key (SLUICE_PLUGIN_TRUSTED_KEYS); sign it with `sluice plugins sign`", ErrUnsigned, sha256Hex)
	}
	want := Requested(requested)
	var reasons []string
	for _, d := range docs {
		err := t.verifyOne(sha256Hex, want, d)
		if err == nil {
			return nil
		}
		reasons = append(reasons, err.Error())
	}
	return fmt.Errorf("%w: module sha256 %s: %s", ErrUntrusted, sha256Hex, strings.Join(reasons, "; "))
}

func (t Trust) verifyOne(sha256Hex string, want []string, doc []byte) error {
	s, err := ParseSignature(doc)
	if err != nil {
		return err
	}
	key, _ := decodeKey(s.Key)
	sig, _ := base64.StdEncoding.DecodeString(s.Sig)
	switch {
	case !t.trusts(key):
		return fmt.Errorf("signed by key %s, which is not among the trusted keys", s.Key)
	case s.SHA256 != sha256Hex:
		return fmt.Errorf("the signature is for module sha256 %s, not this module", s.SHA256)
	case !ed25519.Verify(key, Payload(s.SHA256, s.Capabilities), sig):
		return fmt.Errorf("the signature by key %s does not verify (the document was altered or is corrupt)", s.Key)
	case !slices.Equal(Requested(s.Capabilities), want):
		return fmt.Errorf("signed for capabilities [%s], but the module requests [%s]", strings.Join(Requested(s.Capabilities), ","), strings.Join(want, ","))
	}
	return nil
}

// ParseTrustedKeys reads SLUICE_PLUGIN_TRUSTED_KEYS: entries separated by commas or white
// space, each an ed25519 public key (32 bytes, standard base64 or hex) or the path of a file
// holding such keys, one per line ('#' starts a comment).
func ParseTrustedKeys(v string) (Trust, error) {
	var keys []ed25519.PublicKey
	for _, item := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		if k, err := decodeKey(item); err == nil {
			keys = append(keys, k)
			continue
		}
		fk, err := ReadPublicKeys(item)
		if err != nil {
			return Trust{}, fmt.Errorf("SLUICE_PLUGIN_TRUSTED_KEYS: %q is neither an ed25519 public key (32 bytes in base64 or hex) nor a readable key file: %w", item, err)
		}
		keys = append(keys, fk...)
	}
	return NewTrust(keys...), nil
}

// ReadPublicKeys reads a public key file: one key a line (base64 or hex), '#' comments.
func ReadPublicKeys(path string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PublicKey
	for i, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", path)
	}
	return keys, nil
}

func decodeKey(s string) (ed25519.PublicKey, error) {
	b, err := decode32(s)
	if err != nil {
		return nil, fmt.Errorf("not an ed25519 public key: %w", err)
	}
	return ed25519.PublicKey(b), nil
}

// decode32 decodes 32 bytes given as 64 hex digits or standard base64.
func decode32(s string) ([]byte, error) {
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("want 32 bytes in standard base64 or hex")
	}
	return b, nil
}

// ReadPrivateKey reads a private key file: the 32-byte ed25519 seed in standard base64 or
// hex on its first non-comment line (what GenerateKey writes).
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		seed, err := decode32(line)
		if err != nil {
			return nil, fmt.Errorf("%s: not an ed25519 private key seed: %w", path, err)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	return nil, fmt.Errorf("%s holds no key", path)
}

// GenerateKey writes a new key pair: the seed to privPath (mode 0600) and the public key to
// pubPath, both in standard base64 after a comment line naming them.
func GenerateKey(privPath, pubPath, comment string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(privPath, 0o600, "# sluice plugin signing key (PRIVATE): "+comment, priv.Seed()); err != nil {
		return nil, err
	}
	if err := writeKey(pubPath, 0o644, "# sluice plugin signing public key: "+comment, pub); err != nil {
		return nil, err
	}
	return pub, nil
}

func writeKey(path string, mode os.FileMode, comment string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s\n%s\n", comment, base64.StdEncoding.EncodeToString(b))
	return errors.Join(err, f.Close())
}
