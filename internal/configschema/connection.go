package configschema

import (
	"fmt"
	"sort"

	"github.com/sluicehq/sluice/abi"
)

// A connection (docs/api.md, "Connections") is a named set of one plugin's config fields
// that several exports share: the credentials and where they apply. An export that uses
// one holds the rest of the config itself, and its effective config is the connection's
// fields overlaid by the export's own (Effective).

// ConnectionField reports whether a connection may hold field f: a secret, or a field the
// host binds to a capability parameter (an account, a region, an endpoint, a bucket, a
// database: what the credentials are for). Fields only the plugin reads (a prefix, a
// file format, a table name) belong to each export.
func ConnectionField(f abi.Field) bool { return f.Secret || f.Binding != "" }

// ConnectionFields lists the fields of a manifest a connection may hold.
func ConnectionFields(fields []abi.Field) []abi.Field {
	var out []abi.Field
	for _, f := range fields {
		if ConnectionField(f) {
			out = append(out, f)
		}
	}
	return out
}

// optional returns fields with nothing required and no default: a part of a config that
// another part completes (Effective checks the whole).
func optional(fields []abi.Field) []abi.Field {
	out := make([]abi.Field, len(fields))
	for i, f := range fields {
		f.Required, f.Default = false, nil
		out[i] = f
	}
	return out
}

// ResolveConnection validates a connection's fields (previous != nil: an update, merged
// as in Resolve). Only ConnectionField fields are accepted; none is required and no
// default is stored (Effective applies them), so a connection may hold any subset.
func ResolveConnection(fields []abi.Field, input map[string]any, previous *Stored) (Stored, FieldErrors) {
	var errs FieldErrors
	in := map[string]any{}
	for k, v := range input {
		if f, ok := fieldNamed(fields, k); ok && !ConnectionField(f) {
			errs = append(errs, FieldError{Field: k, Message: "not a connection field: the plugin's own setting, set it on each export's destination.config"})
			continue
		}
		in[k] = v
	}
	st, ferrs := Resolve(optional(ConnectionFields(fields)), in, previous)
	errs = append(errs, ferrs...)
	sortErrs(errs)
	if len(errs) > 0 {
		return Stored{}, errs
	}
	return st, nil
}

// ResolveOwn validates the config an export that uses a connection holds itself: any
// field but the secrets (they are the connection's: a secret given here is a conflict),
// nothing required (Effective checks the whole), and defaults for the fields a connection
// cannot hold only. previous (an update) is merged as in Resolve, without its secrets;
// attach, when the export takes a new connection, also drops the previous values of the
// fields that connection holds (the export's old region or endpoint must not hide the
// connection's), unless the request sets them again.
func ResolveOwn(fields []abi.Field, input map[string]any, previous, attach *Stored) (Stored, FieldErrors) {
	var errs FieldErrors
	own := make([]abi.Field, 0, len(fields))
	for _, f := range fields {
		if f.Secret {
			if _, given := input[f.Name]; given {
				errs = append(errs, FieldError{Field: f.Name, Message: "conflicts with the connection: an export that uses a connection takes its secrets from it (change them on the connection)"})
			}
			continue
		}
		if ConnectionField(f) {
			f.Required, f.Default = false, nil
		}
		own = append(own, f)
	}
	in := map[string]any{}
	for k, v := range input {
		if f, ok := fieldNamed(fields, k); !ok || !f.Secret {
			in[k] = v
		}
	}
	var prev *Stored
	if previous != nil {
		prev = &Stored{Public: map[string]any{}, Secret: map[string]any{}}
		for k, v := range previous.Public {
			if attach != nil {
				if _, held := attach.Public[k]; held {
					continue
				}
			}
			prev.Public[k] = v
		}
	}
	st, ferrs := Resolve(own, in, prev)
	errs = append(errs, ferrs...)
	sortErrs(errs)
	if len(errs) > 0 {
		return Stored{}, errs
	}
	return st, nil
}

// Effective is the config an export that uses a connection runs with: the connection's
// fields overlaid by the export's own, checked against the whole schema (required fields,
// defaults). Keys the schema does not declare (a connection written for another version
// of the plugin) are left out. A required field neither part sets is reported by name.
func Effective(fields []abi.Field, conn, own Stored) (Stored, FieldErrors) {
	merged := map[string]any{}
	for _, part := range []map[string]any{conn.Public, conn.Secret, own.Public, own.Secret} {
		for k, v := range part {
			if _, ok := fieldNamed(fields, k); ok {
				merged[k] = v
			}
		}
	}
	st, errs := Resolve(fields, merged, nil)
	for i, e := range errs {
		if e.Message == "required" || e.Message == "required secret is missing" {
			f, _ := fieldNamed(fields, e.Field)
			where := "on the export"
			if ConnectionField(f) {
				where = "on the connection or on the export"
			}
			if f.Secret {
				where = "on the connection"
			}
			errs[i].Message = fmt.Sprintf("%s: set it %s", e.Message, where)
		}
	}
	return st, errs
}

func fieldNamed(fields []abi.Field, name string) (abi.Field, bool) {
	for _, f := range fields {
		if f.Name == name {
			return f, true
		}
	}
	return abi.Field{}, false
}

// sortErrs orders errors by field, for answers that do not depend on map order.
func sortErrs(errs FieldErrors) {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
}
