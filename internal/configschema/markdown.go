package configschema

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/abi"
)

// Markdown renders a plugin's config reference: what it is, the capabilities it needs,
// one table row per field (type, required, default, allowed values, secret, binding) and
// an example config with the required keys.
func Markdown(m abi.Manifest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s %s\n\n", m.Name, m.Version)
	if m.Description != "" {
		fmt.Fprintf(&b, "%s\n\n", m.Description)
	}
	fmt.Fprintf(&b, "- ABI version: `%s`\n", m.ABIVersion)
	if len(m.Capabilities) > 0 {
		fmt.Fprintf(&b, "- Capabilities: %s\n", codeList(m.Capabilities))
	} else {
		b.WriteString("- Capabilities: none beyond `log`, `metrics` and `encode`\n")
	}
	if len(m.Formats) > 0 {
		fmt.Fprintf(&b, "- Formats: %s\n", codeList(m.Formats))
	}
	b.WriteString("\n## Configuration\n\n")
	if len(m.Config) == 0 {
		b.WriteString("This destination takes no configuration.\n")
		return b.String()
	}
	b.WriteString("Secret fields are stored encrypted, never returned by the API and never given to the plugin:\n")
	b.WriteString("the host uses them to bind capabilities. An update may omit them to keep the stored values.\n\n")
	b.WriteString("| field | type | required | default | description |\n|---|---|---|---|---|\n")
	for _, f := range m.Config {
		desc := cell(f.Description)
		var notes []string
		if len(f.Enum) > 0 {
			notes = append(notes, "one of "+codeList(f.Enum))
		}
		if f.Secret {
			notes = append(notes, "**secret**")
		}
		if f.Binding != "" {
			notes = append(notes, "binds `"+f.Binding+"`")
		}
		if len(notes) > 0 {
			if desc != "" {
				desc += " "
			}
			desc += "(" + strings.Join(notes, "; ") + ")"
		}
		req := "no"
		if f.Required {
			req = "yes"
		}
		def := ""
		if f.Default != nil {
			d, _ := json.Marshal(f.Default)
			def = "`" + cell(string(d)) + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", f.Name, f.Type, req, def, desc)
	}
	b.WriteString("\n## Example\n\n```json\n")
	ex := map[string]any{}
	for _, f := range m.Config {
		if !f.Required {
			continue
		}
		ex[f.Name] = example(f)
	}
	type destination struct {
		Type   string         `json:"type"`
		Config map[string]any `json:"config"`
	}
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]destination{"destination": {Type: m.Name, Config: ex}})
	b.WriteString("```\n")
	return b.String()
}

func example(f abi.Field) any {
	if f.Default != nil {
		return f.Default
	}
	if len(f.Enum) > 0 {
		if f.Type == abi.TypeStringList {
			return []string{f.Enum[0]}
		}
		return f.Enum[0]
	}
	switch f.Type {
	case abi.TypeInteger, abi.TypeNumber:
		return 0
	case abi.TypeBoolean:
		return false
	case abi.TypeStringList:
		return []string{}
	case abi.TypeObject:
		return map[string]any{}
	}
	return "<" + f.Name + ">"
}

func codeList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "`" + cell(x) + "`"
	}
	return strings.Join(q, ", ")
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}
