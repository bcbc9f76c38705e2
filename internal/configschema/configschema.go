// Package configschema validates a destination's config against the plugin's manifest
// (abi.Field list), splits it into public and secret parts, redacts it for responses and
// renders it as Markdown. The spec drives both validation and docs, as in Benthos.
//
// Values come either from an API request decoded with json.Decoder.UseNumber (numbers are
// json.Number) or from storage decoded without it (numbers are float64); both are
// accepted. An `integer` field accepts a JSON integer only: json.Number "5" but not "5.0"
// or "5e0"; a float64 must be integral. Resolved values are normalised: integer → int64,
// number → float64, string_list → []string, object → map[string]any.
package configschema

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/abi"
)

// RedactedValue stands for a secret in a response. Sent back as a secret's value on
// update, it means "keep the stored secret" (so a client can round-trip what it read).
const RedactedValue = "********"

// Stored is a resolved config: non-secret keys (defaults applied; what the plugin sees)
// and secret keys (stored encrypted, used only by the host to bind capabilities).
type Stored struct {
	Public map[string]any `json:"public"`
	Secret map[string]any `json:"secret"`
}

// FieldError names one config key at fault.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// FieldErrors is every problem found; it implements error.
type FieldErrors []FieldError

func (fe FieldErrors) Error() string {
	parts := make([]string, len(fe))
	for i, e := range fe {
		parts[i] = e.Field + ": " + e.Message
	}
	return "invalid config: " + strings.Join(parts, "; ")
}

// Prefix returns a copy with prefix+"." before every field name (for nesting in a body).
func (fe FieldErrors) Prefix(prefix string) FieldErrors {
	out := make(FieldErrors, len(fe))
	for i, e := range fe {
		out[i] = FieldError{Field: prefix + "." + e.Field, Message: e.Message}
	}
	return out
}

// Resolve validates input against fields and returns the config to store.
//
//   - Keys not in fields are rejected.
//   - A JSON null value unsets the key (its default, if any, applies again).
//   - previous != nil makes this an update (PATCH): keys absent from input keep their
//     previous value, so secrets may be omitted; keys of previous that the schema no
//     longer has are dropped. A secret given as RedactedValue keeps its previous value.
//   - Missing keys with a default get the default; a required key that is still missing
//     (or an empty string) is an error.
//   - Secret fields go to Stored.Secret, the others to Stored.Public.
func Resolve(fields []abi.Field, input map[string]any, previous *Stored) (Stored, FieldErrors) {
	var errs FieldErrors
	byName := make(map[string]abi.Field, len(fields))
	for _, f := range fields {
		byName[f.Name] = f
	}
	var unknown []string
	for k := range input {
		if _, ok := byName[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, FieldError{Field: k, Message: "unknown config key" + suggest(k, fields)})
	}

	out := Stored{Public: map[string]any{}, Secret: map[string]any{}}
	for _, f := range fields {
		dst := out.Public
		if f.Secret {
			dst = out.Secret
		}
		var prev any
		hasPrev := false
		if previous != nil {
			src := previous.Public
			if f.Secret {
				src = previous.Secret
			}
			prev, hasPrev = src[f.Name]
			if hasPrev && prev == nil {
				hasPrev = false
			}
		}
		raw, given := input[f.Name]
		switch {
		case given && raw == nil: // explicit null: unset
			given = false
			hasPrev = false
		case given && f.Secret && raw == RedactedValue:
			if !hasPrev {
				errs = append(errs, FieldError{Field: f.Name, Message: "secret is not set; " + RedactedValue + " only keeps a stored value"})
				continue
			}
			given = false
		}
		var val any
		switch {
		case given:
			v, msg := coerce(f, raw)
			if msg != "" {
				errs = append(errs, FieldError{Field: f.Name, Message: msg})
				continue
			}
			val = v
		case hasPrev:
			v, msg := coerce(f, prev)
			if msg != "" { // a stored value the (new) schema rejects: ask for a new one
				errs = append(errs, FieldError{Field: f.Name, Message: "stored value is no longer valid (" + msg + "); set it again"})
				continue
			}
			val = v
		case f.Default != nil:
			v, msg := coerce(f, f.Default)
			if msg != "" {
				errs = append(errs, FieldError{Field: f.Name, Message: "the plugin's default is invalid: " + msg})
				continue
			}
			val = v
		default:
			if f.Required {
				errs = append(errs, FieldError{Field: f.Name, Message: requiredMsg(f)})
			}
			continue
		}
		if f.Required && isEmpty(val) {
			errs = append(errs, FieldError{Field: f.Name, Message: requiredMsg(f)})
			continue
		}
		dst[f.Name] = val
	}
	if len(errs) > 0 {
		return Stored{}, errs
	}
	return out, nil
}

func requiredMsg(f abi.Field) string {
	if f.Secret {
		return "required secret is missing"
	}
	return "required"
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case string:
		return x == ""
	case []string:
		return len(x) == 0
	}
	return false
}

// quoteUnlessSecret quotes a rejected value for an error message, unless the field is
// secret: a secret never appears in an API answer, even a wrong one.
func quoteUnlessSecret(f abi.Field, s string) string {
	if f.Secret {
		return "a value that is not allowed (secret, not shown)"
	}
	return fmt.Sprintf("%q", s)
}

// coerce checks v against f and normalises it; msg is non-empty on error.
func coerce(f abi.Field, v any) (any, string) {
	switch f.Type {
	case abi.TypeString:
		s, ok := v.(string)
		if !ok {
			return nil, "must be a string, got " + jsonKind(v)
		}
		if len(f.Enum) > 0 && !slices.Contains(f.Enum, s) {
			return nil, fmt.Sprintf("must be one of %s, got %s", strings.Join(f.Enum, ", "), quoteUnlessSecret(f, s))
		}
		return s, ""
	case abi.TypeInteger:
		n, ok := toInt(v)
		if !ok {
			return nil, "must be an integer, got " + jsonKind(v)
		}
		return n, ""
	case abi.TypeNumber:
		x, ok := toFloat(v)
		if !ok {
			return nil, "must be a number, got " + jsonKind(v)
		}
		return x, ""
	case abi.TypeBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, "must be a boolean, got " + jsonKind(v)
		}
		return b, ""
	case abi.TypeStringList:
		var list []string
		switch x := v.(type) {
		case []string:
			list = slices.Clone(x)
		case []any:
			list = make([]string, 0, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Sprintf("must be an array of strings: element %d is %s", i, jsonKind(e))
				}
				list = append(list, s)
			}
		default:
			return nil, "must be an array of strings, got " + jsonKind(v)
		}
		if len(f.Enum) > 0 {
			for _, s := range list {
				if !slices.Contains(f.Enum, s) {
					return nil, fmt.Sprintf("elements must be among %s, got %s", strings.Join(f.Enum, ", "), quoteUnlessSecret(f, s))
				}
			}
		}
		return list, ""
	case abi.TypeObject:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "must be an object, got " + jsonKind(v)
		}
		return m, ""
	}
	return nil, fmt.Sprintf("the plugin declares an unknown type %q", f.Type)
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if strings.ContainsAny(s, ".eE") {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) || math.Abs(x) > 1<<53 {
			return 0, false
		}
		return int64(x), true
	case float32:
		return toInt(float64(x))
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// jsonKind names a value's JSON type for messages.
func jsonKind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return "a non-integer number"
		}
		return "a number"
	case float64, float32:
		if f, _ := toFloat(x); f != math.Trunc(f) {
			return "a non-integer number"
		}
		return "a number"
	case int, int32, int64:
		return "a number"
	case []any, []string:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// suggest proposes the closest field name for a misspelt key.
func suggest(k string, fields []abi.Field) string {
	best, bestD := "", 3
	for _, f := range fields {
		if d := distance(strings.ToLower(k), strings.ToLower(f.Name)); d < bestD {
			best, bestD = f.Name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Redact returns the config safe to show: public without any secret field (defence in
// depth: secrets are never in public to begin with).
func Redact(fields []abi.Field, public map[string]any) map[string]any {
	secret := map[string]bool{}
	for _, f := range fields {
		if f.Secret {
			secret[f.Name] = true
		}
	}
	out := make(map[string]any, len(public))
	for k, v := range public {
		if !secret[k] {
			out[k] = v
		}
	}
	return out
}

// SecretsSet lists, in schema order, the secret fields that have a non-empty value.
// Keys of secret that the schema does not declare as secret are ignored.
func SecretsSet(fields []abi.Field, secret map[string]any) []string {
	out := []string{}
	for _, f := range fields {
		if !f.Secret {
			continue
		}
		if v, ok := secret[f.Name]; ok && v != nil && v != "" {
			out = append(out, f.Name)
		}
	}
	return out
}
