package capture

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// propsInfo is what capture reads from an event's properties object, found in one pass
// over its bytes instead of decoding it into a map and encoding it again (that was two
// thirds of the handler's time, docs/performance.md "Capture endpoint").
type propsInfo struct {
	distinctID, elementsChain, token, set, setOnce json.RawMessage // nil when absent
	spaced                                         bool            // whitespace outside strings
	dup                                            bool            // a key appears twice (or too many keys to tell)
}

const maxScannedKeys = 256

// scanProps walks the members of obj, which must be a valid JSON object (it comes out of
// encoding/json, which validated it).
func scanProps(obj []byte) propsInfo {
	var (
		pi   propsInfo
		keys [][]byte
		seen [32][]byte
	)
	keys = seen[:0]
	i := skipSpace(obj, 1, &pi.spaced)
	for i < len(obj) && obj[i] != '}' {
		end := stringEnd(obj, i)
		key := obj[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var s string
			_ = json.Unmarshal(obj[i:end], &s)
			key = []byte(s)
		}
		if len(keys) == maxScannedKeys {
			pi.dup = true // too many to compare: the caller takes the careful path
		} else if !pi.dup {
			for _, k := range keys {
				if bytes.Equal(k, key) {
					pi.dup = true
					break
				}
			}
			keys = append(keys, key)
		}
		i = skipSpace(obj, end, &pi.spaced) // at ':'
		i = skipSpace(obj, i+1, &pi.spaced)
		vend := valueEnd(obj, i, &pi.spaced)
		val := json.RawMessage(obj[i:vend])
		switch string(key) {
		case "distinct_id":
			pi.distinctID = val
		case "$elements_chain":
			pi.elementsChain = val
		case "token":
			pi.token = val
		case "$set":
			pi.set = val
		case "$set_once":
			pi.setOnce = val
		}
		i = skipSpace(obj, vend, &pi.spaced) // at ',' or '}'
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1, &pi.spaced)
		}
	}
	return pi
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int, spaced *bool) int {
	for i < len(b) && isSpace(b[i]) {
		*spaced = true
		i++
	}
	return i
}

// stringEnd returns the index after the closing quote of the string starting at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index after the value starting at b[i].
func valueEnd(b []byte, i int, spaced *bool) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch c := b[j]; c {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			default:
				if isSpace(c) {
					*spaced = true
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && !isSpace(b[j]) {
		j++
	}
	return j
}

// buildProps returns the properties to store: obj as sent (compacted if it had
// whitespace), with the top-level $set and $set_once joined when the properties lack them.
// An object with a repeated key is decoded and encoded again, so that the last value wins
// as it did when properties went through a map.
func buildProps(obj []byte, set, setOnce json.RawMessage) ([]byte, propsInfo, error) {
	pi := scanProps(obj)
	if pi.dup {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(obj, &m); err != nil {
			return nil, pi, err
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, pi, err
		}
		obj, pi = b, scanProps(b)
	}
	out := obj
	if pi.spaced {
		var buf bytes.Buffer
		if err := json.Compact(&buf, obj); err != nil {
			return nil, pi, err
		}
		out = buf.Bytes()
	}
	for _, m := range []struct {
		key       string
		top, have json.RawMessage
	}{{"$set", set, pi.set}, {"$set_once", setOnce, pi.setOnce}} {
		if !present(m.top) || m.have != nil {
			continue
		}
		var v bytes.Buffer
		if err := json.Compact(&v, m.top); err != nil {
			return nil, pi, err
		}
		grown := make([]byte, 0, len(out)+len(m.key)+v.Len()+4)
		grown = append(grown, out[:len(out)-1]...) // without the closing brace
		if len(out) > 2 {
			grown = append(grown, ',')
		}
		grown = append(grown, '"')
		grown = append(grown, m.key...)
		grown = append(grown, '"', ':')
		grown = append(grown, v.Bytes()...)
		out = append(grown, '}')
	}
	return out, pi, nil
}

// present reports whether a raw member was sent with a value other than null.
func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// jsonString returns the string raw holds (raw comes out of encoding/json, so it is valid
// JSON): without escapes and in valid UTF-8 it is the bytes between the quotes.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if in := raw[1 : len(raw)-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return string(in), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
