package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/internal/scaffold"
)

// pluginsNew writes a plugin project (internal/scaffold) into --dir (default ./NAME).
func pluginsNew(args []string) error {
	fs := flag.NewFlagSet("plugins new", flag.ContinueOnError)
	lang := fs.String("lang", "", "the plugin's language: "+strings.Join(scaffold.Languages, ", "))
	dir := fs.String("dir", "", "where to write the project (default ./NAME); must not exist or be empty")
	sluiceDir := fs.String("sluice-dir", "", "Go only: the Sluice source tree holding the Go SDK (default: the one enclosing the current directory, if any)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *lang == "" {
		return fmt.Errorf("usage: sluice plugins new --lang %s [--dir DIR] [--sluice-dir DIR] NAME", strings.Join(scaffold.Languages, "|"))
	}
	name := fs.Arg(0)
	if *dir == "" {
		*dir = name
	}
	if *lang == "go" && *sluiceDir == "" {
		*sluiceDir = enclosingSluiceTree()
	}
	files, err := scaffold.Write(scaffold.Options{Lang: *lang, Name: name, Dir: *dir, SluiceDir: *sluiceDir})
	if err != nil {
		return err
	}
	sort.Strings(files)
	fmt.Printf("wrote %s plugin %q in %s:\n  %s\nnext: cd %s && make test (README.md)\n",
		*lang, name, *dir, strings.Join(files, "\n  "), *dir)
	return nil
}

// enclosingSluiceTree returns the directory of the Sluice go.mod enclosing the working
// directory, or "".
func enclosingSluiceTree() string {
	d, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/sluicehq/sluice\n") {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}
