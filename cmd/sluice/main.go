// Command sluice runs the Sluice host (`sluice serve`) and its tools.
//
//	sluice serve                 API + scheduler + workers on embedded defaults
//	sluice plugins verify        check built plugins against plugins.lock
//	sluice plugins lock          rewrite plugins.lock from the built plugins
//	sluice plugins test X.wasm   run a plugin through the conformance suite
//	sluice plugins run X.wasm    one run over recorded batches into a memory store
//	sluice plugins new NAME      write a plugin project (--lang go|rust|assemblyscript)
//	sluice plugins keygen/sign   signing keys and signatures (docs/plugin-authors.md)
//	sluice plugins push/pull     plugins as OCI artifacts in a registry
//	sluice demo                  seed synthetic events into the embedded store
//	sluice secrets rotate        re-seal every destination secret with the newest key
//	sluice version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

var version = "0.1.0-dev"

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sluice:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usage()
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "plugins":
		if len(args) < 2 {
			return usage()
		}
		switch args[1] {
		case "verify":
			return pluginsVerify(args[2:])
		case "lock":
			return pluginsLock(ctx, args[2:])
		case "test":
			return pluginsTest(ctx, args[2:])
		case "run":
			return pluginsRun(ctx, args[2:])
		case "new":
			return pluginsNew(args[2:])
		case "keygen":
			return pluginsKeygen(args[2:])
		case "sign":
			return pluginsSign(ctx, args[2:])
		case "push":
			return pluginsPush(ctx, args[2:])
		case "pull":
			return pluginsPull(ctx, args[2:])
		}
	case "demo":
		return demoSeed(ctx, args[1:])
	case "secrets":
		return secrets(ctx, args[1:])
	case "version":
		fmt.Println("sluice", version)
		return nil
	}
	return usage()
}

func usage() error {
	fmt.Fprintln(os.Stderr, `usage:
  sluice serve [flags]                    run the API, the scheduler and the workers
  sluice plugins verify [--plugins-dir D] [--lock F]
  sluice plugins lock [--plugins-dir D] [--lock F]
  sluice plugins test PATH.wasm           run a plugin through the conformance suite
  sluice plugins run [--batch F]... [--out D] PATH.wasm
                                          one run over recorded batches, objects to D
  sluice plugins new --lang go|rust|assemblyscript [--dir D] NAME
                                          write a plugin project that builds and tests
  sluice plugins keygen [--out NAME]      write a signing key pair (NAME.key, NAME.pub)
  sluice plugins sign --key K [--attach REF] PATH.wasm
                                          sign a module into PATH.wasm.sig, attach it to REF
                                          (--lock F instead of PATH: every pin into F.sig)
  sluice plugins push [--signature S] PATH.wasm REGISTRY/REPO:TAG
                                          store a plugin (and signatures) as an OCI artifact
  sluice plugins pull [-o PATH] [--trusted-keys K] REGISTRY/REPO[:TAG][@sha256:D]
                                          fetch a plugin artifact and its signatures
  sluice demo [--data-dir D] [--events N] seed synthetic events into the embedded store
  sluice secrets rotate [--data-dir D] [--database-url U] [--secret-key K]
                                          re-seal every destination secret with the first key
  sluice version`)
	return flag.ErrHelp
}

// env returns the variable's value or def.
func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// envInt returns the variable's value as an integer, or def when it is unset. A value that
// is not an integer is reported by returning -1, which the flag's own check refuses.
func envInt(name string, def int) int {
	v := env(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// envBool returns the variable's value as a boolean (strconv.ParseBool: true, false, 1, 0...),
// false when it is unset, and an error naming the variable when it is not a boolean.
func envBool(name string) (bool, error) { return envBoolDefault(name, false) }

// envBoolDefault is envBool with dflt for an unset variable.
func envBoolDefault(name string, dflt bool) (bool, error) {
	v := env(name, "")
	if v == "" {
		return dflt, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s must be true or false, got %q", name, v)
	}
	return b, nil
}
