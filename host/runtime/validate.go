package runtime

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicehq/sluice/abi"
)

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

type sig struct{ params, results []api.ValueType }

func (s sig) String() string { return formatSig(s.params, s.results) }

func formatSig(params, results []api.ValueType) string {
	name := func(ts []api.ValueType) string {
		n := make([]string, len(ts))
		for i, t := range ts {
			n[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(n, ", ") + ")"
	}
	return name(params) + " -> " + name(results)
}

// Export signatures of ABI 1.0 (SPEC section 5).
var exportSigs = []struct {
	name     string
	sig      sig
	required bool
}{
	{abi.ExportInitialize, sig{}, false},
	{abi.ExportAlloc, sig{[]api.ValueType{i32}, []api.ValueType{i32}}, true},
	{abi.ExportDescribe, sig{nil, []api.ValueType{i64}}, true},
	{abi.ExportValidate, sig{[]api.ValueType{i32, i32}, []api.ValueType{i64}}, true},
	{abi.ExportOpen, sig{[]api.ValueType{i32, i32}, []api.ValueType{i64}}, true},
	{abi.ExportWriteBatch, sig{[]api.ValueType{i32, i32}, []api.ValueType{i64}}, true},
	{abi.ExportFinish, sig{nil, []api.ValueType{i64}}, true},
	{abi.ExportClassify, sig{[]api.ValueType{i32, i32}, []api.ValueType{i64}}, true},
	{abi.ExportClose, sig{nil, []api.ValueType{i64}}, true},
	{abi.ExportTest, sig{[]api.ValueType{i32, i32}, []api.ValueType{i64}}, false},
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	markerRE = regexp.MustCompile(`^sluice_abi_v([0-9]{1,4})_([0-9]{1,4})$`)
)

var fieldTypes = []string{abi.TypeString, abi.TypeInteger, abi.TypeNumber, abi.TypeBoolean, abi.TypeStringList, abi.TypeObject}

var knownCaps = []string{abi.CapLog, abi.CapMetrics, abi.CapEncode, abi.CapObject, abi.CapBigQuery, abi.CapSnowflake, abi.CapHTTP, abi.CapSQL}

func eqTypes(a, b []api.ValueType) bool { return slices.Equal(a, b) }

// prepare compiles and checks a module and returns a plugin whose pool holds the instance
// used for sluice_describe.
func (rt *Runtime) prepare(ctx context.Context, wasm []byte, granted []string, limits Limits) (*Plugin, error) {
	if int64(len(wasm)) > rt.cfg.MaxModuleBytes {
		return nil, invalid("plugin module is %d bytes; the limit is %d bytes", len(wasm), rt.cfg.MaxModuleBytes)
	}
	sha := SHA256(wasm)
	eng, err := rt.engineFor(ctx, limits.MemoryLimitPages)
	if err != nil {
		return nil, err
	}
	compiled, err := eng.r.CompileModule(ctx, wasm)
	if err != nil {
		return nil, invalid("plugin module (sha256 %s) is not a valid WebAssembly module: %v", sha[:12], err)
	}
	p := &Plugin{SHA256: sha, rt: rt, eng: eng, compiled: compiled, limits: limits}
	p.pool = newPool(p)
	name := compiled.Name()
	if name == "" {
		name = "sha256:" + sha[:12]
	}
	p.Manifest.Name = name // until describe
	fail := func(err error) (*Plugin, error) {
		p.pool.close(ctx)
		return nil, err
	}

	// Marker and version first: a plugin built for a newer host most likely also imports
	// functions this host lacks, and the version error is the one that helps.
	major, minor, err := findMarker(compiled.ExportedFunctions())
	if err != nil {
		return fail(err)
	}
	p.ABIMinor = minor
	importErr := rt.checkImports(compiled, minor)
	if major != abi.Major || minor > abi.Minor {
		if importErr == nil && checkExports(compiled) == nil {
			if m, err := p.describe(ctx); err == nil && m.Name != "" {
				name = m.Name
			}
		}
		return fail(invalid("plugin %q needs Sluice plugin ABI %d.%d; this host provides %d.0 through %d.%d",
			name, major, minor, abi.Major, abi.Major, abi.Minor))
	}
	if importErr != nil {
		return fail(importErr)
	}
	if err := checkExports(compiled); err != nil {
		return fail(err)
	}
	_, p.hasTest = compiled.ExportedFunctions()[abi.ExportTest]

	m, err := p.describe(ctx)
	if err != nil {
		return fail(&InvalidPluginError{Msg: "plugin install failed: " + err.Error(), Err: err})
	}
	if err := checkManifest(m, major, minor); err != nil {
		return fail(err)
	}
	p.Manifest = m
	if err := p.checkGrants(granted); err != nil {
		return fail(err)
	}
	p.granted = map[string]bool{}
	for _, c := range abi.AlwaysGranted {
		p.granted[c] = true
	}
	// At run time a plugin may use only what it requested and was granted: the effective
	// set does not depend on later Load calls' grant lists.
	for _, c := range p.Manifest.Capabilities {
		p.granted[c] = true
	}
	return p, nil
}

func findMarker(exports map[string]api.FunctionDefinition) (major, minor int, err error) {
	var found []string
	for name, def := range exports {
		if !strings.HasPrefix(name, abi.MarkerPrefix) {
			continue
		}
		mm := markerRE.FindStringSubmatch(name)
		if mm == nil {
			return 0, 0, invalid("plugin exports %q, which is not a valid ABI marker (want %s)", name, abi.Marker(abi.Major, abi.Minor))
		}
		if len(def.ParamTypes()) != 0 || len(def.ResultTypes()) != 0 {
			return 0, 0, invalid("plugin export %q has signature %s; want () -> ()", name, formatSig(def.ParamTypes(), def.ResultTypes()))
		}
		found = append(found, name)
		major, _ = strconv.Atoi(mm[1])
		minor, _ = strconv.Atoi(mm[2])
	}
	switch len(found) {
	case 0:
		return 0, 0, invalid("module exports no Sluice ABI marker (a function %q): it is not a Sluice plugin, or was built without the plugin SDK", abi.Marker(abi.Major, abi.Minor))
	case 1:
		return major, minor, nil
	}
	slices.Sort(found)
	return 0, 0, invalid("plugin exports several ABI markers (%s); exactly one is allowed", strings.Join(found, ", "))
}

func (rt *Runtime) checkImports(compiled wazero.CompiledModule, minor int) error {
	if mems := compiled.ImportedMemories(); len(mems) > 0 {
		mod, name, _ := mems[0].Import()
		return invalid("plugin imports memory %s.%s; a plugin must define and export its own memory", mod, name)
	}
	for _, def := range compiled.ImportedFunctions() {
		mod, name, _ := def.Import()
		provided, ok := rt.hostFn[mod]
		if !ok {
			return invalid("plugin imports function %s.%s from module %q, which this host does not provide (allowed modules: %s, %s)",
				mod, name, mod, abi.ImportModule, wasi_snapshot_preview1.ModuleName)
		}
		have, ok := provided[name]
		if !ok {
			return invalid("plugin imports function %s.%s, which this host does not provide (host ABI %d.%d)", mod, name, abi.Major, abi.Minor)
		}
		if need := abi.ImportMinor(name); mod == abi.ImportModule && minor < need {
			return invalid("plugin imports function %s.%s, which is part of ABI %d.%d, but declares ABI %d.%d (its marker export); "+
				"build it for %d.%d (Go SDK: -tags sluice_abi_1_%d)", mod, name, abi.Major, need, abi.Major, minor, abi.Major, need, need)
		}
		if !eqTypes(have.ParamTypes(), def.ParamTypes()) || !eqTypes(have.ResultTypes(), def.ResultTypes()) {
			return invalid("plugin imports function %s.%s with signature %s; the host provides %s", mod, name,
				formatSig(def.ParamTypes(), def.ResultTypes()), formatSig(have.ParamTypes(), have.ResultTypes()))
		}
	}
	return nil
}

func checkExports(compiled wazero.CompiledModule) error {
	if _, ok := compiled.ExportedMemories()["memory"]; !ok {
		return invalid("plugin does not export its linear memory as %q", "memory")
	}
	fns := compiled.ExportedFunctions()
	if _, ok := fns["_start"]; ok {
		return invalid("plugin exports _start: it was built as a WASI command; build it as a reactor (Go: -buildmode=c-shared; Rust: crate-type cdylib)")
	}
	for _, e := range exportSigs {
		def, ok := fns[e.name]
		if !ok {
			if e.required {
				return invalid("plugin does not export %s, signature %s", e.name, e.sig)
			}
			continue
		}
		if !eqTypes(def.ParamTypes(), e.sig.params) || !eqTypes(def.ResultTypes(), e.sig.results) {
			return invalid("plugin export %s has signature %s; want %s", e.name, formatSig(def.ParamTypes(), def.ResultTypes()), e.sig)
		}
	}
	return nil
}

func checkManifest(m abi.Manifest, major, minor int) error {
	if !nameRE.MatchString(m.Name) {
		return invalid("plugin manifest name %q is invalid: want 1 to 64 of a-z, 0-9, _ and -", m.Name)
	}
	if want := fmt.Sprintf("%d.%d", major, minor); m.ABIVersion != want {
		return invalid("plugin %q: manifest abi_version %q does not agree with its marker export %s (want %q)",
			m.Name, m.ABIVersion, abi.Marker(major, minor), want)
	}
	if strings.TrimSpace(m.Version) == "" {
		return invalid("plugin %q: manifest has no version", m.Name)
	}
	for _, c := range m.Capabilities {
		if !slices.Contains(knownCaps, c) {
			return invalid("plugin %q requests unknown capability %q (known: %s)", m.Name, c, strings.Join(knownCaps, ", "))
		}
		if need := abi.CapabilityMinor(c); minor < need {
			return invalid("plugin %q requests capability %q, which is part of ABI %d.%d, but declares ABI %d.%d", m.Name, c, abi.Major, need, major, minor)
		}
	}
	seen := map[string]bool{}
	for i, f := range m.Config {
		if f.Name == "" {
			return invalid("plugin %q: config field %d has no name", m.Name, i)
		}
		if seen[f.Name] {
			return invalid("plugin %q: config field %q is declared twice", m.Name, f.Name)
		}
		seen[f.Name] = true
		if !slices.Contains(fieldTypes, f.Type) {
			return invalid("plugin %q: config field %q has type %q (want one of %s)", m.Name, f.Name, f.Type, strings.Join(fieldTypes, ", "))
		}
		if f.Binding != "" {
			capName, param, ok := strings.Cut(f.Binding, ".")
			if !ok || param == "" {
				return invalid("plugin %q: config field %q has binding %q (want capability.parameter)", m.Name, f.Name, f.Binding)
			}
			if !slices.Contains(m.Capabilities, capName) {
				return invalid("plugin %q: config field %q binds %q but the manifest does not request capability %q", m.Name, f.Name, f.Binding, capName)
			}
		}
		if f.Default != nil && !defaultFits(f.Type, f.Default) {
			return invalid("plugin %q: config field %q has a default of the wrong type for %s", m.Name, f.Name, f.Type)
		}
	}
	return nil
}

func defaultFits(typ string, v any) bool {
	switch typ {
	case abi.TypeString:
		_, ok := v.(string)
		return ok
	case abi.TypeInteger:
		f, ok := v.(float64)
		return ok && f == float64(int64(f))
	case abi.TypeNumber:
		_, ok := v.(float64)
		return ok
	case abi.TypeBoolean:
		_, ok := v.(bool)
		return ok
	case abi.TypeStringList:
		l, ok := v.([]any)
		if !ok {
			return false
		}
		for _, x := range l {
			if _, ok := x.(string); !ok {
				return false
			}
		}
		return true
	case abi.TypeObject:
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

func (p *Plugin) checkGrants(granted []string) error {
	for _, c := range p.Manifest.Capabilities {
		if slices.Contains(abi.AlwaysGranted, c) || slices.Contains(granted, c) {
			continue
		}
		return invalid("plugin %q requests capability %q, which was not granted (granted: %s; always granted: %s)",
			p.Manifest.Name, c, listOrNone(granted), strings.Join(abi.AlwaysGranted, ", "))
	}
	return nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// describe borrows an instance and calls sluice_describe.
func (p *Plugin) describe(ctx context.Context) (abi.Manifest, error) {
	var m abi.Manifest
	in, err := p.pool.getFor(ctx, true)
	if err != nil {
		return m, err
	}
	defer p.pool.put(in)
	in.beginCall(nil, modeControl)
	doc, err := in.callDoc(ctx, abi.ExportDescribe, in.fn.describe)
	if err != nil {
		return m, err
	}
	if len(doc) == 0 {
		return m, &TrapError{Plugin: p.Manifest.Name, Export: abi.ExportDescribe, Kind: TrapBadOutput, Detail: "returned an empty manifest"}
	}
	if err := in.decode(abi.ExportDescribe, doc, &m); err != nil {
		return m, err
	}
	return m, nil
}
