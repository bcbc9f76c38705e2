package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/internal/lockfile"
	"github.com/sluicehq/sluice/storage"
)

// ErrPluginConflict is returned when a name and version are already installed with
// different bytes: a new build must carry a new version.
var ErrPluginConflict = errors.New("plugin version already installed with different content")

// errPinMismatch: an export's pinned module is not the module of the plugin row it names
// (a database edited by hand); the run fails rather than run another module.
var errPinMismatch = errors.New("the pinned module differs from the installed one")

// InstallPlugin validates a module (ABI, exports, manifest, capabilities against the
// grants), stores its bytes in the database (table plugin_modules, by sha256: every host
// sharing the database fetches it from there on first use) and on this host's disk under
// DATA_DIR/plugins/<sha256>.wasm, and records it. Installing the same bytes again is a
// no-op. Other versions of the plugin stay installed side by side: exports pin theirs
// (docs/storage.md, "Plugin versions and pins").
func (h *Host) InstallPlugin(ctx context.Context, wasm []byte, granted []string) (*storage.Plugin, error) {
	// The same bytes with the same grants are already validated and recorded: skip the
	// compilation (a host restart re-installs every locked plugin).
	if p, ok := h.installed(ctx, runtime.SHA256(wasm), granted); ok {
		if err := h.keepModule(ctx, p.SHA256, wasm); err != nil {
			return nil, err
		}
		return p, nil
	}
	v, err := h.rt.Validate(ctx, wasm, granted)
	if err != nil {
		return nil, err
	}
	m := v.Manifest
	sha := v.SHA256
	if p, err := h.recordedVersion(ctx, m.Name, m.Version, sha, granted); p != nil || err != nil {
		return p, err
	}
	// The module row first: a host that sees the plugin row can always fetch its module.
	if err := h.keepModule(ctx, sha, wasm); err != nil {
		return nil, err
	}
	manifest, _ := json.Marshal(m)
	p, err := h.db.CreatePlugin(ctx, storage.Plugin{ID: uuid.NewString(), Name: m.Name, Version: m.Version, ABIVersion: m.ABIVersion,
		SHA256: sha, Manifest: string(manifest), Capabilities: sortedCopy(granted), ModulePath: h.modulePath(sha)})
	if errors.Is(err, storage.ErrConflict) {
		// Another host (or request) recorded this name and version between the check above
		// and the insert: hosts sharing a database all install the locked plugins when
		// they start together. The same module is then installed; another is a conflict.
		if p, err := h.recordedVersion(ctx, m.Name, m.Version, sha, granted); p != nil || err != nil {
			return p, err
		}
		return nil, fmt.Errorf("%w: %s %s is recorded with other capability grants", ErrPluginConflict, m.Name, m.Version)
	}
	if err != nil {
		return nil, err
	}
	h.log.Info("plugin installed", "plugin", p.Name, "version", p.Version, "sha256", p.SHA256, "capabilities", p.Capabilities)
	return &p, nil
}

// recordedVersion looks for a recorded plugin of this name and version: the same module
// with the same grants is returned as installed; another module is ErrPluginConflict. No
// such version: nil, nil.
func (h *Host) recordedVersion(ctx context.Context, name, version, sha string, granted []string) (*storage.Plugin, error) {
	existing, err := h.db.ListPlugins(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range existing {
		if p.Name != name || p.Version != version {
			continue
		}
		if p.SHA256 == sha && slices.Equal(sortedCopy(p.Capabilities), sortedCopy(granted)) {
			return &p, nil
		}
		if p.SHA256 != sha {
			return nil, fmt.Errorf("%w: %s %s is installed with sha256 %s, this module is %s; bump the plugin version", ErrPluginConflict, name, version, p.SHA256[:12], sha[:12])
		}
	}
	return nil, nil
}

// installed finds a recorded plugin with this sha256 and these grants.
func (h *Host) installed(ctx context.Context, sha string, granted []string) (*storage.Plugin, bool) {
	all, err := h.db.ListPlugins(ctx)
	if err != nil {
		return nil, false
	}
	for _, p := range all {
		if p.SHA256 == sha && slices.Equal(sortedCopy(p.Capabilities), sortedCopy(granted)) {
			return &p, true
		}
	}
	return nil, false
}

// modulePath is where this host caches the module with this sha256. Each host has its
// own: the path recorded at install (Plugin.ModulePath) is the installing host's.
func (h *Host) modulePath(sha string) string {
	return filepath.Join(h.cfg.DataDir, "plugins", sha+".wasm")
}

// keepModule stores a module, whose sha256 the caller computed, in the database and in
// this host's cache.
func (h *Host) keepModule(ctx context.Context, sha string, wasm []byte) error {
	if err := h.db.PutPluginModule(ctx, sha, wasm); err != nil {
		return fmt.Errorf("store plugin module: %w", err)
	}
	return h.cacheModule(sha, wasm)
}

func (h *Host) cacheModule(sha string, wasm []byte) error {
	path := h.modulePath(sha)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("plugin cache: %w", err)
	}
	if err := writeFileAtomic(path, wasm); err != nil {
		return fmt.Errorf("plugin cache: %w", err)
	}
	return nil
}

// moduleOf returns the verified bytes of a plugin's module: from this host's cache, else
// fetched from the database by sha256 (then cached), else, for a plugin installed before
// modules were stored in the database, from the path recorded at install. Bytes whose
// sha256 is not the installed one are never returned.
func (h *Host) moduleOf(ctx context.Context, sp storage.Plugin) ([]byte, error) {
	log := h.log.With("plugin", sp.Name, "version", sp.Version, "sha256", sp.SHA256)
	path := h.modulePath(sp.SHA256)
	wasm, err := os.ReadFile(path)
	switch {
	case err == nil && runtime.SHA256(wasm) == sp.SHA256:
		return wasm, nil
	case err == nil:
		log.Warn("cached plugin module has another sha256: fetching it again", "path", path, "got", runtime.SHA256(wasm))
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("plugin %s: removing a corrupt cached module: %w", sp.Name, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("plugin %s module: %w", sp.Name, err)
	}
	wasm, err = h.db.GetPluginModule(ctx, sp.SHA256)
	if errors.Is(err, storage.ErrNotFound) && sp.ModulePath != "" && sp.ModulePath != path {
		wasm, err = os.ReadFile(sp.ModulePath)
	}
	if err != nil {
		return nil, fmt.Errorf("plugin %s module (sha256 %s) is neither cached on this host nor stored in the database: %w", sp.Name, sp.SHA256, err)
	}
	if got := runtime.SHA256(wasm); got != sp.SHA256 {
		return nil, fmt.Errorf("plugin %s: the stored module has sha256 %s, installed %s: refusing to run it", sp.Name, got, sp.SHA256)
	}
	if err := h.cacheModule(sp.SHA256, wasm); err != nil {
		log.Warn("cannot cache the plugin module; it is fetched again next time", "err", err)
	} else {
		log.Info("plugin module fetched from the database and cached", "path", path, "bytes", len(wasm))
	}
	return wasm, nil
}

// storeLegacyModules stores in the database the modules of plugins installed before the
// database held modules, from this host's disk: another host can then run them. A module
// on no disk of this host stays missing (its host stores it when it starts), and runs of
// such a plugin on other hosts fail with a clear error until then.
func (h *Host) storeLegacyModules(ctx context.Context) error {
	missing, err := h.db.PluginsWithoutModule(ctx)
	if err != nil {
		return err
	}
	for _, sp := range missing {
		var wasm []byte
		for _, path := range []string{h.modulePath(sp.SHA256), sp.ModulePath} {
			if b, err := os.ReadFile(path); err == nil && runtime.SHA256(b) == sp.SHA256 {
				wasm = b
				break
			}
		}
		if wasm == nil {
			h.log.Warn("plugin module is neither in the database nor on this host's disk: other hosts cannot run it until the host that has it starts, or it is installed again",
				"plugin", sp.Name, "version", sp.Version, "sha256", sp.SHA256, "path", sp.ModulePath)
			continue
		}
		if err := h.db.PutPluginModule(ctx, sp.SHA256, wasm); err != nil {
			return fmt.Errorf("store module of plugin %s: %w", sp.Name, err)
		}
		h.log.Info("stored a plugin module installed before modules were kept in the database", "plugin", sp.Name, "version", sp.Version, "sha256", sp.SHA256)
	}
	return nil
}

// pruneUnusedVersions removes the other versions of a locked first-party plugin that no
// export pins: a host start that installs a new locked build does not leave every older
// build behind. Versions installed through the API are the operator's to delete.
func (h *Host) pruneUnusedVersions(ctx context.Context, latest storage.Plugin) {
	all, err := h.db.ListPlugins(ctx)
	if err != nil {
		h.log.Warn("cannot list plugins to remove unused versions", "plugin", latest.Name, "err", err)
		return
	}
	for _, p := range all {
		if p.Name != latest.Name || p.ID == latest.ID {
			continue
		}
		if err := h.db.DeletePlugin(ctx, p.ID); err == nil {
			h.log.Info("removed unused plugin version", "plugin", p.Name, "version", p.Version, "sha256", p.SHA256)
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp-" + uuid.NewString()
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// PluginManifest returns the stored manifest of a plugin.
func (h *Host) PluginManifest(_ context.Context, p *storage.Plugin) (abi.Manifest, error) {
	var m abi.Manifest
	if err := json.Unmarshal([]byte(p.Manifest), &m); err != nil {
		return m, fmt.Errorf("stored manifest of %s: %w", p.Name, err)
	}
	return m, nil
}

// ValidateDestination asks the plugin to validate a config (secrets withheld).
func (h *Host) ValidateDestination(ctx context.Context, sp *storage.Plugin, public map[string]any, secretsSet []string) error {
	p, _, err := h.pluginFor(ctx, sp.ID, sp.SHA256)
	if err != nil {
		return err
	}
	return p.Validate(ctx, abi.ValidateRequest{Config: public, SecretsSet: secretsSet})
}

// pluginFor returns the loaded runtime plugin of a stored plugin, loading and checking its
// module on first use. pinned is the module sha256 the caller expects (an export's pin;
// "" for none): a plugin row with another module is refused rather than run.
func (h *Host) pluginFor(ctx context.Context, pluginID, pinned string) (*runtime.Plugin, abi.Manifest, error) {
	sp, err := h.db.GetPlugin(ctx, pluginID)
	if err != nil {
		return nil, abi.Manifest{}, fmt.Errorf("plugin %s: %w", pluginID, err)
	}
	if pinned != "" && sp.SHA256 != pinned {
		return nil, abi.Manifest{}, fmt.Errorf("plugin %s %s has module sha256 %s, the export pins %s: %w", sp.Name, sp.Version, sp.SHA256, pinned, errPinMismatch)
	}
	m, err := h.PluginManifest(ctx, &sp)
	if err != nil {
		return nil, m, err
	}
	h.mu.Lock()
	p := h.plugins[pluginID]
	h.mu.Unlock()
	if p != nil {
		return p, m, nil
	}
	wasm, err := h.moduleOf(ctx, sp)
	if err != nil {
		return nil, m, err
	}
	p, err = h.rt.Load(ctx, wasm, sp.Capabilities, runtime.Limits{})
	if err != nil {
		return nil, m, fmt.Errorf("load plugin %s: %w", sp.Name, err)
	}
	h.mu.Lock()
	h.plugins[pluginID] = p
	h.mu.Unlock()
	return p, m, nil
}

// UnloadDeletedPlugins releases what this host keeps loaded of plugin versions deleted
// since (through any host): their instances and compiled code, which would otherwise stay
// until the host restarts. A module still loaded under another plugin row stays. The host
// runs it every ReapInterval; it returns how many versions it released.
func (h *Host) UnloadDeletedPlugins(ctx context.Context) (int, error) {
	h.mu.Lock()
	ids := make([]string, 0, len(h.plugins))
	for id := range h.plugins {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	n := 0
	for _, id := range ids {
		if _, err := h.db.GetPlugin(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			if err != nil {
				return n, fmt.Errorf("unload deleted plugins: %w", err)
			}
			continue
		}
		h.mu.Lock()
		p := h.plugins[id]
		delete(h.plugins, id)
		shared := false
		for _, q := range h.plugins {
			shared = shared || q == p
		}
		h.mu.Unlock()
		if p != nil && !shared {
			h.rt.Unload(ctx, p)
		}
		n++
		h.log.Info("unloaded a deleted plugin version", "plugin_id", id, "sha256", p.SHA256)
	}
	return n, nil
}

// installLocked installs the first-party plugins pinned in the lock file from PluginsDir,
// refusing any module whose sha256 differs from the lock.
func (h *Host) installLocked(ctx context.Context) error {
	if h.cfg.LockFile == "" || h.cfg.PluginsDir == "" {
		return nil
	}
	lock, err := lockfile.Read(h.cfg.LockFile)
	if err != nil {
		return err
	}
	signed, err := h.lockedSignatures()
	if err != nil {
		return err
	}
	for _, e := range lock.Plugins {
		path := filepath.Join(h.cfg.PluginsDir, e.Name+".wasm")
		wasm, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			h.log.Warn("locked plugin not built; run `make plugins`", "plugin", e.Name, "path", path)
			continue
		}
		if err != nil {
			return err
		}
		if got := runtime.SHA256(wasm); got != e.SHA256 {
			h.log.Error("refusing plugin: sha256 differs from plugins.lock", slog.String("plugin", e.Name), slog.String("want", e.SHA256), slog.String("got", got))
			continue
		}
		if signed(e) != nil {
			continue // logged
		}
		p, err := h.InstallPlugin(ctx, wasm, e.Capabilities)
		if err != nil && !errors.Is(err, ErrPluginConflict) {
			return fmt.Errorf("install locked plugin %s: %w", e.Name, err)
		}
		if err == nil {
			h.pruneUnusedVersions(ctx, *p)
		}
	}
	return nil
}
