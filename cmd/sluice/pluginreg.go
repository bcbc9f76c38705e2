package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/pluginreg"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/internal/lockfile"
)

// grantable: every capability that needs a grant; the CLI reads manifests with all of them.
var grantable = []string{abi.CapObject, abi.CapBigQuery, abi.CapSnowflake, abi.CapHTTP, abi.CapSQL}

// describe validates a module and returns its sha256 and manifest.
func describe(ctx context.Context, wasm []byte) (string, abi.Manifest, error) {
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-cli-cache")})
	if err != nil {
		return "", abi.Manifest{}, err
	}
	defer rt.Close(ctx)
	v, err := rt.Validate(ctx, wasm, grantable)
	if err != nil {
		return "", abi.Manifest{}, err
	}
	return v.SHA256, v.Manifest, nil
}

// registryClient is the CLI's: any registry (its user names it), any address, credentials
// from Docker's configuration (`docker login`, `oras login`) when there are some.
func registryClient() *pluginreg.Client {
	p := pluginreg.Policy{AnyRegistry: true, AllowPrivate: true}
	if store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{}); err == nil {
		p.Credential = credentials.Credential(store)
	}
	return pluginreg.NewClient(p)
}

// pluginsKeygen writes a new signing key pair.
func pluginsKeygen(args []string) error {
	fs := flag.NewFlagSet("plugins keygen", flag.ContinueOnError)
	out := fs.String("out", "sluice-plugin-signing", "write the private key to OUT.key (mode 0600) and the public key to OUT.pub")
	comment := fs.String("comment", "", "a comment written into both files (who holds the key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, err := pluginreg.GenerateKey(*out+".key", *out+".pub", *comment)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s.key (private: keep it secret) and %s.pub\npublic key: %x\n", *out, *out, []byte(pub))
	return nil
}

// pluginsSign signs a module (its sha256 and the capabilities its manifest requests) into
// PATH.sig, or, with --lock and no module, every plugin pinned in the lock into <lock>.sig.
func pluginsSign(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plugins sign", flag.ContinueOnError)
	keyFile := fs.String("key", "", "private key file (`sluice plugins keygen`)")
	out := fs.String("out", "", "signature file (default PATH.wasm.sig)")
	lock := fs.String("lock", "", "sign every plugin pinned in this lock file into LOCK.sig instead of one module")
	attach := fs.String("attach", "", "also attach the signature to this plugin artifact in a registry (REGISTRY/REPOSITORY:TAG), which must hold the same module")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keyFile == "" || (fs.NArg() == 1) == (*lock != "") {
		return errors.New("usage: sluice plugins sign --key FILE [--out FILE] [--attach REGISTRY/REPO:TAG] PATH.wasm | sluice plugins sign --key FILE --lock plugins.lock")
	}
	key, err := pluginreg.ReadPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	if *lock != "" {
		l, err := lockfile.Read(*lock)
		if err != nil {
			return err
		}
		sigs := map[string][]byte{}
		for _, e := range l.Plugins {
			sigs[e.Name] = pluginreg.Sign(key, e.SHA256, e.Capabilities).Marshal()
		}
		if err := lockfile.WriteSignatures(lockfile.SignaturesPath(*lock), sigs); err != nil {
			return err
		}
		fmt.Printf("signed %d plugins of %s into %s with key %x\n", len(sigs), *lock, lockfile.SignaturesPath(*lock), []byte(key.Public().(ed25519.PublicKey)))
		return nil
	}
	wasm, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	sha, m, err := describe(ctx, wasm)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = fs.Arg(0) + ".sig"
	}
	s := pluginreg.Sign(key, sha, m.Capabilities)
	if err := os.WriteFile(*out, append(s.Marshal(), '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("signed %s %s (sha256 %s, capabilities [%s]) into %s\n", m.Name, m.Version, sha, strings.Join(s.Capabilities, ","), *out)
	if *attach != "" {
		r, err := registryClient().PushSignature(ctx, *attach, s.Marshal())
		if err != nil {
			return err
		}
		fmt.Printf("attached the signature to %s\n", r)
	}
	return nil
}

// pluginsPush stores a module in a registry as a plugin artifact, with signatures.
func pluginsPush(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plugins push", flag.ContinueOnError)
	var sigFiles []string
	fs.Func("signature", "a signature file to attach (`sluice plugins sign`); repeatable", func(s string) error {
		sigFiles = append(sigFiles, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("usage: sluice plugins push [--signature FILE]... PATH.wasm REGISTRY/REPOSITORY:TAG")
	}
	wasm, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	sha, m, err := describe(ctx, wasm)
	if err != nil {
		return err
	}
	var sigs [][]byte
	for _, f := range sigFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		s, err := pluginreg.ParseSignature(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if s.SHA256 != sha {
			return fmt.Errorf("%s signs module sha256 %s, not %s (sha256 %s)", f, s.SHA256, fs.Arg(0), sha)
		}
		sigs = append(sigs, b)
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p, err := registryClient().Push(ctx, fs.Arg(1), wasm, manifest, sigs...)
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s %s (module sha256 %s, %d signature(s))\n%s\n", m.Name, m.Version, sha, len(sigs), p.Ref)
	return nil
}

// pluginsPull fetches a plugin artifact: the module to a file, its signatures next to it
// (PATH.sig, PATH.sig.2, ...), checked against --trusted-keys when given.
func pluginsPull(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plugins pull", flag.ContinueOnError)
	out := fs.String("o", "", "module file (default: <repository base name>.wasm)")
	trusted := fs.String("trusted-keys", os.Getenv("SLUICE_PLUGIN_TRUSTED_KEYS"), "verify the signatures with these keys (as SLUICE_PLUGIN_TRUSTED_KEYS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: sluice plugins pull [-o PATH.wasm] [--trusted-keys KEYS] REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]")
	}
	trust, err := pluginreg.ParseTrustedKeys(*trusted)
	if err != nil {
		return err
	}
	a, err := registryClient().Pull(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if *out == "" {
		*out = path.Base(a.Ref.Repository) + ".wasm"
	}
	if trust.Enabled() {
		sha, m, err := describe(ctx, a.Module)
		if err != nil {
			return err
		}
		if err := trust.Verify(sha, m.Capabilities, a.Signatures); err != nil {
			return err
		}
	}
	if err := os.WriteFile(*out, a.Module, 0o644); err != nil {
		return err
	}
	for i, s := range a.Signatures {
		name := *out + ".sig"
		if i > 0 {
			name = fmt.Sprintf("%s.sig.%d", *out, i+1)
		}
		if err := os.WriteFile(name, s, 0o644); err != nil {
			return err
		}
	}
	verified := "not verified (no --trusted-keys)"
	if trust.Enabled() {
		verified = "verified"
	}
	fmt.Printf("pulled %s into %s (%d bytes, %d signature(s), %s)\nmanifest: %s\n", a.Ref, *out, len(a.Module), len(a.Signatures), verified, a.ManifestJSON)
	return nil
}

// verifyLockSignatures checks <lock>.sig: every pinned plugin signed by a trusted key for
// its pinned sha256 and capabilities.
func verifyLockSignatures(l lockfile.Lock, lock, keys string) error {
	trust, err := pluginreg.ParseTrustedKeys(keys)
	if err != nil {
		return err
	}
	if !trust.Enabled() {
		return fmt.Errorf("--trusted-keys names no key")
	}
	sigs, err := lockfile.ReadSignatures(lockfile.SignaturesPath(lock))
	if err != nil {
		return fmt.Errorf("%w (sign with `make plugins-sign`)", err)
	}
	var errs []error
	names := make([]string, 0, len(l.Plugins))
	for _, e := range l.Plugins {
		names = append(names, e.Name)
		var docs [][]byte
		if s, ok := sigs[e.Name]; ok {
			docs = append(docs, s)
		}
		if err := trust.Verify(e.SHA256, e.Capabilities, docs); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (re-sign with `make plugins-sign`)", e.Name, err))
		}
	}
	for name := range sigs {
		if !slices.Contains(names, name) {
			errs = append(errs, fmt.Errorf("%s signs %q, which %s does not pin", lockfile.SignaturesPath(lock), name, lock))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// pluginRegistryFlags adds serve's flags of signed and registry installs; the function it
// returns, called after parsing, gives the host's trust and registry policy.
func pluginRegistryFlags(fs *flag.FlagSet) func() (pluginreg.Trust, pluginreg.Policy, error) {
	keys := fs.String("plugin-trusted-keys", env("SLUICE_PLUGIN_TRUSTED_KEYS", ""), "ed25519 public keys (base64 or hex) or key files, comma-separated: every plugin installed must be signed by one (uploads, registry installs, plugins.lock via LOCK.sig); empty: signatures are not checked (SLUICE_PLUGIN_TRUSTED_KEYS)")
	registries := fs.String("plugin-registries", env("SLUICE_PLUGIN_REGISTRIES", ""), "OCI registries (host[:port], comma-separated) POST /api/v1/plugins may install from by reference; empty: none (SLUICE_PLUGIN_REGISTRIES)")
	privDef, privErr := envBool("SLUICE_PLUGIN_REGISTRY_ALLOW_PRIVATE")
	private := fs.Bool("plugin-registry-allow-private", privDef, "let registry pulls reach loopback, private and link-local addresses (a registry on this network, tests); refused by default (SLUICE_PLUGIN_REGISTRY_ALLOW_PRIVATE)")
	return func() (pluginreg.Trust, pluginreg.Policy, error) {
		if privErr != nil && !flagSet(fs, "plugin-registry-allow-private") {
			return pluginreg.Trust{}, pluginreg.Policy{}, privErr
		}
		trust, err := pluginreg.ParseTrustedKeys(*keys)
		if err != nil {
			return trust, pluginreg.Policy{}, err
		}
		var regs []string
		for _, r := range strings.Split(*registries, ",") {
			if r = strings.TrimSpace(r); r != "" {
				regs = append(regs, r)
			}
		}
		return trust, pluginreg.Policy{Registries: regs, AllowPrivate: *private}, nil
	}
}
