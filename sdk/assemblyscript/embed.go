// Package assemblyscript embeds the AssemblyScript SDK (assembly/*.ts) and its pinned
// compiler lock for `sluice plugins new --lang assemblyscript`, which writes them into a
// new project. The SDK itself is an npm package layout (package.json, assembly/).
package assemblyscript

import "embed"

// FS holds assembly/*.ts, asconfig.json and package-lock.json.
//
//go:embed assembly/*.ts asconfig.json package-lock.json
var FS embed.FS
