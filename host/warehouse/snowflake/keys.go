package snowflake

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// ParsePrivateKey reads an RSA private key for Snowflake key-pair authentication: PEM
// "PRIVATE KEY" (PKCS#8), "ENCRYPTED PRIVATE KEY" (PKCS#8 PBES2: PBKDF2 with HMAC-SHA1/
// SHA-256/SHA-512, AES-CBC or 3DES-CBC — what `openssl pkcs8 -topk8 -v2 ...` writes, as
// Snowflake's documentation shows) or "RSA PRIVATE KEY" (PKCS#1, optionally with legacy
// PEM encryption). Keys pasted with literal "\n" are accepted.
func ParsePrivateKey(pemBytes []byte, passphrase string) (*rsa.PrivateKey, error) {
	s := strings.TrimSpace(string(pemBytes))
	if s == "" {
		return nil, errors.New("invalid private key: empty")
	}
	if !strings.Contains(s, "\n") && strings.Contains(s, `\n`) {
		s = strings.ReplaceAll(s, `\n`, "\n")
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("invalid private key: not PEM")
	}
	der := block.Bytes
	switch block.Type {
	case "ENCRYPTED PRIVATE KEY":
		if passphrase == "" {
			return nil, errors.New("invalid private key: the key is encrypted and no passphrase is bound")
		}
		var err error
		if der, err = decryptPKCS8(der, []byte(passphrase)); err != nil {
			return nil, fmt.Errorf("invalid private key: %w", err)
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY":
		//lint:ignore SA1019 legacy PEM encryption is what older openssl commands write
		if x509.IsEncryptedPEMBlock(block) { //nolint:staticcheck
			if passphrase == "" {
				return nil, errors.New("invalid private key: the key is encrypted and no passphrase is bound")
			}
			var err error
			if der, err = x509.DecryptPEMBlock(block, []byte(passphrase)); err != nil { //nolint:staticcheck
				return nil, fmt.Errorf("invalid private key: %w", err)
			}
		}
	default:
		return nil, fmt.Errorf("invalid private key: unexpected PEM block %q", block.Type)
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("invalid private key: Snowflake key-pair authentication needs an RSA key")
		}
		return rk, nil
	}
	k, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		return nil, errors.New("invalid private key: neither PKCS#8 nor PKCS#1 RSA (wrong passphrase?)")
	}
	return k, nil
}

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
)

type encryptedPrivateKeyInfo struct {
	Algo          algorithmIdentifier
	EncryptedData []byte
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type pbes2Params struct {
	KDF algorithmIdentifier
	Enc algorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                 `asn1:"optional"`
	PRF        algorithmIdentifier `asn1:"optional"`
}

// decryptPKCS8 decrypts a PKCS#8 EncryptedPrivateKeyInfo protected with PBES2.
func decryptPKCS8(der, pass []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if _, err := asn1.Unmarshal(der, &info); err != nil {
		return nil, fmt.Errorf("bad encrypted PKCS#8: %w", err)
	}
	if !info.Algo.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("unsupported PKCS#8 encryption %v (want PBES2; convert with openssl pkcs8 -topk8 -v2 aes256)", info.Algo.Algorithm)
	}
	var p pbes2Params
	if _, err := asn1.Unmarshal(info.Algo.Parameters.FullBytes, &p); err != nil {
		return nil, fmt.Errorf("bad PBES2 parameters: %w", err)
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, errors.New("unsupported key derivation (want PBKDF2)")
	}
	var kp pbkdf2Params
	if _, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil {
		return nil, fmt.Errorf("bad PBKDF2 parameters: %w", err)
	}
	var prf func() hash.Hash
	switch {
	case len(kp.PRF.Algorithm) == 0 || kp.PRF.Algorithm.Equal(oidHMACSHA1):
		prf = sha1.New
	case kp.PRF.Algorithm.Equal(oidHMACSHA256):
		prf = sha256.New
	case kp.PRF.Algorithm.Equal(oidHMACSHA512):
		prf = sha512.New
	default:
		return nil, fmt.Errorf("unsupported PBKDF2 PRF %v", kp.PRF.Algorithm)
	}
	var keyLen int
	var newCipher func([]byte) (cipher.Block, error)
	switch {
	case p.Enc.Algorithm.Equal(oidAES128CBC):
		keyLen, newCipher = 16, aes.NewCipher
	case p.Enc.Algorithm.Equal(oidAES192CBC):
		keyLen, newCipher = 24, aes.NewCipher
	case p.Enc.Algorithm.Equal(oidAES256CBC):
		keyLen, newCipher = 32, aes.NewCipher
	case p.Enc.Algorithm.Equal(oidDESEDE3CBC):
		keyLen, newCipher = 24, des.NewTripleDESCipher
	default:
		return nil, fmt.Errorf("unsupported cipher %v", p.Enc.Algorithm)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(p.Enc.Parameters.FullBytes, &iv); err != nil {
		return nil, fmt.Errorf("bad cipher parameters: %w", err)
	}
	if kp.Iterations <= 0 || kp.Iterations > 10_000_000 {
		return nil, errors.New("bad PBKDF2 iteration count")
	}
	key, err := pbkdf2.Key(prf, string(pass), kp.Salt, kp.Iterations, keyLen)
	if err != nil {
		return nil, err
	}
	block, err := newCipher(key)
	if err != nil {
		return nil, err
	}
	data := info.EncryptedData
	if len(iv) != block.BlockSize() || len(data) == 0 || len(data)%block.BlockSize() != 0 {
		return nil, errors.New("bad encrypted data length")
	}
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, data)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > block.BlockSize() || pad > len(out) {
		return nil, errors.New("decryption failed (wrong passphrase?)")
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return nil, errors.New("decryption failed (wrong passphrase?)")
		}
	}
	return out[:len(out)-pad], nil
}

// EncryptPKCS8 writes an RSA key as a PEM "ENCRYPTED PRIVATE KEY" (PBES2, PBKDF2-HMAC-SHA256,
// AES-256-CBC), as `openssl pkcs8 -topk8 -v2 aes256` does. Tests and tooling.
func EncryptPKCS8(k *rsa.PrivateKey, pass string, salt, iv []byte) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, pass, salt, 2048, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(der)%aes.BlockSize
	for range pad {
		der = append(der, byte(pad))
	}
	enc := make([]byte, len(der))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(enc, der)
	nullParams := asn1.RawValue{Tag: asn1.TagNull}
	prf := algorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: nullParams}
	kdfParams, err := asn1.Marshal(pbkdf2Params{Salt: salt, Iterations: 2048, PRF: prf})
	if err != nil {
		return nil, err
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	params, err := asn1.Marshal(pbes2Params{
		KDF: algorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdfParams}},
		Enc: algorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		return nil, err
	}
	out, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algo:          algorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}},
		EncryptedData: enc,
	})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: out}), nil
}
