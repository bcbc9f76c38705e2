package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// decodeJSON reads the body (bounded by bodyLimit) into v strictly: one JSON object,
// unknown fields rejected, numbers kept as json.Number in maps (UseNumber). The
// Content-Type is not checked, so `curl -d` works as is.
func decodeJSON(c echo.Context, v any) error {
	empty, err := decodeOptionalJSON(c, v)
	if err == nil && empty {
		return BadRequest("the request body is empty; expected a JSON object")
	}
	return err
}

// decodeOptionalJSON is decodeJSON for a body that may be empty (then v is left as is
// and empty is true).
func decodeOptionalJSON(c echo.Context, v any) (empty bool, err error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return false, err
		}
		return false, BadRequest("cannot read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return true, nil
	}
	return false, decodeBody(body, v)
}

func decodeBody(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			// encoding/json names the key but not where it is: find its path.
			if path := unknownFieldPath(body, reflect.TypeOf(v)); path != "" {
				return BadRequest("unknown field", fieldErr(path, "unknown field"))
			}
			return BadRequest("unknown field", fieldErr(strings.Trim(name, `"`), "unknown field"))
		}
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BadRequest("malformed JSON: unexpected data after the top-level object")
	}
	return nil
}

// jsonError turns a decoding error into a 400 naming the field when there is one.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return BadRequest(fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: ")))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("malformed JSON: unexpected end of input")
	case errors.As(err, &te):
		if te.Field == "" {
			return BadRequest("the request body must be a JSON object, got " + te.Value)
		}
		return BadRequest("invalid field", fieldErr(te.Field, "must be "+expected(te.Type)+", got "+te.Value))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return BadRequest("unknown field", fieldErr(name, "unknown field"))
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	return BadRequest("malformed JSON: " + strings.TrimPrefix(err.Error(), "json: "))
}

// unknownFieldPath returns the dotted path ("destination.plugin",
// "filters.properties[0].op") of the first key in body that type t has no field for,
// matching keys to fields as encoding/json does (exact tag first, then case-insensitive);
// "" if none is found.
func unknownFieldPath(body []byte, t reflect.Type) string {
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return ""
	}
	return findUnknown(doc, t, "")
}

func findUnknown(v any, t reflect.Type, at string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			path := k
			if at != "" {
				path = at + "." + k
			}
			f, ok := jsonField(t, k)
			if !ok {
				return path
			}
			if p := findUnknown(obj[k], f.Type, path); p != "" {
				return p
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return ""
		}
		for i, x := range arr {
			if p := findUnknown(x, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); p != "" {
				return p
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		for k, x := range obj {
			if p := findUnknown(x, t.Elem(), at+"."+k); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonField finds the exported field of struct t that key k decodes into.
func jsonField(t reflect.Type, k string) (reflect.StructField, bool) {
	var fold reflect.StructField
	found := false
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == k {
			return f, true
		}
		if !found && strings.EqualFold(name, k) {
			fold, found = f, true
		}
	}
	return fold, found
}

func expected(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.Kind().String()
}

const timeHint = `must be an RFC 3339 date-time with a time zone, e.g. "2026-01-01T00:00:00Z"`

// parseTime parses an RFC 3339 date-time that names its zone ("Z" or an offset); naive
// date-times and bare dates are refused.
func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// optTime is a nullable date-time in a body: absent, null, or a string.
type optTime struct {
	set  bool // present in the body (null included)
	null bool
	t    time.Time
}

// timeField parses raw (absent, null or a JSON string) for field name.
func timeField(name string, raw json.RawMessage, errs *[]FieldError) optTime {
	if raw == nil {
		return optTime{}
	}
	if string(raw) == "null" {
		return optTime{set: true, null: true}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		*errs = append(*errs, fieldErr(name, timeHint))
		return optTime{}
	}
	t, ok := parseTime(s)
	if !ok {
		*errs = append(*errs, fieldErr(name, timeHint+", got "+strconv.Quote(s)))
		return optTime{}
	}
	return optTime{set: true, t: t.UTC()}
}

// pathID returns the path parameter if it is a UUID; otherwise a 404 for what.
func pathID(c echo.Context, param, what string) (string, error) {
	id := c.Param(param)
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return "", notFound(what)
	}
	return u.String(), nil
}

// queryInt reads an integer query parameter within [lo, hi]; def when absent.
func queryInt(c echo.Context, name string, def, lo, hi int, errs *[]FieldError) int {
	v := c.QueryParam(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		*errs = append(*errs, fieldErr(name, fmt.Sprintf("must be an integer from %d to %d", lo, hi)))
		return def
	}
	return n
}

// queryTime reads an RFC 3339 query parameter; zero when absent.
func queryTime(c echo.Context, name string, errs *[]FieldError) time.Time {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}
	}
	t, ok := parseTime(v)
	if !ok {
		*errs = append(*errs, fieldErr(name, timeHint))
		return time.Time{}
	}
	return t.UTC()
}

// queryList reads a parameter given repeated and/or as a comma list.
func queryList(c echo.Context, name string) []string {
	var out []string
	for _, v := range c.QueryParams()[name] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Cursors are opaque to clients: base64url of a small text.
func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeCursor(s string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err == nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// badFields returns a 400 if errs is not empty.
func badFields(errs []FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	msg := "invalid input"
	if len(errs) == 1 {
		msg = errs[0].Field + ": " + errs[0].Message
	}
	return BadRequest(msg, errs...)
}
