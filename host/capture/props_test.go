package capture

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzBuildProps checks the one-pass scanner against encoding/json: for any JSON object,
// the stored properties decode to the same map as the object, and the members capture reads
// are the ones a map decode finds.
func FuzzBuildProps(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{ "distinct_id" : "x" , "t":[1,{"token":"n"}]}`,
		`{"a\"b":"c\\","$set":{"x":[]},"a":2}`, `{"\u0074oken":"k","n":-1.5e-3,"b":false,"z":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		var want map[string]json.RawMessage
		if err := json.Unmarshal(obj, &want); err != nil || want == nil {
			return
		}
		obj = bytes.TrimSpace(obj) // encoding/json hands capture the value without spaces around
		out, pi, err := buildProps(obj, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s: stored %s is not JSON: %v", obj, out, err)
		}
		var wantAny map[string]any
		_ = json.Unmarshal(obj, &wantAny)
		if !reflect.DeepEqual(got, wantAny) {
			t.Fatalf("%s: stored %s", obj, out)
		}
		if !json.Valid(out) || bytes.ContainsAny(out, "\n\t\r") && !bytes.Equal(out, compact(obj)) {
			t.Fatalf("%s: stored %s not compact", obj, out)
		}
		for name, raw := range map[string]json.RawMessage{"distinct_id": pi.distinctID, "token": pi.token,
			"$elements_chain": pi.elementsChain, "$set": pi.set, "$set_once": pi.setOnce} {
			if w, ok := want[name]; ok != (raw != nil) || ok && !bytes.Equal(compact(w), compact(raw)) {
				t.Fatalf("%s: member %s = %s, want %s", obj, name, raw, w)
			}
		}
	})
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	_ = json.Compact(&buf, b)
	return buf.Bytes()
}
