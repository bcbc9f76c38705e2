package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk/internal/guest"
)

// registration is what Register recorded.
var registration struct {
	manifest abi.Manifest
	doc      []byte // the manifest's JSON, computed once: sluice_describe is pure
	newDest  func() Destination
}

// run is the state of the run in progress on this instance.
var run struct {
	dest    Destination
	opened  bool  // Open succeeded
	failed  error // the first WriteBatch error of the run: Finish refuses to succeed after it
	batch   Batch
	uploads []*Upload
}

// Register declares the plugin: its manifest and a constructor called once per run (and
// for validate, classify and test). Call it from the plugin's init function: in a wasip1
// reactor (-buildmode=c-shared) package initialisers run in _initialize, main.main never
// runs. An empty ABIVersion is set to the SDK's; an invalid manifest panics, so a broken
// plugin fails at its first instantiation rather than at run time.
func Register(manifest abi.Manifest, newDest func() Destination) {
	if manifest.ABIVersion == "" {
		manifest.ABIVersion = fmt.Sprintf("%d.%d", abi.Major, ABIMinor)
	}
	if manifest.Capabilities == nil {
		manifest.Capabilities = []string{}
	}
	if manifest.Config == nil {
		manifest.Config = []abi.Field{}
	}
	if err := CheckManifest(manifest); err != nil {
		panic(err)
	}
	if newDest == nil {
		panic("sdk: Register: newDest is nil")
	}
	doc, err := json.Marshal(manifest)
	if err != nil {
		panic(fmt.Sprintf("sdk: Register: manifest: %v", err))
	}
	registration.manifest, registration.doc, registration.newDest = manifest, doc, newDest
}

// Registered returns the manifest given to Register (with its defaults applied).
func Registered() abi.Manifest { return registration.manifest }

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	bindingRE = regexp.MustCompile(`^[a-z]+\.[a-z_]+(\.[a-z_]+)*$`) // capability.param; param may be dotted (object.azure.container)
)

var fieldTypes = map[string]bool{abi.TypeString: true, abi.TypeInteger: true, abi.TypeNumber: true,
	abi.TypeBoolean: true, abi.TypeStringList: true, abi.TypeObject: true}

// CheckManifest checks a manifest against SPEC section 7: name syntax, abi_version equal to
// the SDK's ABI (which is also the marker the SDK exports), field types, unique field names,
// and that every binding names a capability the manifest requests.
func CheckManifest(m abi.Manifest) error {
	if !nameRE.MatchString(m.Name) {
		return fmt.Errorf("sdk: manifest name %q does not match [a-z0-9_-]{1,64}", m.Name)
	}
	if want := fmt.Sprintf("%d.%d", abi.Major, ABIMinor); m.ABIVersion != want {
		return fmt.Errorf("sdk: manifest abi_version %q, but this SDK exports the marker of ABI %s", m.ABIVersion, want)
	}
	if m.Version == "" {
		return fmt.Errorf("sdk: manifest of %q has no version", m.Name)
	}
	seen := map[string]bool{}
	for _, f := range m.Config {
		if f.Name == "" || seen[f.Name] {
			return fmt.Errorf("sdk: manifest field %q: empty or duplicate name", f.Name)
		}
		seen[f.Name] = true
		if !fieldTypes[f.Type] {
			return fmt.Errorf("sdk: manifest field %q: unknown type %q", f.Name, f.Type)
		}
		if f.Binding != "" {
			if !bindingRE.MatchString(f.Binding) {
				return fmt.Errorf("sdk: manifest field %q: bad binding %q (want capability.param)", f.Name, f.Binding)
			}
			capName, _, _ := strings.Cut(f.Binding, ".")
			found := false
			for _, c := range m.Capabilities {
				found = found || c == capName
			}
			if !found {
				return fmt.Errorf("sdk: manifest field %q binds %q, but the manifest does not request capability %q", f.Name, f.Binding, capName)
			}
		}
		if f.Secret && f.Binding == "" {
			return fmt.Errorf("sdk: manifest field %q is secret but bound to nothing: the plugin never sees secret values", f.Name)
		}
	}
	return nil
}

func init() {
	guest.Dispatch = guest.Exports{
		Describe:   describe,
		Validate:   validate,
		Open:       open,
		WriteBatch: writeBatch,
		Finish:     finish,
		Classify:   classify,
		Test:       test,
		Close:      closeRun,
	}
}

// guard runs one export: a panic becomes an error document (message with the panic value
// and a short stack) and the instance stays usable.
func guard(export string, fn func() (any, error)) (doc []byte) {
	defer func() {
		if r := recover(); r != nil {
			stack := string(debug.Stack())
			// Start at the frame that panicked: drop debug.Stack, this closure and panic.
			if i := strings.Index(stack, "\npanic("); i >= 0 {
				rest := stack[i+1:]
				for range 2 { // the panic( line and its file line
					if j := strings.IndexByte(rest, '\n'); j >= 0 {
						rest = rest[j+1:]
					}
				}
				stack = rest
			}
			if len(stack) > 2048 {
				stack = stack[:2048] + "\n..."
			}
			doc = errorDoc(&abi.Error{Message: fmt.Sprintf("%s: panic: %v\n%s", export, r, stack),
				Status: abi.StatusInternal.String()})
		}
	}()
	if registration.newDest == nil {
		return errorDoc(&abi.Error{Message: "sdk: the plugin did not call sdk.Register in an init function",
			Status: abi.StatusInternal.String()})
	}
	res, err := fn()
	if err != nil {
		return errorDoc(ToABI(err))
	}
	if res == nil {
		return nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return errorDoc(&abi.Error{Message: fmt.Sprintf("%s: cannot marshal the result: %v", export, err)})
	}
	return b
}

func errorDoc(e *abi.Error) []byte {
	b, err := json.Marshal(abi.ErrorEnvelope{Error: e})
	if err != nil { // cannot happen: abi.Error holds strings only
		return []byte(`{"error":{"message":"sdk: unmarshallable error"}}`)
	}
	return b
}

func describe() []byte {
	return guard("describe", func() (any, error) { return json.RawMessage(registration.doc), nil })
}

func validate(in []byte) []byte {
	return guard("validate", func() (any, error) {
		var req abi.ValidateRequest
		if err := json.Unmarshal(in, &req); err != nil {
			return nil, WithCode(fmt.Errorf("sdk: validate: bad request: %w", err), "", abi.StatusBadArgument)
		}
		d := registration.newDest()
		v, ok := d.(Validator)
		if !ok {
			return nil, nil
		}
		return nil, v.Validate(&Config{Values: req.Config, SecretsSet: req.SecretsSet})
	})
}

func open(in []byte) []byte {
	return guard("open", func() (any, error) {
		if run.dest != nil { // a run the host never closed: drop it
			abortUploads()
		}
		var rc RunContext
		if err := json.Unmarshal(in, &rc.OpenRequest); err != nil {
			return nil, WithCode(fmt.Errorf("sdk: open: bad request: %w", err), "", abi.StatusBadArgument)
		}
		run.dest, run.opened, run.failed = registration.newDest(), false, nil
		if err := run.dest.Open(&rc); err != nil {
			return nil, err
		}
		run.opened = true
		return nil, nil
	})
}

func writeBatch(handle, records uint32) []byte {
	return guard("write_batch", func() (any, error) {
		if !run.opened {
			return nil, errNotOpen("write_batch")
		}
		b := &run.batch
		b.handle, b.records, b.n = handle, int(records), -1
		prev := run.failed
		if prev == nil { // stays set if WriteBatch panics
			run.failed = errors.New("write_batch panicked")
		}
		if err := run.dest.WriteBatch(b); err != nil {
			if prev == nil {
				run.failed = err
			}
			return nil, err
		}
		run.failed = prev
		return nil, nil
	})
}

func finish() []byte {
	return guard("finish", func() (any, error) {
		if !run.opened {
			return nil, errNotOpen("finish")
		}
		if run.failed != nil {
			// The run misses a batch: committing it would lose records (the host never calls
			// finish after a failed write; a plugin must not succeed if one does).
			return nil, fmt.Errorf("sdk: finish after a failed write_batch: %w", run.failed)
		}
		res, err := run.dest.Finish()
		if err != nil {
			return nil, err
		}
		if res.Outputs == nil {
			res.Outputs = []abi.Output{}
		}
		return res, nil
	})
}

func classify(in []byte) []byte {
	return guard("classify", func() (any, error) {
		var req abi.ClassifyRequest
		if err := json.Unmarshal(in, &req); err != nil {
			return nil, WithCode(fmt.Errorf("sdk: classify: bad request: %w", err), "", abi.StatusBadArgument)
		}
		d := run.dest
		if d == nil {
			d = registration.newDest()
		}
		if c, ok := d.(Classifier); ok {
			return c.Classify(&req.Error, req.Attempt), nil
		}
		return DefaultClassify(&req.Error, req.Attempt), nil
	})
}

func test(in []byte) []byte {
	return guard("test", func() (any, error) {
		var rc RunContext
		if err := json.Unmarshal(in, &rc.OpenRequest); err != nil {
			return nil, WithCode(fmt.Errorf("sdk: test: bad request: %w", err), "", abi.StatusBadArgument)
		}
		d := registration.newDest()
		saved := run.uploads // a test never touches a run's uploads
		run.uploads = nil
		defer func() { abortUploads(); run.uploads = saved }()
		if t, ok := d.(Tester); ok {
			rep, err := t.Test(&rc)
			if err != nil {
				return nil, err
			}
			if rep.Steps == nil {
				rep.Steps = []abi.TestStep{}
			}
			return rep, nil
		}
		return Base{}.Test(&rc)
	})
}

func closeRun() []byte {
	return guard("close", func() (any, error) {
		d := run.dest
		run.dest, run.opened, run.failed = nil, false, nil
		var err error
		if c, ok := d.(Closer); ok {
			err = c.Close()
		}
		abortUploads()
		run.batch = Batch{buf: run.batch.buf[:0]}
		if cap(run.batch.buf) > 16<<20 { // do not keep a huge batch buffer between runs
			run.batch.buf = nil
		}
		return nil, err
	})
}

// abortUploads aborts the uploads of the run that were neither committed nor aborted.
func abortUploads() {
	for _, u := range run.uploads {
		_ = u.Abort()
	}
	run.uploads = nil
}

func errNotOpen(export string) error {
	return WithCode(fmt.Errorf("sdk: %s: no run is open on this instance (sluice_open failed or was not called)", export),
		"", abi.StatusBadArgument)
}
