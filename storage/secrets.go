package storage

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Secret encryption at rest: AES-256-GCM with a random 96-bit nonce.
//
// Sealed format (one ASCII string, safe in a TEXT column):
//
//	sluice.v1.<keyid>.<base64url-raw(nonce || ciphertext || tag)>
//
// The additional authenticated data is "sluice.v1.<keyid>", so a ciphertext
// cannot be moved to another key id. Open picks the key by id, which lets keys
// rotate: the keyring's first key seals, every key opens.
//
// Keyring text (Config.SecretKey, SLUICE_SECRET_KEY, or the key file):
//
//	[id:]key[,id:key...]
//
// The first entry is the current key. An id is 1-32 characters of
// [A-Za-z0-9_-]; an entry without "id:" gets the id "default". Each key is, in
// this order of precedence: 64 hex digits (32 bytes); base64 (standard or URL
// alphabet, padded or not) of exactly 32 bytes; otherwise a passphrase, used as
// SHA-256(passphrase). A passphrase may contain ':' only when an id prefix is
// given, and never ','.

// SecretKeyFileName is the key file created under Config.DataDir when no
// SecretKey is configured.
const SecretKeyFileName = "secret.key"

// DefaultKeyID is the id of a keyring entry written without "id:".
const DefaultKeyID = "default"

const sealPrefix = "sluice.v1."

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// ErrDecrypt is returned by (*Keyring).Open when a ciphertext is malformed,
// tampered with, or sealed with a key the keyring lacks.
var ErrDecrypt = errors.New("storage: cannot decrypt secret")

// Keyring holds the current key and older keys kept for decryption.
type Keyring struct {
	current string
	order   []string
	aeads   map[string]cipher.AEAD
}

// ParseKeyring parses keyring text (see the package comment in secrets.go).
func ParseKeyring(s string) (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	for _, entry := range strings.Split(strings.TrimSpace(s), ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, key := DefaultKeyID, entry
		if before, after, ok := strings.Cut(entry, ":"); ok && keyIDPattern.MatchString(before) {
			id, key = before, after
		}
		if key == "" {
			return nil, fmt.Errorf("%w: secret key %q is empty", ErrInvalid, id)
		}
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("%w: secret key id %q appears twice", ErrInvalid, id)
		}
		block, err := aes.NewCipher(decodeKey(key))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		k.aeads[id] = aead
		k.order = append(k.order, id)
	}
	if len(k.order) == 0 {
		return nil, fmt.Errorf("%w: empty secret keyring", ErrInvalid)
	}
	k.current = k.order[0]
	return k, nil
}

// decodeKey turns one key string into 32 bytes: hex, base64, or SHA-256 of a passphrase.
func decodeKey(s string) []byte {
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b
		}
	}
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// GenerateKeyringEntry returns "id:base64key" with a random key and the given id.
func GenerateKeyringEntry(id string) (string, error) {
	if !keyIDPattern.MatchString(id) {
		return "", fmt.Errorf("%w: bad key id %q", ErrInvalid, id)
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return "", err
	}
	return id + ":" + base64.StdEncoding.EncodeToString(key[:]), nil
}

// CurrentKeyID is the id of the key that seals.
func (k *Keyring) CurrentKeyID() string { return k.current }

// KeyIDs lists the ids, current first.
func (k *Keyring) KeyIDs() []string { return append([]string(nil), k.order...) }

// Seal encrypts plaintext with the current key.
func (k *Keyring) Seal(plaintext []byte) (string, error) {
	aead := k.aeads[k.current]
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("storage: nonce: %w", err)
	}
	buf = aead.Seal(buf, buf[:aead.NonceSize()], plaintext, []byte(sealPrefix+k.current))
	return sealPrefix + k.current + "." + base64.RawURLEncoding.EncodeToString(buf), nil
}

// Open decrypts a string made by Seal with any key of the keyring.
func (k *Keyring) Open(sealed string) ([]byte, error) {
	id, payload, err := splitSealed(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w: unknown key id %q", ErrDecrypt, id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: malformed payload", ErrDecrypt)
	}
	pt, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(sealPrefix+id))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (key %q)", ErrDecrypt, id)
	}
	return pt, nil
}

// SealedKeyID returns the key id a sealed string names.
func SealedKeyID(sealed string) (string, error) {
	id, _, err := splitSealed(sealed)
	return id, err
}

// NeedsReseal reports whether sealed was made with a key other than the current one.
func (k *Keyring) NeedsReseal(sealed string) bool {
	id, _, err := splitSealed(sealed)
	return err == nil && id != k.current
}

func splitSealed(s string) (id, payload string, err error) {
	rest, ok := strings.CutPrefix(s, sealPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: not a sealed secret", ErrDecrypt)
	}
	id, payload, ok = strings.Cut(rest, ".")
	if !ok || !keyIDPattern.MatchString(id) || payload == "" {
		return "", "", fmt.Errorf("%w: malformed sealed secret", ErrDecrypt)
	}
	return id, payload, nil
}

// loadKeyring returns the keyring from cfg.SecretKey, or from the key file in
// cfg.DataDir, creating that file (mode 0600) with a fresh random key if absent.
func loadKeyring(cfg Config) (*Keyring, error) {
	if strings.TrimSpace(cfg.SecretKey) != "" {
		return ParseKeyring(cfg.SecretKey)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: no SecretKey and no DataDir for %s", ErrInvalid, SecretKeyFileName)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: create data dir: %w", err)
	}
	path := filepath.Join(cfg.DataDir, SecretKeyFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = createKeyFile(cfg.DataDir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: key file %s: %w", path, err)
	}
	return ParseKeyring(string(b))
}

// createKeyFile writes a new random keyring entry to path (mode 0600) unless
// the file appeared meanwhile, and returns the file's content. A temporary file
// is written completely, then hard-linked into place: the link fails if another
// process created the key file first, and no reader sees a half-written key.
func createKeyFile(dir, path string) ([]byte, error) {
	var idb [4]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, err
	}
	entry, err := GenerateKeyringEntry("k" + hex.EncodeToString(idb[:]))
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".secret.key.*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(entry + "\n")
	if werr == nil {
		werr = tmp.Chmod(0o600)
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, werr
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return os.ReadFile(path)
		}
		return nil, err
	}
	return []byte(entry), nil
}

// SecretReseal is what (*DB).ResealSecrets did.
type SecretReseal struct {
	// KeyID is the current key of the keyring: every stored secret is sealed with it
	// once ResealSecrets returns without error.
	KeyID string
	// Stored counts the stored secrets, soft-deleted exports' included: an export's
	// destination secrets and its alert webhook URL (storage/alerts.go) count one each,
	// and so do a connection's secrets (storage/connections.go).
	Stored int
	// Resealed counts the secrets this call re-sealed (0 when nothing was sealed with
	// another key); FromKeys splits them by the key id that had sealed them.
	Resealed int
	FromKeys map[string]int
}

// UnopenedSecret is one stored secret no key of the keyring opens: an export's, or a
// connection's (ConnectionID set, ExportID empty).
type UnopenedSecret struct {
	ExportID, ExportName         string
	ConnectionID, ConnectionName string
	Deleted                      bool
	KeyID                        string // the key id the sealed text names ("" when malformed)
	Err                          error
}

// UnopenedSecretsError is returned by ResealSecrets, which then changed nothing, when
// some stored secrets cannot be opened by any configured key. It wraps ErrDecrypt.
type UnopenedSecretsError struct {
	KeyIDs  []string // the keyring's ids, current first
	Secrets []UnopenedSecret
}

func (e *UnopenedSecretsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d stored secret(s) cannot be opened by any configured key (keyring: %s); nothing was re-sealed:",
		len(e.Secrets), strings.Join(e.KeyIDs, ", "))
	for _, s := range e.Secrets {
		deleted := ""
		if s.Deleted {
			deleted = ", deleted"
		}
		what, id, name := "export", s.ExportID, s.ExportName
		if s.ConnectionID != "" {
			what, id, name = "connection", s.ConnectionID, s.ConnectionName
		}
		fmt.Fprintf(&b, "\n  %s %s (%q%s): sealed with key %q: %v", what, id, name, deleted, s.KeyID, s.Err)
	}
	b.WriteString("\nadd the key(s) that sealed them to the keyring (after the current key) and run again")
	return b.String()
}

// Unwrap makes errors.Is(err, ErrDecrypt) hold.
func (e *UnopenedSecretsError) Unwrap() error { return ErrDecrypt }

// sealedRow is one row holding sealed secrets, read by ResealSecrets.
type sealedRow struct {
	ID           string     `gorm:"column:id"`
	Name         string     `gorm:"column:name"`
	SealedSecret string     `gorm:"column:secret_config"`
	AlertSecret  string     `gorm:"column:alert_webhook_secret"`
	DeletedAt    *time.Time `gorm:"column:deleted_at"`
}

// ResealSecrets re-seals with the current key every stored secret (exports' destination
// secrets and alert webhook URLs, connections' secrets) sealed with another key,
// soft-deleted exports included, in one transaction: either every secret is re-sealed or
// nothing changes. It first opens every stored secret, those already sealed with the current
// key too, and refuses with an *UnopenedSecretsError (wrapping ErrDecrypt) when any cannot be
// opened. Running it again re-seals nothing (idempotent).
//
// Hosts still sealing with an older current key would seal new secrets with it: give every
// host the new keyring (new key first, old keys after) before calling this.
func (db *DB) ResealSecrets(ctx context.Context) (SecretReseal, error) {
	out := SecretReseal{KeyID: db.keys.CurrentKeyID(), FromKeys: map[string]int{}}
	err := db.inTx(ctx, func(tx *gorm.DB) error {
		// FOR UPDATE on PostgreSQL (no concurrent change between open and write);
		// SQLite's write transactions are immediate, which excludes other writers.
		var exports, conns []sealedRow
		err := tx.Table(BatchExport{}.TableName()).Clauses(clause.Locking{Strength: "UPDATE"}).
			Select("id", "name", "secret_config", "alert_webhook_secret", "deleted_at").Order("id").Find(&exports).Error
		if err != nil {
			return mapErr(err, "reseal secrets: read exports")
		}
		err = tx.Table(Connection{}.TableName()).Clauses(clause.Locking{Strength: "UPDATE"}).
			Select("id", "name", "secret_config").Order("id").Find(&conns).Error
		if err != nil {
			return mapErr(err, "reseal secrets: read connections")
		}
		type reseal struct {
			table, id, column, old, keyID string
			plaintext                     []byte
		}
		var todo []reseal
		var bad []UnopenedSecret
		visit := func(table string, r sealedRow, column, sealed string) {
			if sealed == "" {
				return // no secret stored (read as {} or "")
			}
			out.Stored++
			keyID, _ := SealedKeyID(sealed)
			pt, err := db.keys.Open(sealed)
			if err != nil {
				u := UnopenedSecret{ExportID: r.ID, ExportName: r.Name, Deleted: r.DeletedAt != nil, KeyID: keyID, Err: err}
				if table == connectionsTable {
					u = UnopenedSecret{ConnectionID: r.ID, ConnectionName: r.Name, KeyID: keyID, Err: err}
				}
				bad = append(bad, u)
				return
			}
			if db.keys.NeedsReseal(sealed) {
				todo = append(todo, reseal{table, r.ID, column, sealed, keyID, pt})
			}
		}
		for _, r := range exports {
			// The destination's secrets, then the alert webhook URL (storage/alerts.go).
			visit(BatchExport{}.TableName(), r, "secret_config", r.SealedSecret)
			visit(BatchExport{}.TableName(), r, "alert_webhook_secret", r.AlertSecret)
		}
		for _, r := range conns {
			visit(Connection{}.TableName(), r, "secret_config", r.SealedSecret)
		}
		if len(bad) > 0 {
			return &UnopenedSecretsError{KeyIDs: db.keys.KeyIDs(), Secrets: bad}
		}
		for _, r := range todo {
			sealed, err := db.keys.Seal(r.plaintext)
			if err != nil {
				return err
			}
			res := tx.Table(r.table).Where("id = ? AND "+r.column+" = ?", r.id, r.old).
				Update(r.column, sealed)
			if res.Error != nil {
				return mapErr(res.Error, "reseal secrets: "+r.table+" "+r.id)
			}
			if res.RowsAffected != 1 {
				return fmt.Errorf("reseal secrets: %s %s changed during the rotation: %w", r.table, r.id, ErrConflict)
			}
			out.FromKeys[r.keyID]++
		}
		out.Resealed = len(todo)
		return nil
	})
	if err != nil {
		return SecretReseal{KeyID: out.KeyID, FromKeys: map[string]int{}}, err
	}
	return out, nil
}
