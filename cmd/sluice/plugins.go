package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/pluginreg"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
	"github.com/sluicehq/sluice/host/sqlcap"
	"github.com/sluicehq/sluice/host/warehouse/bigquery"
	"github.com/sluicehq/sluice/host/warehouse/snowflake"
	"github.com/sluicehq/sluice/internal/lockfile"
)

func pluginFlags(name string) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	dir := fs.String("plugins-dir", "bin/plugins", "directory of built plugins (<name>.wasm)")
	lock := fs.String("lock", "plugins.lock", "lock file")
	return fs, dir, lock
}

// pluginsVerify fails when a built first-party plugin differs from its pin, or, with
// --trusted-keys, when a pin's signature in <lock>.sig is missing or not by a trusted key.
func pluginsVerify(args []string) error {
	fs, dir, lock := pluginFlags("plugins verify")
	keys := fs.String("trusted-keys", "", "also check LOCK.sig: every pinned plugin signed by one of these keys (as SLUICE_PLUGIN_TRUSTED_KEYS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := lockfile.Read(*lock)
	if err != nil {
		return err
	}
	if err := lockfile.Verify(l, *dir); err != nil {
		return err
	}
	fmt.Printf("%d plugins match %s\n", len(l.Plugins), *lock)
	if *keys == "" {
		return nil
	}
	if err := verifyLockSignatures(l, *lock, *keys); err != nil {
		return err
	}
	fmt.Printf("%d plugins are signed by a trusted key in %s\n", len(l.Plugins), lockfile.SignaturesPath(*lock))
	return nil
}

// pluginsLock pins every built plugin in the lock file: the runtime validates each module
// and reads its manifest; the capabilities pinned are those it requests.
func pluginsLock(ctx context.Context, args []string) error {
	fs, dir, lock := pluginFlags("plugins lock")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(*dir, "*.wasm"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-lock-cache")})
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	var l lockfile.Lock
	for _, f := range files {
		wasm, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		p, err := rt.Validate(ctx, wasm, grantable)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if want := strings.TrimSuffix(filepath.Base(f), ".wasm"); p.Manifest.Name != want {
			return fmt.Errorf("%s: manifest name %q must match the file name %q", f, p.Manifest.Name, want)
		}
		l.Plugins = append(l.Plugins, lockfile.Entry{Name: p.Manifest.Name, Version: p.Manifest.Version,
			ABIVersion: p.Manifest.ABIVersion, SHA256: p.SHA256, Capabilities: pluginreg.Requested(p.Manifest.Capabilities)})
	}
	if err := lockfile.Write(*lock, l); err != nil {
		return err
	}
	fmt.Printf("pinned %d plugins in %s\n", len(l.Plugins), *lock)
	return nil
}

// pluginsTest runs a module through the conformance suite with in-memory capabilities.
func pluginsTest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plugins test", flag.ContinueOnError)
	config := fs.String("config", "", "JSON object overriding the config's defaults")
	bqEndpoint := fs.String("bigquery-endpoint", "", "bind the bigquery capability to this BigQuery-compatible endpoint (a loopback fake or emulator; no authentication)")
	sfEndpoint := fs.String("snowflake-endpoint", "", "bind the snowflake capability to this address (http://127.0.0.1:PORT, a loopback fake), logging in with the config's credentials")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: sluice plugins test [--config JSON] [--bigquery-endpoint URL] [--snowflake-endpoint URL] PATH.wasm")
	}
	wasm, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var opts conformance.Options
	if *config != "" {
		if err := json.Unmarshal([]byte(*config), &opts.Config); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
	}
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-conformance-cache")})
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	release, err := bindWarehouses(ctx, rt, wasm, *bqEndpoint, *sfEndpoint, &opts)
	defer release()
	if err != nil {
		return err
	}
	rep := conformance.Run(ctx, rt, wasm, opts)
	fmt.Print(rep.String())
	if !rep.OK() {
		return fmt.Errorf("%s fails the conformance suite", fs.Arg(0))
	}
	return nil
}

// bindWarehouses binds the warehouse capabilities the plugin requests for the conformance
// suite as the host binds them for an export: the parameters come from the config fields the
// manifest binds to "<capability>.<param>"; the endpoints replace the cloud services (a
// BigQuery endpoint also replaces Google's authentication). A capability without an
// endpoint stays unbound: the plugin's calls on it are denied.
func bindWarehouses(ctx context.Context, rt *runtime.Runtime, wasm []byte, bqEndpoint, sfEndpoint string, opts *conformance.Options) (release func(), err error) {
	var closers []func() error
	release = func() {
		for _, c := range closers {
			_ = c()
		}
	}
	v, err := rt.Validate(ctx, wasm, grantable)
	if err != nil {
		return release, err
	}
	params := func(capability string) map[string]string {
		out := map[string]string{}
		for _, f := range v.Manifest.Config {
			param, ok := strings.CutPrefix(f.Binding, capability+".")
			if !ok {
				continue
			}
			val, ok := opts.Config[f.Name]
			if !ok {
				val = f.Default
			}
			if val != nil {
				out[param] = fmt.Sprint(val)
			}
		}
		return out
	}
	opts.Warehouses = map[string]runtime.Caller{}
	opts.Sinks = map[string]runtime.ObjectStore{}
	if bqEndpoint != "" && slices.Contains(v.Manifest.Capabilities, abi.CapBigQuery) {
		p := params(abi.CapBigQuery)
		bq, err := bigquery.New(ctx, bigquery.Config{ProjectID: p[bigquery.ParamProjectID], DatasetID: p[bigquery.ParamDatasetID],
			Location: p[bigquery.ParamLocation], Endpoint: bqEndpoint})
		if err != nil {
			return release, err
		}
		closers = append(closers, bq.Close)
		opts.Warehouses[abi.CapBigQuery] = bq
		opts.Sinks[abi.SinkBigQueryLoad] = bq.Sink()
	}
	if sfEndpoint != "" && slices.Contains(v.Manifest.Capabilities, abi.CapSnowflake) {
		cfg, err := snowflake.FromBindings(params(abi.CapSnowflake))
		if err != nil {
			return release, err
		}
		cfg.Endpoint, cfg.DisableOCSPChecks = sfEndpoint, true
		sf, err := snowflake.New(ctx, cfg)
		if err != nil {
			return release, err
		}
		closers = append(closers, sf.Close)
		opts.Warehouses[abi.CapSnowflake] = sf
		opts.Sinks[abi.SinkSnowflakeStage] = sf.Sink()
	}
	if slices.Contains(v.Manifest.Capabilities, abi.CapHTTP) {
		hb, stop, err := bindConformanceHTTP(v.Manifest, params(abi.CapHTTP), opts)
		closers = append(closers, stop)
		if err != nil {
			return release, err
		}
		opts.HTTP = hb
		opts.Sinks[abi.SinkHTTPBody] = hb.Sink()
	}
	if p := params(abi.CapSQL); slices.Contains(v.Manifest.Capabilities, abi.CapSQL) && p["host"] != "" {
		sb, stop, err := bindConformanceSQL(p)
		closers = append(closers, stop)
		if err != nil {
			return release, err
		}
		opts.SQL = sb
	}
	return release, nil
}

// bindConformanceSQL binds the sql capability for the suite to the database the config
// names (a plugin's config without a host leaves it unbound: its calls are denied), with
// the host's address policy (SLUICE_SQL_ALLOW_PRIVATE, SLUICE_SQL_ALLOW_LOOPBACK).
func bindConformanceSQL(params map[string]string) (*sqlcap.Binding, func() error, error) {
	stop := func() error { return nil }
	private, err := envBoolDefault("SLUICE_SQL_ALLOW_PRIVATE", true)
	if err != nil {
		return nil, stop, err
	}
	loopback, err := envBool("SLUICE_SQL_ALLOW_LOOPBACK")
	if err != nil {
		return nil, stop, err
	}
	pools := sqlcap.NewPools(sqlcap.Config{RefusePrivate: !private, AllowLoopback: loopback})
	sb, err := sqlcap.Bind(pools, params)
	if err != nil {
		pools.Close()
		return nil, stop, err
	}
	return sb, func() error { err := sb.Close(); pools.Close(); return err }, nil
}

// bindConformanceHTTP binds the http capability for the suite: to the config's URL (then
// loopback and private addresses need SLUICE_HTTP_ALLOW_PRIVATE, as on a host), or, without
// one, to a loopback receiver that answers every request 200 {"status":1}. Secret fields
// the config does not give get a placeholder value, so a plugin naming them works.
func bindConformanceHTTP(m abi.Manifest, params map[string]string, opts *conformance.Options) (*httpcap.Binding, func() error, error) {
	stop := func() error { return nil }
	allow, err := envBool("SLUICE_HTTP_ALLOW_PRIVATE")
	if err != nil {
		return nil, stop, err
	}
	for _, f := range m.Config {
		if p, ok := strings.CutPrefix(f.Binding, abi.CapHTTP+"."); ok && f.Secret && params[p] == "" {
			params[p] = "sluice-conformance-secret"
		}
	}
	if params["base_url"] == "" {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"status":1}`)
		}))
		stop = func() error { srv.Close(); return nil }
		params["base_url"] = srv.URL + "/batch"
		allow = true
		for _, f := range m.Config {
			if f.Binding == abi.CapHTTP+".base_url" {
				if opts.Config == nil {
					opts.Config = map[string]any{}
				}
				opts.Config[f.Name] = params["base_url"]
			}
		}
	}
	hb, err := httpcap.Bind(httpcap.Config{AllowPrivate: allow}, params)
	return hb, stop, err
}
