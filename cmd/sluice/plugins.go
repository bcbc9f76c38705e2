package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
	"github.com/sluicehq/sluice/host/warehouse/bigquery"
	"github.com/sluicehq/sluice/internal/lockfile"
)

func pluginFlags(name string) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	dir := fs.String("plugins-dir", "bin/plugins", "directory of built plugins (<name>.wasm)")
	lock := fs.String("lock", "plugins.lock", "lock file")
	return fs, dir, lock
}

// pluginsVerify fails when a built first-party plugin differs from its pin.
func pluginsVerify(args []string) error {
	fs, dir, lock := pluginFlags("plugins verify")
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
		all := []string{abi.CapObject, abi.CapBigQuery, abi.CapSnowflake}
		p, err := rt.Validate(ctx, wasm, all)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if want := strings.TrimSuffix(filepath.Base(f), ".wasm"); p.Manifest.Name != want {
			return fmt.Errorf("%s: manifest name %q must match the file name %q", f, p.Manifest.Name, want)
		}
		l.Plugins = append(l.Plugins, lockfile.Entry{Name: p.Manifest.Name, Version: p.Manifest.Version,
			ABIVersion: p.Manifest.ABIVersion, SHA256: p.SHA256, Capabilities: requested(p.Manifest.Capabilities)})
	}
	if err := lockfile.Write(*lock, l); err != nil {
		return err
	}
	fmt.Printf("pinned %d plugins in %s\n", len(l.Plugins), *lock)
	return nil
}

// requested drops the always-granted capabilities from a manifest's list.
func requested(caps []string) []string {
	out := []string{}
	for _, c := range caps {
		always := false
		for _, a := range abi.AlwaysGranted {
			always = always || a == c
		}
		if !always {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// pluginsTest runs a module through the conformance suite with in-memory capabilities.
func pluginsTest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plugins test", flag.ContinueOnError)
	config := fs.String("config", "", "JSON object overriding the config's defaults")
	bqEndpoint := fs.String("bigquery-endpoint", "", "bind the bigquery capability to this BigQuery-compatible endpoint (a loopback fake or emulator; no authentication)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: sluice plugins test [--config JSON] [--bigquery-endpoint URL] PATH.wasm")
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
	if *bqEndpoint != "" {
		bq, err := bindBigQuery(ctx, rt, wasm, *bqEndpoint, opts.Config)
		if err != nil {
			return err
		}
		defer bq.Close()
		opts.Warehouses = map[string]runtime.Caller{abi.CapBigQuery: bq}
		opts.Sinks = map[string]runtime.ObjectStore{abi.SinkBigQueryLoad: bq.Sink()}
	}
	rep := conformance.Run(ctx, rt, wasm, opts)
	fmt.Print(rep.String())
	if !rep.OK() {
		return fmt.Errorf("%s fails the conformance suite", fs.Arg(0))
	}
	return nil
}

// bindBigQuery binds the bigquery capability for the conformance suite as the host binds it
// for an export: the parameters come from the config fields the manifest binds to
// "bigquery.<param>"; the endpoint replaces Google (and its key).
func bindBigQuery(ctx context.Context, rt *runtime.Runtime, wasm []byte, endpoint string, config map[string]any) (*bigquery.Capability, error) {
	v, err := rt.Validate(ctx, wasm, []string{abi.CapObject, abi.CapBigQuery, abi.CapSnowflake})
	if err != nil {
		return nil, err
	}
	params := map[string]string{}
	for _, f := range v.Manifest.Config {
		param, ok := strings.CutPrefix(f.Binding, abi.CapBigQuery+".")
		if !ok {
			continue
		}
		val, ok := config[f.Name]
		if !ok {
			val = f.Default
		}
		if val != nil {
			params[param] = fmt.Sprint(val)
		}
	}
	cfg := bigquery.Config{ProjectID: params[bigquery.ParamProjectID], DatasetID: params[bigquery.ParamDatasetID],
		Location: params[bigquery.ParamLocation], Endpoint: endpoint}
	return bigquery.New(ctx, cfg)
}
