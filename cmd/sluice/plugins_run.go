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

	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/testkit"
)

// batchFiles collects repeated --batch flags.
type batchFiles []string

func (b *batchFiles) String() string     { return strings.Join(*b, ",") }
func (b *batchFiles) Set(v string) error { *b = append(*b, v); return nil }

// pluginsRun is the plugin author's test kit: one run of a module over recorded batches
// against an in-memory object store, no host needed; prints the result and the objects,
// and writes them under --out.
func pluginsRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plugins run", flag.ContinueOnError)
	config := fs.String("config", "", "JSON object overriding the config's defaults")
	out := fs.String("out", "", "write every committed object under this directory")
	var batches batchFiles
	fs.Var(&batches, "batch", "a recorded SLB1 batch: hex text (*.hex, as abi/testdata) or raw bytes; repeat for several")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: sluice plugins run [--config JSON] [--batch FILE]... [--out DIR] PATH.wasm")
	}
	wasm, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var opts testkit.Options
	if *config != "" {
		if err := json.Unmarshal([]byte(*config), &opts.Config); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
	}
	for _, f := range batches {
		b, err := testkit.ReadBatchFile(f)
		if err != nil {
			return fmt.Errorf("--batch: %w", err)
		}
		opts.Batches = append(opts.Batches, b)
	}
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-conformance-cache")})
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	o, err := testkit.Run(ctx, rt, wasm, opts)
	if err != nil {
		return err
	}
	for _, l := range o.Logs {
		fmt.Println("log:", l)
	}
	keys := make([]string, 0, len(o.Objects))
	for k := range o.Objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("object %s (%d bytes)\n", k, len(o.Objects[k]))
		if *out != "" {
			path := filepath.Join(*out, filepath.FromSlash(k))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, o.Objects[k], 0o644); err != nil {
				return err
			}
		}
	}
	if o.Err != nil {
		fmt.Printf("classification: %s (%s)\n", o.Classification.Outcome, o.Classification.Reason)
		return fmt.Errorf("%s: %w", o.Plugin, o.Err)
	}
	res, _ := json.Marshal(o.Result)
	fmt.Printf("result: %s\n", res)
	return nil
}
