// Package rustsdk embeds the Rust SDK crate's source (src/lib.rs) for `sluice plugins new
// --lang rust`, which writes it into a new project. The crate itself is plain Rust.
package rustsdk

import _ "embed"

// Source is src/lib.rs, the whole sluice_sdk crate.
//
//go:embed src/lib.rs
var Source []byte
