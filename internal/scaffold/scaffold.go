// Package scaffold writes a new plugin project (`sluice plugins new`): the plugin source
// for one language (Go, Rust, AssemblyScript), the SDK it needs, a Makefile that builds,
// tests (the conformance suite) and installs it, a README and a recorded batch. Templates
// and SDK sources are embedded in the binary.
package scaffold

import (
	"bytes"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/sluicehq/sluice/host/runtime/conformance"
	assemblyscript "github.com/sluicehq/sluice/sdk/assemblyscript"
	rustsdk "github.com/sluicehq/sluice/sdk/rust"
)

//go:embed templates
var templates embed.FS

// Languages are the accepted --lang values.
var Languages = []string{"go", "rust", "assemblyscript"}

// Options of a new project.
type Options struct {
	Lang string
	Name string // the plugin's name: [a-z0-9_-]{1,64}
	Dir  string // where to write; must not exist or be empty
	// SluiceDir is the Sluice source tree whose Go SDK a Go project uses (go.mod replace).
	SluiceDir string
}

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

type data struct {
	Name, Crate, Lang, LangTitle, SluiceDir, GoVersion, ASCVersion string
}

// Write writes the project and returns the files written (relative paths).
func Write(o Options) ([]string, error) {
	if !nameRE.MatchString(o.Name) {
		return nil, fmt.Errorf("plugin name %q must match [a-z0-9_-]{1,64}", o.Name)
	}
	titles := map[string]string{"go": "Go", "rust": "Rust", "assemblyscript": "AssemblyScript"}
	d := data{Name: o.Name, Crate: strings.ReplaceAll(o.Name, "-", "_"), Lang: o.Lang, LangTitle: titles[o.Lang]}
	if d.LangTitle == "" {
		return nil, fmt.Errorf("--lang %q: want one of %s", o.Lang, strings.Join(Languages, ", "))
	}
	if entries, err := os.ReadDir(o.Dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s exists and is not empty", o.Dir)
	}
	files := map[string][]byte{}
	switch o.Lang {
	case "go":
		if o.SluiceDir == "" {
			return nil, errors.New("a Go plugin needs the Sluice Go SDK: pass --sluice-dir with a Sluice source tree (the module is not published)")
		}
		abs, err := filepath.Abs(o.SluiceDir)
		if err != nil {
			return nil, err
		}
		gv, err := goVersion(abs)
		if err != nil {
			return nil, err
		}
		d.SluiceDir, d.GoVersion = filepath.ToSlash(abs), gv
	case "rust":
		files["sluice-sdk/lib.rs"] = rustsdk.Source
	case "assemblyscript":
		if err := asFiles(files, &d); err != nil {
			return nil, err
		}
	}
	// The templates of the language, then the shared README.
	root := "templates/" + o.Lang
	err := fs.WalkDir(templates, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		out, err := render(p, d)
		files[strings.TrimSuffix(strings.TrimPrefix(p, root+"/"), ".tmpl")] = out
		return err
	})
	if err != nil {
		return nil, err
	}
	if files["README.md"], err = render("templates/README.md.tmpl", d); err != nil {
		return nil, err
	}
	batch := conformance.Batch(conformance.Events(3, 300, 1))
	files["testdata/events.hex"] = []byte(hex.EncodeToString(batch) + "\n")
	files[".gitignore"] = []byte("/" + o.Name + ".wasm\n/out/\n/target/\nnode_modules/\n")

	var written []string
	for rel, b := range files {
		p := filepath.Join(o.Dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
		written = append(written, rel)
	}
	return written, nil
}

func render(p string, d data) ([]byte, error) {
	src, err := templates.ReadFile(p)
	if err != nil {
		return nil, err
	}
	t, err := template.New(path.Base(p)).Delims("{%", "%}").Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", p, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("template %s: %w", p, err)
	}
	return b.Bytes(), nil
}

// goVersion reads the go directive of the Sluice tree's go.mod (and checks it is Sluice).
func goVersion(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("--sluice-dir: %w", err)
	}
	if !bytes.Contains(b, []byte("module github.com/sluicehq/sluice\n")) {
		return "", fmt.Errorf("--sluice-dir %s is not a Sluice source tree (its go.mod is not module github.com/sluicehq/sluice)", dir)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s/go.mod has no go directive", dir)
	}
	return string(m[1]), nil
}

// asFiles adds the AssemblyScript SDK (flattened into sluice-sdk/), an asconfig.json whose
// abort handler points at it, and a package-lock.json pinning the SDK's compiler version
// under the project's name.
func asFiles(files map[string][]byte, d *data) error {
	ts, err := fs.Glob(assemblyscript.FS, "assembly/*.ts")
	if err != nil {
		return err
	}
	for _, p := range ts {
		if files["sluice-sdk/"+path.Base(p)], err = assemblyscript.FS.ReadFile(p); err != nil {
			return err
		}
	}
	cfg, err := assemblyscript.FS.ReadFile("asconfig.json")
	if err != nil {
		return err
	}
	files["asconfig.json"] = bytes.ReplaceAll(cfg, []byte("abort=assembly/exports/sluiceAbort"), []byte("abort=sluice-sdk/exports/sluiceAbort"))

	raw, err := assemblyscript.FS.ReadFile("package-lock.json")
	if err != nil {
		return err
	}
	var lock map[string]any
	if err := json.Unmarshal(raw, &lock); err != nil {
		return fmt.Errorf("sdk/assemblyscript/package-lock.json: %w", err)
	}
	pkgs, _ := lock["packages"].(map[string]any)
	asc, _ := pkgs["node_modules/assemblyscript"].(map[string]any)
	ver, _ := asc["version"].(string)
	if ver == "" {
		return errors.New("sdk/assemblyscript/package-lock.json pins no assemblyscript version")
	}
	d.ASCVersion = ver
	lock["name"], lock["version"] = d.Name, "0.1.0"
	pkgs[""] = map[string]any{"name": d.Name, "version": "0.1.0",
		"devDependencies": map[string]any{"assemblyscript": ver}}
	out, err := json.MarshalIndent(lock, "", "  ")
	if err != nil {
		return err
	}
	files["package-lock.json"] = append(out, '\n')
	return nil
}
