package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// TokenPrefix starts every API token, so leaked tokens are easy to spot.
const TokenPrefix = "sluice_"

// HashToken is the stored form of a token: lowercase hex SHA-256.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ScopeList splits the comma list of scopes.
func (t APIToken) ScopeList() []string {
	var out []string
	for _, s := range strings.Split(t.Scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// HasScope reports whether the token grants scope: admin grants everything,
// write grants read.
func (t APIToken) HasScope(scope string) bool {
	list := t.ScopeList()
	switch {
	case slices.Contains(list, ScopeAdmin), slices.Contains(list, scope):
		return true
	case scope == ScopeRead:
		return slices.Contains(list, ScopeWrite)
	}
	return false
}

// CreateAPIToken stores a new token and returns its row and the plaintext
// token, which is not kept and cannot be shown again.
func (db *DB) CreateAPIToken(ctx context.Context, name string, scopes []string) (APIToken, string, error) {
	if strings.TrimSpace(name) == "" {
		return APIToken{}, "", fmt.Errorf("%w: token name is required", ErrInvalid)
	}
	if len(scopes) == 0 {
		return APIToken{}, "", fmt.Errorf("%w: token needs at least one scope", ErrInvalid)
	}
	var clean []string
	for _, s := range scopes {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != ScopeRead && s != ScopeWrite && s != ScopeAdmin {
			return APIToken{}, "", fmt.Errorf("%w: unknown scope %q", ErrInvalid, s)
		}
		if !slices.Contains(clean, s) {
			clean = append(clean, s)
		}
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return APIToken{}, "", err
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	t := APIToken{
		ID:        uuid.NewString(),
		Name:      name,
		TokenHash: HashToken(token),
		Scopes:    strings.Join(clean, ","),
		CreatedAt: now(),
	}
	if err := db.gdb.WithContext(ctx).Create(&t).Error; err != nil {
		return APIToken{}, "", mapErr(err, "create token")
	}
	return t, token, nil
}

// AuthenticateAPIToken returns the row of a plaintext token (ErrNotFound for an
// unknown one) and records its use.
func (db *DB) AuthenticateAPIToken(ctx context.Context, token string) (APIToken, error) {
	if token == "" {
		return APIToken{}, fmt.Errorf("token: %w", ErrNotFound)
	}
	var t APIToken
	g := db.gdb.WithContext(ctx)
	if err := g.Where("token_hash = ?", HashToken(token)).Take(&t).Error; err != nil {
		return APIToken{}, mapErr(err, "token")
	}
	used := now()
	if err := g.Model(&APIToken{}).Where("id = ?", t.ID).Update("last_used_at", used).Error; err != nil {
		return APIToken{}, mapErr(err, "token: record use")
	}
	t.LastUsedAt = &used
	return t, nil
}

// ListAPITokens returns every token row, oldest first.
func (db *DB) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	var out []APIToken
	err := db.gdb.WithContext(ctx).Order("created_at").Order("id").Find(&out).Error
	return out, mapErr(err, "list tokens")
}

// ListAPITokensPage returns one page of ListAPITokens: oldest first by
// (created_at, id), the rows after p.After, at most p.Limit of them.
func (db *DB) ListAPITokensPage(ctx context.Context, p Page) ([]APIToken, error) {
	var out []APIToken
	err := p.apply(db.gdb.WithContext(ctx), false).Find(&out).Error
	return out, mapErr(err, "list tokens")
}

// DeleteAPIToken revokes a token.
func (db *DB) DeleteAPIToken(ctx context.Context, id string) error {
	res := db.gdb.WithContext(ctx).Where("id = ?", id).Delete(&APIToken{})
	if res.Error != nil {
		return mapErr(res.Error, "delete token "+id)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("delete token %s: %w", id, ErrNotFound)
	}
	return nil
}
