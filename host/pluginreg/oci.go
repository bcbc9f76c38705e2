package pluginreg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	oras "oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/sluicehq/sluice/host/httpcap"
)

// Media types of a plugin artifact (OCI image manifest 1.1 with an artifactType).
const (
	// ArtifactType is the plugin manifest's artifactType.
	ArtifactType = "application/vnd.sluice.plugin.v1"
	// ModuleMediaType is the media type of the manifest's one layer: the WebAssembly module.
	ModuleMediaType = "application/vnd.sluice.plugin.v1+wasm"
	// SignatureType is both the artifactType of a signature manifest (a referrer whose
	// subject is the plugin manifest) and the media type of its one layer, a signature
	// document (Signature, JSON).
	SignatureType = "application/vnd.sluice.plugin.signature.v1+json"
	// AnnotationManifest holds the plugin's manifest (sluice_describe's JSON) on the plugin
	// manifest, for registry browsers and `sluice plugins pull`; the host reads the manifest
	// from the module itself.
	AnnotationManifest = "dev.sluice.plugin.manifest"
	// createdAt is the fixed org.opencontainers.image.created of every manifest pushed, so
	// pushing the same module gives the same manifest digest (and its signatures stay
	// attached to it).
	createdAt = "1970-01-01T00:00:00Z"
	// maxSignatures bounds the signature referrers read per pull.
	maxSignatures = 16
	// maxManifestBytes bounds a manifest (oras' own default).
	maxManifestBytes = 4 << 20
)

// ErrInvalidReference: the reference does not parse, or names neither a tag nor a digest.
var ErrInvalidReference = errors.New("invalid plugin reference")

// ErrRegistryNotAllowed: the reference names a registry the operator did not allow.
var ErrRegistryNotAllowed = errors.New("registry not allowed")

// ErrAddressRefused: a registry connection would reach a loopback, private or otherwise
// non-public address, and the policy does not allow private addresses.
var ErrAddressRefused = errors.New("registry address refused")

// ErrDigestMismatch: the registry's content is not the digest the reference pins.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrNotPlugin: the artifact is not a Sluice plugin (another artifactType or layout).
var ErrNotPlugin = errors.New("not a Sluice plugin artifact")

// Policy says which registries a Client may reach.
type Policy struct {
	// Registries are the registry hosts ("ghcr.io", "registry.internal:5000") references
	// may name (SLUICE_PLUGIN_REGISTRIES); empty: none, unless AnyRegistry.
	Registries []string
	// AnyRegistry allows every registry (the CLI: its user names the registry).
	AnyRegistry bool
	// AllowPrivate lets connections reach loopback, private, link-local and other
	// non-public addresses, checked on the resolved address at dial time like the http
	// capability's (SLUICE_PLUGIN_REGISTRY_ALLOW_PRIVATE).
	AllowPrivate bool
	// MaxModuleBytes bounds the module layer (default 64 MiB).
	MaxModuleBytes int64
	// Credential gives credentials per registry host (the CLI: Docker's credential
	// store); nil: anonymous.
	Credential auth.CredentialFunc
}

// Client pushes and pulls plugin artifacts under a Policy.
type Client struct {
	policy Policy
	http   *auth.Client
}

// NewClient builds a client. Its connections use no proxy from the environment (a proxy
// would dial past the address check), and plain HTTP only towards a loopback registry.
func NewClient(p Policy) *Client {
	if p.MaxModuleBytes <= 0 {
		p.MaxModuleBytes = 64 << 20
	}
	c := &Client{policy: p}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: c.checkAddress}
	tr := &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: 10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}
	c.http = &auth.Client{Client: &http.Client{Transport: tr}, Cache: auth.NewCache(), Credential: p.Credential}
	c.http.SetUserAgent("sluice")
	return c
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.http.Client.CloseIdleConnections() }

func (c *Client) checkAddress(_, address string, _ syscall.RawConn) error {
	if c.policy.AllowPrivate {
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("dialling %q: not an IP address", address)
	}
	if why := httpcap.Blocked(a); why != "" {
		return fmt.Errorf("%w: plugin registry address %s is %s; set SLUICE_PLUGIN_REGISTRY_ALLOW_PRIVATE=true to pull from this network", ErrAddressRefused, a.Unmap(), why)
	}
	return nil
}

// Ref is a parsed plugin reference: registry/repository, a tag, a digest, or both
// (registry/repo:tag@sha256:...).
type Ref struct {
	registry.Reference
	Tag    string
	Digest digest.Digest
}

// ParseRef parses a reference; it must name a tag or a digest.
func ParseRef(s string) (Ref, error) {
	r, err := registry.ParseReference(s)
	if err != nil {
		return Ref{}, fmt.Errorf("%w %q: %w", ErrInvalidReference, s, err)
	}
	out := Ref{Reference: r}
	path, dgst, hasDigest := strings.Cut(s[len(r.Registry)+1:], "@")
	if hasDigest {
		out.Digest = digest.Digest(dgst)
		if out.Digest.Algorithm() != digest.SHA256 {
			return Ref{}, fmt.Errorf("%w %q: the digest must be sha256:<64 hex digits>", ErrInvalidReference, s)
		}
	}
	if i := strings.LastIndex(path, ":"); i >= 0 {
		out.Tag = path[i+1:]
	}
	if out.Tag == "" && !hasDigest {
		return Ref{}, fmt.Errorf("%w %q: it names neither a tag nor a digest (registry/repository:tag, @sha256:..., or both)", ErrInvalidReference, s)
	}
	return out, nil
}

// String is the reference with the tag and the digest it has.
func (r Ref) String() string {
	s := r.Registry + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

func (c *Client) repository(r Ref) (*remote.Repository, error) {
	if !c.policy.AnyRegistry && !slices.Contains(c.policy.Registries, r.Registry) {
		allowed := "none (SLUICE_PLUGIN_REGISTRIES is empty)"
		if len(c.policy.Registries) > 0 {
			allowed = strings.Join(c.policy.Registries, ", ")
		}
		return nil, fmt.Errorf("%w: %q is not among the registries this host may pull from: %s", ErrRegistryNotAllowed, r.Registry, allowed)
	}
	repo := &remote.Repository{Client: c.http, Reference: r.Reference, PlainHTTP: loopbackHost(r.Registry),
		MaxMetadataBytes: maxManifestBytes}
	return repo, nil
}

// loopbackHost: plain HTTP is used only for localhost and loopback addresses.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}

// Pushed is what Push stored.
type Pushed struct {
	Ref    Ref                // registry/repository:tag@sha256:<manifest digest>
	Module ocispec.Descriptor // the layer
}

// Push stores a module as a plugin artifact tagged ref's tag, with the plugin's manifest
// (sluice_describe's JSON) as an annotation, and each signature document as a referrer.
// Pushing the same module again gives the same manifest digest.
func (c *Client) Push(ctx context.Context, ref string, module, manifestJSON []byte, signatures ...[]byte) (Pushed, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return Pushed{}, err
	}
	if r.Tag == "" || r.Digest != "" {
		return Pushed{}, fmt.Errorf("push to %q: name a tag and no digest (registry/repository:tag)", ref)
	}
	var m struct{ Name, Version string }
	if err := json.Unmarshal(manifestJSON, &m); err != nil || m.Name == "" {
		return Pushed{}, fmt.Errorf("push: the plugin manifest is not JSON with a name: %v", err)
	}
	repo, err := c.repository(r)
	if err != nil {
		return Pushed{}, err
	}
	layer := content.NewDescriptorFromBytes(ModuleMediaType, module)
	layer.Annotations = map[string]string{ocispec.AnnotationTitle: m.Name + ".wasm"}
	if err := pushBlob(ctx, repo, layer, module); err != nil {
		return Pushed{}, fmt.Errorf("push module to %s: %w", r, err)
	}
	desc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, ArtifactType, oras.PackManifestOptions{
		Layers: []ocispec.Descriptor{layer},
		ManifestAnnotations: map[string]string{AnnotationManifest: string(manifestJSON), ocispec.AnnotationCreated: createdAt,
			ocispec.AnnotationTitle: m.Name, ocispec.AnnotationVersion: m.Version},
	})
	if err != nil {
		return Pushed{}, fmt.Errorf("push manifest to %s: %w", r, err)
	}
	if err := repo.Tag(ctx, desc, r.Tag); err != nil {
		return Pushed{}, fmt.Errorf("tag %s: %w", r, err)
	}
	for _, s := range signatures {
		if err := pushSignature(ctx, repo, desc, s); err != nil {
			return Pushed{}, fmt.Errorf("push signature to %s: %w", r, err)
		}
	}
	r.Digest = desc.Digest
	return Pushed{Ref: r, Module: layer}, nil
}

// PushSignature attaches a signature document to the plugin artifact ref names, after
// checking that it signs that artifact's module (the layer's digest is the module's sha256).
func (c *Client) PushSignature(ctx context.Context, ref string, signature []byte) (Ref, error) {
	r, repo, desc, err := c.resolve(ctx, ref)
	if err != nil {
		return r, err
	}
	r.Digest = desc.Digest
	m, err := pluginManifest(ctx, repo, r, desc)
	if err != nil {
		return r, err
	}
	s, err := ParseSignature(signature)
	if err != nil {
		return r, err
	}
	if module := m.Layers[0].Digest; module.Encoded() != s.SHA256 {
		return r, fmt.Errorf("the signature is for module sha256 %s; %s holds module %s", s.SHA256, r, module)
	}
	return r, pushSignature(ctx, repo, desc, signature)
}

func pushSignature(ctx context.Context, repo *remote.Repository, subject ocispec.Descriptor, sig []byte) error {
	if _, err := ParseSignature(sig); err != nil {
		return err
	}
	layer := content.NewDescriptorFromBytes(SignatureType, sig)
	if err := pushBlob(ctx, repo, layer, sig); err != nil {
		return err
	}
	// The config is the same blob, typed SignatureType too: registries that report a
	// referrer's artifactType from its config media type (OCI 1.0 style, as
	// go-containerregistry's) still list it under SignatureType.
	_, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, SignatureType, oras.PackManifestOptions{
		Subject: &subject, Layers: []ocispec.Descriptor{layer}, ConfigDescriptor: &layer,
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: createdAt},
	})
	return err
}

func pushBlob(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, b []byte) error {
	if ok, err := repo.Exists(ctx, desc); err == nil && ok {
		return nil
	}
	if err := repo.Push(ctx, desc, bytes.NewReader(b)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return err
	}
	return nil
}

// Artifact is a pulled plugin.
type Artifact struct {
	Ref          Ref    // with the manifest digest
	Module       []byte // digest-verified
	ManifestJSON string // the AnnotationManifest annotation ("" if absent)
	// Signatures are the signature documents attached as referrers (not verified here).
	Signatures [][]byte
}

// resolve finds the manifest a reference names. With both a tag and a digest, the tag must
// point at the digest: the reference says which content it expects under that name.
func (c *Client) resolve(ctx context.Context, ref string) (Ref, *remote.Repository, ocispec.Descriptor, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return r, nil, ocispec.Descriptor{}, err
	}
	repo, err := c.repository(r)
	if err != nil {
		return r, nil, ocispec.Descriptor{}, err
	}
	if r.Tag != "" {
		desc, err := repo.Resolve(ctx, r.Tag)
		if err != nil {
			return r, nil, desc, fmt.Errorf("resolve %s: %w", r, err)
		}
		if r.Digest != "" && desc.Digest != r.Digest {
			return r, nil, desc, fmt.Errorf("%w: %s:%s points at %s, but the reference pins %s", ErrDigestMismatch, r.Repository, r.Tag, desc.Digest, r.Digest)
		}
		return r, repo, desc, nil
	}
	desc, err := repo.Resolve(ctx, r.Digest.String())
	if errors.Is(err, errdef.ErrNotFound) {
		return r, nil, desc, fmt.Errorf("%w: %s has no manifest %s: %w", ErrDigestMismatch, r.Repository, r.Digest, err)
	}
	if err != nil {
		return r, nil, desc, fmt.Errorf("resolve %s: %w", r, err)
	}
	return r, repo, desc, nil
}

// Pull fetches a plugin artifact: its manifest (verified against the reference's digest, if
// any), its module (verified against the layer's digest) and its signature referrers.
func (c *Client) Pull(ctx context.Context, ref string) (*Artifact, error) {
	r, repo, desc, err := c.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	m, err := pluginManifest(ctx, repo, r, desc)
	if err != nil {
		return nil, err
	}
	layer := m.Layers[0]
	if layer.Size > c.policy.MaxModuleBytes {
		return nil, fmt.Errorf("%s: the module is %d bytes; at most %d", r, layer.Size, c.policy.MaxModuleBytes)
	}
	module, err := content.FetchAll(ctx, repo, layer)
	if err != nil {
		return nil, fmt.Errorf("fetch module %s@%s: %w", r.Repository, layer.Digest, err)
	}
	sigs, err := signatures(ctx, repo, desc)
	if err != nil {
		return nil, fmt.Errorf("signatures of %s: %w", r, err)
	}
	r.Digest = desc.Digest
	return &Artifact{Ref: r, Module: module, ManifestJSON: m.Annotations[AnnotationManifest], Signatures: sigs}, nil
}

// pluginManifest fetches the manifest desc describes (checked against its digest, and the
// reference's) and checks that it is a plugin artifact: one module layer.
func pluginManifest(ctx context.Context, repo *remote.Repository, r Ref, desc ocispec.Descriptor) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	raw, err := content.FetchAll(ctx, repo, desc) // verifies size and digest
	if err != nil {
		return m, fmt.Errorf("fetch manifest %s@%s: %w", r.Repository, desc.Digest, err)
	}
	if r.Digest != "" && digest.FromBytes(raw) != r.Digest {
		return m, fmt.Errorf("%w: the manifest fetched for %s has digest %s", ErrDigestMismatch, r, digest.FromBytes(raw))
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("%w: %s: manifest: %w", ErrNotPlugin, r, err)
	}
	if m.ArtifactType != ArtifactType || len(m.Layers) != 1 || m.Layers[0].MediaType != ModuleMediaType {
		return m, fmt.Errorf("%w: %s has artifactType %q and %d layer(s); a plugin has artifactType %q and one %q layer (push it with `sluice plugins push`)",
			ErrNotPlugin, r, m.ArtifactType, len(m.Layers), ArtifactType, ModuleMediaType)
	}
	return m, nil
}

// signatures reads the signature documents attached to a manifest (at most maxSignatures).
func signatures(ctx context.Context, repo *remote.Repository, subject ocispec.Descriptor) ([][]byte, error) {
	var refs []ocispec.Descriptor
	err := repo.Referrers(ctx, subject, SignatureType, func(page []ocispec.Descriptor) error {
		refs = append(refs, page...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, d := range refs[:min(len(refs), maxSignatures)] {
		if d.Size > maxManifestBytes {
			continue
		}
		raw, err := content.FetchAll(ctx, repo, d)
		if err != nil {
			return nil, err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 1 || m.Layers[0].MediaType != SignatureType || m.Layers[0].Size > MaxSignatureBytes {
			continue // not one of ours
		}
		b, err := content.FetchAll(ctx, repo, m.Layers[0])
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
