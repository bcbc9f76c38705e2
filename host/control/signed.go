package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/pluginreg"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/internal/lockfile"
	"github.com/sluicehq/sluice/storage"
)

// grantable is every capability a module may request that needs a grant: the signature
// check reads a module's manifest with all of them granted, so that a signature refusal
// speaks before a missing grant.
var grantable = []string{abi.CapObject, abi.CapBigQuery, abi.CapSnowflake, abi.CapHTTP}

// InstallSignedPlugin installs a module that came with signature documents (an upload's
// signature field, a registry artifact's referrers; none: nil). With trusted keys
// configured (Config.PluginTrust) one of them must be signed by a trusted key over the
// module's sha256 and exactly the capabilities its manifest requests, or the module is
// refused (pluginreg.ErrUnsigned, pluginreg.ErrUntrusted) before anything is stored.
// Without trusted keys, signatures are not checked.
func (h *Host) InstallSignedPlugin(ctx context.Context, wasm []byte, granted []string, signatures [][]byte) (*storage.Plugin, error) {
	if err := h.checkSignatures(ctx, wasm, signatures); err != nil {
		return nil, err
	}
	return h.InstallPlugin(ctx, wasm, granted)
}

func (h *Host) checkSignatures(ctx context.Context, wasm []byte, signatures [][]byte) error {
	if !h.cfg.PluginTrust.Enabled() {
		return nil
	}
	// The requested capabilities are the module's manifest's: read it (a validation; the
	// compilation is cached, so InstallPlugin's own costs little more).
	v, err := h.rt.Validate(ctx, wasm, grantable)
	if err != nil {
		return err
	}
	log := h.log.With("plugin", v.Manifest.Name, "version", v.Manifest.Version, "sha256", v.SHA256)
	if err := h.cfg.PluginTrust.Verify(v.SHA256, v.Manifest.Capabilities, signatures); err != nil {
		log.Warn("plugin refused: no valid signature by a trusted key", "err", err)
		return fmt.Errorf("plugin %s %s: %w", v.Manifest.Name, v.Manifest.Version, err)
	}
	log.Info("plugin signature verified", "capabilities", pluginreg.Requested(v.Manifest.Capabilities))
	return nil
}

// InstallPluginFromRegistry pulls a plugin artifact (registry/repository:tag, @sha256:...,
// or both) under Config.PluginRegistry, then installs its module as InstallSignedPlugin
// with the signatures attached to it in the registry.
func (h *Host) InstallPluginFromRegistry(ctx context.Context, ref string, granted []string) (*storage.Plugin, error) {
	c := pluginreg.NewClient(h.cfg.PluginRegistry)
	defer c.Close()
	a, err := c.Pull(ctx, ref)
	if err != nil {
		return nil, err
	}
	h.log.Info("plugin pulled", "reference", a.Ref.String(), "bytes", len(a.Module), "signatures", len(a.Signatures))
	return h.InstallSignedPlugin(ctx, a.Module, granted, a.Signatures)
}

// lockedSignatures returns the check installLocked applies to each pinned plugin: with
// trusted keys, its signature in the lock's sibling file (<lock>.sig, written by
// `make plugins-sign`) must verify for its pinned sha256 and capabilities; the module's
// bytes are checked against that sha256 before it is installed. Without trusted keys,
// every entry passes.
func (h *Host) lockedSignatures() (func(lockfile.Entry) error, error) {
	if !h.cfg.PluginTrust.Enabled() {
		return func(lockfile.Entry) error { return nil }, nil
	}
	path := lockfile.SignaturesPath(h.cfg.LockFile)
	sigs, err := lockfile.ReadSignatures(path)
	if errors.Is(err, os.ErrNotExist) {
		h.log.Warn("trusted keys are configured but the lock has no signature file: every locked plugin is refused", "path", path)
	} else if err != nil {
		return nil, err
	}
	return func(e lockfile.Entry) error {
		var docs [][]byte
		if s, ok := sigs[e.Name]; ok {
			docs = append(docs, s)
		}
		if err := h.cfg.PluginTrust.Verify(e.SHA256, e.Capabilities, docs); err != nil {
			h.log.Error("refusing locked plugin: no valid signature by a trusted key", slog.String("plugin", e.Name), slog.String("signatures", path), slog.Any("err", err))
			return err
		}
		return nil
	}, nil
}

// InstallPluginFrom installs an upload with its signatures, or pulls a reference: a bad or
// forbidden reference (registry not allowed, a private address) is a 400 naming the field, a refused artifact, digest or signature a
// 422, a registry that cannot be reached or fails a 502.
func (a API) InstallPluginFrom(ctx context.Context, src api.PluginSource, granted []string) (*storage.Plugin, error) {
	if src.Reference == "" {
		p, err := a.Host.InstallSignedPlugin(ctx, src.Module, granted, src.Signatures)
		return p, installError(err)
	}
	p, err := a.Host.InstallPluginFromRegistry(ctx, src.Reference, granted)
	var rerr *errcode.ErrorResponse
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, pluginreg.ErrInvalidReference), errors.Is(err, pluginreg.ErrRegistryNotAllowed), errors.Is(err, pluginreg.ErrAddressRefused):
		return nil, api.BadRequest(err.Error(), api.FieldError{Field: "reference", Message: err.Error()})
	case errors.Is(err, pluginreg.ErrDigestMismatch), errors.Is(err, pluginreg.ErrNotPlugin), errors.Is(err, errdef.ErrNotFound),
		errors.As(err, &rerr) && rerr.StatusCode == http.StatusNotFound:
		return nil, api.InvalidPlugin(fmt.Sprintf("cannot install %s: %v", src.Reference, err))
	case errors.Is(err, runtime.ErrInvalidPlugin), errors.Is(err, pluginreg.ErrUnsigned), errors.Is(err, pluginreg.ErrUntrusted), errors.Is(err, ErrPluginConflict):
		return nil, installError(err)
	case ctx.Err() != nil:
		return nil, err
	}
	return nil, api.RegistryUnavailable(fmt.Sprintf("cannot pull %s: %v", src.Reference, err))
}
