//! sluice_sdk: the Rust SDK for Sluice destination plugins (abi/SPEC.md, ABI 1.0), with no
//! crates, so that it builds with plain `rustc` (Debian's 1.63 with the wasm32-wasi
//! standard library) and no cargo registry.
//!
//! A plugin implements [`Destination`] and calls [`export_plugin!`] once; the macro defines
//! every export of SPEC section 5 (`_initialize`, the `sluice_abi_v1_0` marker,
//! `sluice_alloc`, the lifecycle exports) in the plugin crate. The SDK keeps the input
//! buffer and the returned document alive as the SPEC requires, turns failed host calls
//! into [`Error`]s carrying the host's Error document, and makes a fresh destination value
//! for every run (`open` ... `close`), so run state lives in the struct.
//!
//! Build (see plugins/plugins.mk): first the crate, then the plugin against it:
//!
//!   rustc --edition 2018 --crate-type rlib --crate-name sluice_sdk -C opt-level=3 \
//!     -C panic=abort -C codegen-units=1 --target wasm32-wasi -o libsluice_sdk.rlib sdk/rust/src/lib.rs
//!   rustc --edition 2018 --crate-type cdylib -C opt-level=3 -C lto -C panic=abort \
//!     -C strip=symbols -C codegen-units=1 --target wasm32-wasi \
//!     --extern sluice_sdk=libsluice_sdk.rlib -o plugin.wasm src/lib.rs
//!
//! JSON crossing the boundary is built with [`Json`] and read with the scanners
//! ([`scan_str`], [`scan_u64`]): enough for the documents the host sends (RFC 3339 times,
//! status names, numbers); a plugin that needs its config as a tree parses
//! [`OpenRequest::raw`] itself.

#![allow(clippy::missing_safety_doc)]

/// The raw host imports of SPEC section 6 (module `sluice_v1`, ABI 1.0). Native unit tests
/// (`rustc --test`) link the fake host of `mod fakehost` instead.
#[cfg(not(test))]
pub mod sys {
    #[link(wasm_import_module = "sluice_v1")]
    extern "C" {
        pub fn log(level: i32, ptr: *const u8, len: i32);
        pub fn log_enabled(level: i32) -> i32;
        pub fn metric(name_ptr: *const u8, name_len: i32, value: i64) -> i32;
        pub fn response_read(ptr: *mut u8, cap: i32) -> i64;
        pub fn batch_read(batch: i32, ptr: *mut u8, cap: i32) -> i64;
        pub fn upload_open(spec: *const u8, len: i32) -> i64;
        pub fn upload_write(upload: i32, ptr: *const u8, len: i32) -> i32;
        pub fn upload_bytes(upload: i32, out: *mut u64) -> i32;
        pub fn upload_commit(upload: i32) -> i64;
        pub fn upload_abort(upload: i32) -> i32;
        pub fn encoder_open(upload: i32, spec: *const u8, len: i32) -> i64;
        pub fn encoder_write(encoder: i32, batch: i32) -> i32;
        pub fn encoder_close(encoder: i32) -> i32;
    }

    extern "C" {
        /// Runs the static constructors of the Rust runtime (provided by wasm-ld).
        pub fn __wasm_call_ctors();
    }
}

#[cfg(test)]
pub use fakehost as sys;

/// A fake host for native unit tests: one response buffer, uploads that record their bytes.
#[cfg(test)]
pub mod fakehost {
    use std::cell::RefCell;
    thread_local! {
        pub static RESPONSE: RefCell<Vec<u8>> = RefCell::new(Vec::new());
        pub static STATUS: RefCell<u32> = RefCell::new(0);
        pub static WRITTEN: RefCell<Vec<u8>> = RefCell::new(Vec::new());
        pub static LOGS: RefCell<Vec<String>> = RefCell::new(Vec::new());
    }
    fn packed(st: u32, v: u32) -> i64 {
        (((st as u64) << 32) | v as u64) as i64
    }
    /// The next host call fails with `st`, leaving `doc` in the response buffer.
    pub fn fail_next(st: u32, doc: &[u8]) {
        STATUS.with(|s| *s.borrow_mut() = st);
        RESPONSE.with(|r| *r.borrow_mut() = doc.to_vec());
    }
    fn take_status() -> u32 {
        STATUS.with(|s| std::mem::replace(&mut *s.borrow_mut(), 0))
    }
    fn resp_len() -> u32 {
        RESPONSE.with(|r| r.borrow().len() as u32)
    }
    pub unsafe fn log(_level: i32, ptr: *const u8, len: i32) {
        let s = std::slice::from_raw_parts(ptr, len as usize);
        LOGS.with(|l| l.borrow_mut().push(String::from_utf8_lossy(s).into_owned()));
    }
    pub unsafe fn log_enabled(_level: i32) -> i32 {
        1
    }
    pub unsafe fn metric(_p: *const u8, _l: i32, _v: i64) -> i32 {
        take_status() as i32
    }
    pub unsafe fn response_read(ptr: *mut u8, cap: i32) -> i64 {
        RESPONSE.with(|r| {
            let r = r.borrow();
            if r.is_empty() {
                return packed(1, 0);
            }
            if (cap as usize) < r.len() {
                return packed(3, r.len() as u32);
            }
            std::ptr::copy_nonoverlapping(r.as_ptr(), ptr, r.len());
            packed(0, r.len() as u32)
        })
    }
    pub unsafe fn batch_read(_b: i32, _p: *mut u8, _c: i32) -> i64 {
        packed(1, 0)
    }
    pub unsafe fn upload_open(_p: *const u8, _l: i32) -> i64 {
        let st = take_status();
        packed(st, if st == 0 { 1 } else { resp_len() })
    }
    pub unsafe fn upload_write(_u: i32, ptr: *const u8, len: i32) -> i32 {
        let s = std::slice::from_raw_parts(ptr, len as usize);
        WRITTEN.with(|w| w.borrow_mut().extend_from_slice(s));
        take_status() as i32
    }
    pub unsafe fn upload_bytes(_u: i32, out: *mut u64) -> i32 {
        *out = WRITTEN.with(|w| w.borrow().len() as u64);
        0
    }
    pub unsafe fn upload_commit(_u: i32) -> i64 {
        let st = take_status();
        if st == 0 {
            let n = WRITTEN.with(|w| w.borrow().len());
            let doc = format!("{{\"key\":\"k.jsonl\",\"bytes\":{},\"etag\":\"e\"}}", n);
            RESPONSE.with(|r| *r.borrow_mut() = doc.into_bytes());
        }
        packed(st, resp_len())
    }
    pub unsafe fn upload_abort(_u: i32) -> i32 {
        0
    }
    pub unsafe fn encoder_open(_u: i32, _p: *const u8, _l: i32) -> i64 {
        let st = take_status();
        packed(st, if st == 0 { 2 } else { resp_len() })
    }
    pub unsafe fn encoder_write(_e: i32, _b: i32) -> i32 {
        take_status() as i32
    }
    pub unsafe fn encoder_close(_e: i32) -> i32 {
        0
    }
    pub unsafe fn __wasm_call_ctors() {}
}

/// Status names of SPEC section 4, by code.
pub const STATUS_NAMES: [&str; 11] = [
    "ok", "not_found", "bad_argument", "buffer_too_small", "denied", "limit_exceeded",
    "retryable_io", "fatal_io", "cancelled", "internal", "unimplemented",
];

/// The name of a status code; unknown codes are `internal` (SPEC section 4).
pub fn status_name(st: u32) -> &'static str {
    STATUS_NAMES.get(st as usize).copied().unwrap_or("internal")
}

/// Log levels (slog numbering).
pub const DEBUG: i32 = -4;
pub const INFO: i32 = 0;
pub const WARN: i32 = 4;
pub const ERROR: i32 = 8;

/// Writes a run log line at `level`.
pub fn log(level: i32, msg: &str) {
    unsafe { sys::log(level, msg.as_ptr(), msg.len() as i32) }
}

/// Whether the host keeps lines at `level`: check before formatting an expensive line.
pub fn log_enabled(level: i32) -> bool {
    unsafe { sys::log_enabled(level) != 0 }
}

/// Adds `value` to the run's counter `name` (`[a-z0-9_]{1,64}`).
pub fn metric(name: &str, value: i64) -> Result<(), Error> {
    let st = unsafe { sys::metric(name.as_ptr(), name.len() as i32, value) } as u32;
    check("metric", st)
}

// ---------------------------------------------------------------------------------------
// JSON

/// A small JSON writer over a byte vector (no allocation beyond the vector).
#[derive(Default)]
pub struct Json {
    pub buf: Vec<u8>,
}

impl Json {
    pub fn new() -> Json {
        Json { buf: Vec::new() }
    }
    /// Appends raw bytes (punctuation, a document already in JSON).
    pub fn raw(&mut self, s: &[u8]) -> &mut Json {
        self.buf.extend_from_slice(s);
        self
    }
    /// Appends s as a JSON string.
    pub fn str(&mut self, s: &[u8]) -> &mut Json {
        push_json_str(&mut self.buf, s);
        self
    }
    /// Appends an unsigned number.
    pub fn u64(&mut self, n: u64) -> &mut Json {
        push_u64(&mut self.buf, n);
        self
    }
    /// Appends `"key":` (after a comma unless the last byte opens an object).
    pub fn key(&mut self, k: &str) -> &mut Json {
        if let Some(&c) = self.buf.last() {
            if c != b'{' && c != b'[' {
                self.buf.push(b',');
            }
        }
        push_json_str(&mut self.buf, k.as_bytes());
        self.buf.push(b':');
        self
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Appends n in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends s as a JSON string (quotes, escapes for '"', '\\' and control characters).
pub fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(b"0123456789abcdef"[(c >> 4) as usize]);
                out.push(b"0123456789abcdef"[(c & 15) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

fn find_key(doc: &[u8], key: &str) -> Option<usize> {
    let mut pat = Vec::with_capacity(key.len() + 3);
    pat.push(b'"');
    pat.extend_from_slice(key.as_bytes());
    pat.extend_from_slice(b"\":");
    let at = doc.windows(pat.len()).position(|w| w == &pat[..])?;
    let mut i = at + pat.len();
    while i < doc.len() && (doc[i] == b' ' || doc[i] == b'\n' || doc[i] == b'\t') {
        i += 1;
    }
    Some(i)
}

/// Finds the first `"key":"` in a JSON document and returns the string value up to the next
/// quote. Enough for the RFC 3339 times, ids and status names the host sends (no escapes in
/// them); a value with an escape is not returned.
pub fn scan_str<'a>(doc: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let i = find_key(doc, key)?;
    if i >= doc.len() || doc[i] != b'"' {
        return None;
    }
    let start = i + 1;
    let end = start + doc[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
    if doc[end] == b'\\' {
        return None;
    }
    Some(&doc[start..end])
}

/// Finds the first `"key":` followed by an unsigned integer; 0 when there is none.
pub fn scan_u64(doc: &[u8], key: &str) -> u64 {
    let mut n = 0u64;
    if let Some(i) = find_key(doc, key) {
        for &c in doc[i..].iter() {
            if !(b'0'..=b'9').contains(&c) {
                break;
            }
            n = n.wrapping_mul(10).wrapping_add((c - b'0') as u64);
        }
    }
    n
}

// ---------------------------------------------------------------------------------------
// Errors

/// A failure returned from an export: SPEC section 7's Error. `status` is the name of the
/// host status that caused it; plugin errors say whether they are worth retrying with
/// [`Error::retryable`] (`retryable_io`) or [`Error::fatal`] (`fatal_io`), which
/// [`default_classify`] (and the host's log) read.
#[derive(Debug, Clone, Default)]
pub struct Error {
    pub message: String,
    pub status: Option<&'static str>,
    pub field: Option<String>,
    pub code: Option<String>,
    /// The host's own Error document for a failed host call, passed through verbatim.
    pub host_doc: Option<Vec<u8>>,
}

impl Error {
    /// A plugin error without a status (the default classifier retries it).
    pub fn new(msg: &str) -> Error {
        Error { message: msg.to_string(), ..Default::default() }
    }
    /// A destination fault worth retrying (status `retryable_io`), with a destination code.
    pub fn retryable(msg: &str, code: &str) -> Error {
        Error { message: msg.to_string(), status: Some("retryable_io"), code: opt(code), ..Default::default() }
    }
    /// A destination fault not worth retrying (status `fatal_io`), with a destination code.
    pub fn fatal(msg: &str, code: &str) -> Error {
        Error { message: msg.to_string(), status: Some("fatal_io"), code: opt(code), ..Default::default() }
    }
    /// A config key at fault (validate): status `bad_argument`, `field` set.
    pub fn field(field: &str, msg: &str) -> Error {
        Error { message: msg.to_string(), status: Some("bad_argument"), field: Some(field.to_string()), ..Default::default() }
    }
    /// The error of a failed host call: the host's Error document from the response buffer
    /// when there is one, else one naming the call and the status.
    pub fn host(op: &str, st: u32, len: u32) -> Error {
        let mut buf = vec![0u8; if len > 0 { len as usize } else { 4096 }];
        let r = unsafe { sys::response_read(buf.as_mut_ptr(), buf.len() as i32) } as u64;
        let mut e = Error { message: format!("{} failed: {}", op, status_name(st)), status: Some(status_name(st)), ..Default::default() };
        if (r >> 32) == 0 && (r as u32) > 0 {
            buf.truncate(r as u32 as usize);
            e.host_doc = Some(buf);
        }
        e
    }
    /// The Error document (section 7).
    pub fn to_json(&self) -> Vec<u8> {
        if let Some(doc) = &self.host_doc {
            return doc.clone();
        }
        let mut j = Json::new();
        j.raw(b"{").key("message").str(self.message.as_bytes());
        if let Some(st) = self.status {
            j.key("status").str(st.as_bytes());
        }
        if let Some(f) = &self.field {
            j.key("field").str(f.as_bytes());
        }
        if let Some(c) = &self.code {
            j.key("code").str(c.as_bytes());
        }
        j.raw(b"}");
        j.into_bytes()
    }
}

fn opt(s: &str) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s.to_string())
    }
}

/// Ok for status 0, else the host's error for `op`.
fn check(op: &str, st: u32) -> Result<(), Error> {
    if st == 0 {
        Ok(())
    } else {
        Err(Error::host(op, st, 0))
    }
}

/// Splits a packed `status << 32 | value` result.
fn unpack(op: &str, r: i64) -> Result<u32, Error> {
    let r = r as u64;
    let st = (r >> 32) as u32;
    if st != 0 {
        return Err(Error::host(op, st, r as u32));
    }
    Ok(r as u32)
}

// ---------------------------------------------------------------------------------------
// Uploads, encoders, batches

/// The host's answer to a commit (CommitInfo).
#[derive(Debug, Clone, Default)]
pub struct CommitInfo {
    pub key: Vec<u8>,
    pub bytes: u64,
}

/// An upload into the export's bound sink. Uploads not committed when the run closes are
/// aborted by the host.
pub struct Upload {
    handle: i32,
}

impl Upload {
    /// Opens an upload: `key` within the bound prefix, with a content type.
    pub fn open(key: &[u8], content_type: &str) -> Result<Upload, Error> {
        let mut j = Json::new();
        j.raw(b"{").key("key").str(key).key("content_type").str(content_type.as_bytes()).raw(b"}");
        Upload::open_spec(&j.buf)
    }
    /// Opens an upload from a whole UploadSpec document (section 7).
    pub fn open_spec(spec: &[u8]) -> Result<Upload, Error> {
        let h = unpack("upload_open", unsafe { sys::upload_open(spec.as_ptr(), spec.len() as i32) })?;
        Ok(Upload { handle: h as i32 })
    }
    pub fn handle(&self) -> i32 {
        self.handle
    }
    /// Appends raw bytes.
    pub fn write(&mut self, b: &[u8]) -> Result<(), Error> {
        check("upload_write", unsafe { sys::upload_write(self.handle, b.as_ptr(), b.len() as i32) } as u32)
    }
    /// Bytes received so far, after encoding and compression (split files on it).
    pub fn bytes(&self) -> Result<u64, Error> {
        let mut n = 0u64;
        check("upload_bytes", unsafe { sys::upload_bytes(self.handle, &mut n) } as u32)?;
        Ok(n)
    }
    /// Opens a host encoder on the upload from an EncoderSpec document, e.g.
    /// `{"format":"jsonl","compression":"gzip"}`.
    pub fn encoder(&mut self, spec: &[u8]) -> Result<Encoder, Error> {
        let h = unpack("encoder_open", unsafe { sys::encoder_open(self.handle, spec.as_ptr(), spec.len() as i32) })?;
        Ok(Encoder { handle: h as i32 })
    }
    /// Completes the upload (closing its encoder). The upload is gone afterwards, committed
    /// or, on failure, aborted.
    pub fn commit(self) -> Result<CommitInfo, Error> {
        let n = unpack("upload_commit", unsafe { sys::upload_commit(self.handle) })?;
        let mut doc = vec![0u8; (n as usize).max(1)];
        let got = unpack("response_read", unsafe { sys::response_read(doc.as_mut_ptr(), doc.len() as i32) })?;
        doc.truncate(got as usize);
        Ok(CommitInfo { key: scan_str(&doc, "key").unwrap_or(b"").to_vec(), bytes: scan_u64(&doc, "bytes") })
    }
    /// Removes every trace of the upload.
    pub fn abort(self) {
        unsafe { sys::upload_abort(self.handle) };
    }
}

/// A host-native streaming encoder (jsonl, parquet, csv with a compression).
pub struct Encoder {
    handle: i32,
}

impl Encoder {
    /// Encodes the whole batch on the host: no record enters the guest.
    pub fn write(&mut self, b: &Batch) -> Result<(), Error> {
        check("encoder_write", unsafe { sys::encoder_write(self.handle, b.handle) } as u32)
    }
    /// Writes the format's footer; the upload stays open.
    pub fn close(self) -> Result<(), Error> {
        check("encoder_close", unsafe { sys::encoder_close(self.handle) } as u32)
    }
}

/// One batch of a run, valid only during `write_batch`.
pub struct Batch {
    pub handle: i32,
    pub records: u32,
}

impl Batch {
    /// Copies the batch's SLB1 bytes into the guest (section 8).
    pub fn read(&self) -> Result<Vec<u8>, Error> {
        let r = unsafe { sys::batch_read(self.handle, core::ptr::null_mut(), 0) } as u64;
        let st = (r >> 32) as u32;
        if st != 3 && st != 0 {
            return Err(Error::host("batch_read", st, r as u32));
        }
        let mut buf = vec![0u8; (r as u32 as usize).max(1)];
        let n = unpack("batch_read", unsafe { sys::batch_read(self.handle, buf.as_mut_ptr(), buf.len() as i32) })?;
        buf.truncate(n as usize);
        Ok(buf)
    }
}

// ---------------------------------------------------------------------------------------
// SLB1 decoding (SPEC section 8), for plugins that process records themselves

/// The SLB1 batch decoder: `Batch::read()` copies a batch in, `slb1::Reader` walks it.
///
/// ```ignore
/// let bytes = batch.read()?;
/// let mut r = slb1::Reader::new(&bytes).map_err(|e| Error::new(&e))?;
/// let mut row = Vec::new();
/// while r.next_row(&mut row).map_err(|e| Error::new(&e))? {
///     if let slb1::Value::Str(event) = row[1] { ... }
/// }
/// ```
pub mod slb1 {
    pub const STRING: u8 = 1;
    pub const JSON: u8 = 2;
    pub const INT64: u8 = 3;
    pub const TIMESTAMP: u8 = 4;
    pub const UUID: u8 = 5;
    pub const FLOAT64: u8 = 6;
    pub const BOOL: u8 = 7;

    #[derive(Debug, Clone, PartialEq)]
    pub struct Column {
        pub name: String,
        pub kind: u8,
        pub nullable: bool,
    }

    /// One value of a row; strings and json borrow the batch's bytes.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Value<'a> {
        Null,
        Str(&'a [u8]),
        Json(&'a [u8]),
        Int(i64),
        /// Microseconds since 1970-01-01T00:00:00Z.
        Timestamp(i64),
        Uuid(&'a [u8]),
        Float(f64),
        Bool(bool),
    }

    /// Reads a batch row by row, refusing every must-reject rule of SPEC section 8.
    pub struct Reader<'a> {
        b: &'a [u8],
        pos: usize,
        pub columns: Vec<Column>,
        /// The row count the header declares.
        pub count: u32,
        row: u32,
    }

    fn err<T>(what: &str, at: usize) -> Result<T, String> {
        Err(format!("malformed SLB1 batch: {} at byte {}", what, at))
    }

    impl<'a> Reader<'a> {
        pub fn new(b: &'a [u8]) -> Result<Reader<'a>, String> {
            if b.len() < 12 || &b[..4] != b"SLB1" {
                return err("not an SLB1 batch (wrong magic)", 0);
            }
            let u32le = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let mut r = Reader { b, pos: 12, columns: Vec::new(), count: u32le(4), row: 0 };
            if u32le(8) != 0 {
                return err("flags are not 0", 8);
            }
            let n = r.uvarint()?;
            if n == 0 || n > 1024 {
                return err("column count not in 1..1024", 12);
            }
            for _ in 0..n {
                let l = r.uvarint()? as usize;
                if l == 0 || l > 256 {
                    return err("column name length not in 1..256", r.pos);
                }
                if r.pos + l + 1 > b.len() {
                    return err("column name past the end", r.pos);
                }
                let name = match std::str::from_utf8(&b[r.pos..r.pos + l]) {
                    Ok(s) => s.to_string(),
                    Err(_) => return err("column name is not UTF-8", r.pos),
                };
                r.pos += l;
                let t = b[r.pos];
                r.pos += 1;
                let kind = t & 0x7f;
                if !(1..=7).contains(&kind) {
                    return err("unknown column kind", r.pos - 1);
                }
                r.columns.push(Column { name, kind, nullable: t & 0x80 != 0 });
            }
            if (r.count as u64) * n > (b.len() - r.pos) as u64 {
                return err("row count cannot fit in the batch", 4);
            }
            Ok(r)
        }

        fn uvarint(&mut self) -> Result<u64, String> {
            let mut x = 0u64;
            for i in 0..10 {
                if self.pos >= self.b.len() {
                    return err("uvarint past the end", self.pos);
                }
                let c = self.b[self.pos];
                self.pos += 1;
                if i == 9 && c > 1 {
                    return err("uvarint overflows 64 bits", self.pos - 1);
                }
                x |= ((c & 0x7f) as u64) << (7 * i);
                if c < 0x80 {
                    return Ok(x);
                }
            }
            err("uvarint longer than 10 bytes", self.pos)
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if n > self.b.len() - self.pos {
                return err("value past the end", self.pos);
            }
            let s = &self.b[self.pos..self.pos + n];
            self.pos += n;
            Ok(s)
        }

        /// Decodes the next row into `row` (one value per column). Ok(false) after the
        /// last row, once the batch is known to have no trailing bytes.
        pub fn next_row(&mut self, row: &mut Vec<Value<'a>>) -> Result<bool, String> {
            if self.row == self.count {
                if self.pos != self.b.len() {
                    return err("trailing bytes after the last row", self.pos);
                }
                return Ok(false);
            }
            row.clear();
            for c in 0..self.columns.len() {
                let (kind, nullable) = (self.columns[c].kind, self.columns[c].nullable);
                if nullable {
                    match self.take(1)?[0] {
                        0 => {
                            row.push(Value::Null);
                            continue;
                        }
                        1 => {}
                        _ => return err("presence byte is not 0 or 1", self.pos - 1),
                    }
                }
                let v = match kind {
                    STRING | JSON => {
                        let l = self.uvarint()?;
                        if l > (self.b.len() - self.pos) as u64 {
                            return err("string past the end", self.pos);
                        }
                        let s = self.take(l as usize)?;
                        if kind == STRING {
                            Value::Str(s)
                        } else {
                            Value::Json(s)
                        }
                    }
                    INT64 | TIMESTAMP => {
                        let z = self.uvarint()?;
                        let n = (z >> 1) as i64 ^ -((z & 1) as i64);
                        if kind == INT64 {
                            Value::Int(n)
                        } else {
                            Value::Timestamp(n)
                        }
                    }
                    UUID => Value::Uuid(self.take(16)?),
                    FLOAT64 => {
                        let s = self.take(8)?;
                        let mut a = [0u8; 8];
                        a.copy_from_slice(s);
                        Value::Float(f64::from_le_bytes(a))
                    }
                    _ => match self.take(1)?[0] {
                        0 => Value::Bool(false),
                        1 => Value::Bool(true),
                        _ => return err("bool byte is not 0 or 1", self.pos - 1),
                    },
                };
                row.push(v);
            }
            self.row += 1;
            Ok(true)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Control messages

/// The OpenRequest of a run: the raw document and the fields every plugin reads.
pub struct OpenRequest<'a> {
    pub raw: &'a [u8],
    pub run_id: &'a [u8],
    pub interval_start: &'a [u8],
    pub interval_end: &'a [u8],
    pub attempt: u64,
    pub generation: u64,
}

impl<'a> OpenRequest<'a> {
    /// Reads the fields; the interval is required.
    pub fn parse(raw: &'a [u8]) -> Result<OpenRequest<'a>, Error> {
        let (s, e) = match (scan_str(raw, "interval_start"), scan_str(raw, "interval_end")) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(Error::new("open: interval_start or interval_end missing")),
        };
        Ok(OpenRequest {
            raw,
            run_id: scan_str(raw, "run_id").unwrap_or(b""),
            interval_start: s,
            interval_end: e,
            attempt: scan_u64(raw, "attempt"),
            generation: scan_u64(raw, "generation"),
        })
    }
    /// A string config value (the first `"key":"..."` of the document; config keys are
    /// the manifest's field names, distinct from the OpenRequest's own keys).
    pub fn config_str(&self, key: &str) -> Option<&'a [u8]> {
        let at = find_key(self.raw, "config")?;
        scan_str(&self.raw[at..], key)
    }
}

/// One output of a run (Result.outputs).
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub kind: &'static str,
    pub name: Vec<u8>,
    pub records: u64,
    pub bytes: u64,
}

/// A run's Result (section 7).
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub records: u64,
    pub bytes: u64,
    pub outputs: Vec<Output>,
}

impl RunResult {
    pub fn to_json(&self) -> Vec<u8> {
        let mut j = Json::new();
        j.raw(b"{").key("records").u64(self.records).key("bytes").u64(self.bytes).key("outputs").raw(b"[");
        for (i, o) in self.outputs.iter().enumerate() {
            if i > 0 {
                j.raw(b",");
            }
            j.raw(b"{").key("kind").str(o.kind.as_bytes()).key("name").str(&o.name);
            j.key("records").u64(o.records).key("bytes").u64(o.bytes).raw(b"}");
        }
        j.raw(b"]}");
        j.into_bytes()
    }
}

/// A failure to classify: the Error's status and code, the attempt.
pub struct ClassifyRequest<'a> {
    pub raw: &'a [u8],
    pub status: Option<&'a [u8]>,
    pub code: Option<&'a [u8]>,
    pub attempt: u64,
}

/// What to do with a failed run.
pub enum Classification {
    Retry(String),
    RetryAfter(u64, String),
    Fail(String),
}

impl Classification {
    pub fn to_json(&self) -> Vec<u8> {
        let mut j = Json::new();
        j.raw(b"{");
        match self {
            Classification::Retry(r) => j.key("outcome").str(b"retry").key("reason").str(r.as_bytes()),
            Classification::RetryAfter(ms, r) => j.key("outcome").str(b"retry_after").key("retry_after_ms").u64(*ms).key("reason").str(r.as_bytes()),
            Classification::Fail(r) => j.key("outcome").str(b"fail").key("reason").str(r.as_bytes()),
        };
        j.raw(b"}");
        j.into_bytes()
    }
}

/// PostHog-like defaults (as the Go SDK's DefaultClassify): host statuses that retrying
/// cannot fix fail the run; the rest (retryable_io, cancelled, internal, unknown statuses,
/// plugin errors without a status) is retried.
pub fn default_classify(req: &ClassifyRequest) -> Classification {
    match req.status {
        Some(st @ (b"fatal_io" | b"denied" | b"bad_argument" | b"not_found" | b"limit_exceeded" | b"unimplemented")) => {
            Classification::Fail(format!("non-retryable status {}", String::from_utf8_lossy(st)))
        }
        Some(st) => Classification::Retry(format!("retryable status {}", String::from_utf8_lossy(st))),
        None => Classification::Retry("plugin error".to_string()),
    }
}

// ---------------------------------------------------------------------------------------
// The destination and the exports

/// What a plugin implements. A fresh value (`Default`) serves each run, from `open` to
/// `close`; validate and classify get a fresh value too.
pub trait Destination: Default {
    /// The manifest document (section 7), a constant: `sluice_describe` is pure.
    const MANIFEST: &'static str;
    /// Checks the non-secret config (the ValidateRequest document) after the host's schema
    /// check; return [`Error::field`] to name the key at fault.
    fn validate(&mut self, _req: &[u8]) -> Result<(), Error> {
        Ok(())
    }
    fn open(&mut self, req: &OpenRequest) -> Result<(), Error>;
    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error>;
    fn finish(&mut self) -> Result<RunResult, Error>;
    /// Must not call host imports other than log, log_enabled and metric.
    fn classify(&mut self, req: &ClassifyRequest) -> Classification {
        default_classify(req)
    }
    /// Ends the run whatever happened; the host aborts uploads left open.
    fn close(&mut self) {}
}

/// The SDK's per-instance buffers. One instance serves one call at a time (SPEC section
/// 10), so plain statics are enough; they are only touched inside exports.
struct Buffers {
    input: Vec<u8>,  // the buffer handed out by sluice_alloc, reused
    output: Vec<u8>, // the last result document, kept until the next export
}

static mut BUFFERS: Buffers = Buffers { input: Vec::new(), output: Vec::new() };

fn buffers() -> &'static mut Buffers {
    unsafe { &mut BUFFERS }
}

/// The implementation behind [`export_plugin!`]; not for direct use.
#[doc(hidden)]
pub mod rt {
    use super::*;

    fn pack(doc: &[u8]) -> i64 {
        if doc.is_empty() {
            return 0;
        }
        (((doc.as_ptr() as u32 as u64) << 32) | doc.len() as u64) as i64
    }

    fn output(doc: Vec<u8>) -> i64 {
        let b = buffers();
        b.output = doc;
        pack(&b.output)
    }

    fn error(e: &Error) -> i64 {
        let mut doc = b"{\"error\":".to_vec();
        doc.extend_from_slice(&e.to_json());
        doc.push(b'}');
        output(doc)
    }

    fn done(r: Result<(), Error>) -> i64 {
        match r {
            Ok(()) => output(Vec::new()),
            Err(e) => error(&e),
        }
    }

    /// The input document the host wrote at (ptr, len): only the buffer sluice_alloc gave.
    pub fn input(ptr: i32, len: i32) -> &'static [u8] {
        let b = buffers();
        if len <= 0 || b.input.is_empty() || ptr as usize != b.input.as_ptr() as usize {
            return &[];
        }
        &b.input[..(len as usize).min(b.input.len())]
    }

    pub fn initialize() {
        unsafe { sys::__wasm_call_ctors() }
    }

    /// One input buffer at a time (the host allocates right before each export call): the
    /// buffer is reused, grown when needed.
    pub fn alloc(size: i32) -> i32 {
        let b = buffers();
        let size = size.max(1) as usize;
        if b.input.capacity() < size {
            b.input = Vec::with_capacity(size);
        }
        // SAFETY: u8 has no invalid values; the host overwrites the bytes.
        unsafe { b.input.set_len(size) };
        b.input.as_mut_ptr() as i32
    }

    pub fn describe<D: Destination>() -> i64 {
        pack(D::MANIFEST.as_bytes())
    }

    pub fn validate<D: Destination>(ptr: i32, len: i32) -> i64 {
        done(D::default().validate(input(ptr, len)))
    }

    /// Set when a write_batch of the open run failed: finish then fails too (the run misses
    /// a batch; the host never calls finish after a failed write, and a plugin must not
    /// succeed if one does). The instance runs one call at a time.
    static mut WRITE_FAILED: bool = false;

    pub fn open<D: Destination>(slot: &mut Option<D>, ptr: i32, len: i32) -> i64 {
        unsafe { WRITE_FAILED = false };
        let mut d = D::default();
        let r = OpenRequest::parse(input(ptr, len)).and_then(|req| d.open(&req));
        *slot = Some(d);
        done(r)
    }

    pub fn write_batch<D: Destination>(slot: &mut Option<D>, batch: i32, records: i32) -> i64 {
        match slot {
            Some(d) => {
                let r = d.write_batch(&Batch { handle: batch, records: records as u32 });
                if r.is_err() {
                    unsafe { WRITE_FAILED = true };
                }
                done(r)
            }
            None => error(&Error::new("sluice_write_batch before sluice_open")),
        }
    }

    pub fn finish<D: Destination>(slot: &mut Option<D>) -> i64 {
        if unsafe { WRITE_FAILED } {
            return error(&Error::new("sluice_finish after a failed sluice_write_batch: the run misses a batch"));
        }
        match slot {
            Some(d) => match d.finish() {
                Ok(res) => output(res.to_json()),
                Err(e) => error(&e),
            },
            None => error(&Error::new("sluice_finish before sluice_open")),
        }
    }

    pub fn classify<D: Destination>(slot: &mut Option<D>, ptr: i32, len: i32) -> i64 {
        let raw = input(ptr, len);
        let err = find_key(raw, "error").map(|i| &raw[i..]).unwrap_or(b"");
        let req = ClassifyRequest { raw, status: scan_str(err, "status"), code: scan_str(err, "code"), attempt: scan_u64(raw, "attempt") };
        let c = match slot {
            Some(d) => d.classify(&req),
            None => D::default().classify(&req),
        };
        output(c.to_json())
    }

    pub fn close<D: Destination>(slot: &mut Option<D>) -> i64 {
        unsafe { WRITE_FAILED = false };
        if let Some(mut d) = slot.take() {
            d.close();
        }
        output(Vec::new())
    }
}

/// Defines every export of SPEC section 5 for the destination type `$t` (ABI 1.0 marker).
/// Call it once, at the top level of the plugin crate.
#[macro_export]
macro_rules! export_plugin {
    ($t:ty) => {
        static mut SLUICE_DEST: Option<$t> = None;

        /// The WASI reactor entry point. Defining it (and calling the constructors from it)
        /// makes wasm-ld link a reactor: without it, a wasm32-wasi cdylib is a "command"
        /// whose every export is wrapped to run the constructors and destructors.
        #[no_mangle]
        pub extern "C" fn _initialize() {
            $crate::rt::initialize()
        }
        #[no_mangle]
        pub extern "C" fn sluice_abi_v1_0() {}
        #[no_mangle]
        pub extern "C" fn sluice_alloc(size: i32) -> i32 {
            $crate::rt::alloc(size)
        }
        #[no_mangle]
        pub extern "C" fn sluice_describe() -> i64 {
            $crate::rt::describe::<$t>()
        }
        #[no_mangle]
        pub extern "C" fn sluice_validate(ptr: i32, len: i32) -> i64 {
            $crate::rt::validate::<$t>(ptr, len)
        }
        #[no_mangle]
        pub extern "C" fn sluice_open(ptr: i32, len: i32) -> i64 {
            $crate::rt::open::<$t>(unsafe { &mut SLUICE_DEST }, ptr, len)
        }
        #[no_mangle]
        pub extern "C" fn sluice_write_batch(batch: i32, records: i32) -> i64 {
            $crate::rt::write_batch::<$t>(unsafe { &mut SLUICE_DEST }, batch, records)
        }
        #[no_mangle]
        pub extern "C" fn sluice_finish() -> i64 {
            $crate::rt::finish::<$t>(unsafe { &mut SLUICE_DEST })
        }
        #[no_mangle]
        pub extern "C" fn sluice_classify(ptr: i32, len: i32) -> i64 {
            $crate::rt::classify::<$t>(unsafe { &mut SLUICE_DEST }, ptr, len)
        }
        #[no_mangle]
        pub extern "C" fn sluice_close() -> i64 {
            $crate::rt::close::<$t>(unsafe { &mut SLUICE_DEST })
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        push_json_str(&mut out, b"a\"b\\c\n\x01");
        assert_eq!(out, br#""a\"b\\c\u000a\u0001""#.to_vec());
        let mut j = Json::new();
        j.raw(b"{").key("n").u64(0).key("s").str(b"x").raw(b"}");
        assert_eq!(j.buf, br#"{"n":0,"s":"x"}"#.to_vec());
    }

    #[test]
    fn scanners() {
        let doc = br#"{"run_id": "r1", "attempt":3, "config":{"bucket_name":"b\"q","run_id":"no"}}"#;
        assert_eq!(scan_str(doc, "run_id"), Some(&b"r1"[..]));
        assert_eq!(scan_u64(doc, "attempt"), 3);
        assert_eq!(scan_u64(doc, "missing"), 0);
        assert_eq!(scan_str(doc, "bucket_name"), None); // an escape: not returned
        let req = OpenRequest::parse(br#"{"interval_start":"a","interval_end":"b","config":{"region":"eu"}}"#).unwrap();
        assert_eq!(req.config_str("region"), Some(&b"eu"[..]));
        assert!(OpenRequest::parse(b"{}").is_err());
    }

    #[test]
    fn typed_errors() {
        assert_eq!(Error::retryable("slow", "SlowDown").to_json(), br#"{"message":"slow","status":"retryable_io","code":"SlowDown"}"#.to_vec());
        assert_eq!(Error::fatal("no", "").to_json(), br#"{"message":"no","status":"fatal_io"}"#.to_vec());
        assert_eq!(Error::field("bucket_name", "bad").to_json(), br#"{"message":"bad","status":"bad_argument","field":"bucket_name"}"#.to_vec());
        assert_eq!(Error::new("x").to_json(), br#"{"message":"x"}"#.to_vec());
    }

    #[test]
    fn host_errors_pass_the_document_through() {
        let doc = br#"{"message":"NoSuchBucket: gone","status":"fatal_io","code":"NoSuchBucket"}"#;
        fakehost::fail_next(7, doc);
        let e = Upload::open(b"k", "text/plain").err().unwrap();
        assert_eq!(e.status, Some("fatal_io"));
        assert_eq!(e.to_json(), doc.to_vec());
        // No document: one naming the call.
        fakehost::fail_next(0, b"");
        let mut up = Upload::open(b"k", "t").unwrap();
        fakehost::fail_next(6, b"");
        let e = up.write(b"x").err().unwrap();
        assert_eq!(e.to_json(), br#"{"message":"upload_write failed: retryable_io","status":"retryable_io"}"#.to_vec());
    }

    #[test]
    fn commit_reads_commit_info() {
        fakehost::WRITTEN.with(|w| w.borrow_mut().clear());
        let mut up = Upload::open(b"k", "t").unwrap();
        up.write(b"hello\n").unwrap();
        assert_eq!(up.bytes().unwrap(), 6);
        let ci = up.commit().unwrap();
        assert_eq!((ci.key, ci.bytes), (b"k.jsonl".to_vec(), 6));
    }

    #[test]
    fn default_classification() {
        let req = |st: Option<&'static [u8]>| ClassifyRequest { raw: b"", status: st, code: None, attempt: 1 };
        for (st, fail) in [(Some(&b"fatal_io"[..]), true), (Some(&b"denied"[..]), true), (Some(&b"retryable_io"[..]), false),
            (Some(&b"internal"[..]), false), (Some(&b"whatever"[..]), false), (None, false)] {
            let got = matches!(default_classify(&req(st)), Classification::Fail(_));
            assert_eq!(got, fail, "{:?}", st.map(|s| String::from_utf8_lossy(s).into_owned()));
        }
        assert_eq!(Classification::RetryAfter(5, "r".into()).to_json(), br#"{"outcome":"retry_after","retry_after_ms":5,"reason":"r"}"#.to_vec());
    }

    #[test]
    fn result_json() {
        let r = RunResult { records: 2, bytes: 9, outputs: vec![Output { kind: "object", name: b"k".to_vec(), records: 2, bytes: 9 }] };
        assert_eq!(r.to_json(), br#"{"records":2,"bytes":9,"outputs":[{"kind":"object","name":"k","records":2,"bytes":9}]}"#.to_vec());
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // SPEC section 8's worked example (abi/testdata/minimal.hex).
    const MINIMAL: &str = "534c4231020000000000000002016e030173810301026869d80400";

    fn minimal() -> Vec<u8> {
        unhex(&MINIMAL.replace(' ', ""))
    }

    #[test]
    fn slb1_worked_example() {
        let b = minimal();
        let mut r = slb1::Reader::new(&b).unwrap();
        assert_eq!(r.columns, vec![
            slb1::Column { name: "n".into(), kind: slb1::INT64, nullable: false },
            slb1::Column { name: "s".into(), kind: slb1::STRING, nullable: true },
        ]);
        let mut row = Vec::new();
        assert!(r.next_row(&mut row).unwrap());
        assert_eq!(row, vec![slb1::Value::Int(-2), slb1::Value::Str(b"hi")]);
        assert!(r.next_row(&mut row).unwrap());
        assert_eq!(row, vec![slb1::Value::Int(300), slb1::Value::Null]);
        assert!(!r.next_row(&mut row).unwrap());
    }

    #[test]
    fn slb1_must_reject() {
        let m = minimal();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = m.clone();
            f(&mut b);
            b
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("wrong magic", with(&|b| b[0] = b'T')),
            ("flags", with(&|b| b[8] = 1)),
            ("zero columns", with(&|b| b[12] = 0)),
            ("1025 columns", with(&|b| {
                b[12] = 0x81;
                b.insert(13, 0x08)
            })),
            ("empty name", with(&|b| b[13] = 0)),
            ("non-UTF-8 name", with(&|b| b[14] = 0xff)),
            ("unknown kind", with(&|b| b[15] = 0x08)),
            ("length past the end", with(&|b| b[21] = 0x7f)),
            ("presence byte 2", with(&|b| b[20] = 2)),
            ("bool byte 2", unhex("534c4231010000000000000001016207 02".replace(' ', "").as_str())),
            ("count cannot fit", with(&|b| {
                b[4] = 0xe8;
                b[5] = 0x03
            })),
            ("trailing bytes", with(&|b| b.push(0))),
            ("truncated", with(&|b| b.truncate(b.len() - 2))),
        ];
        for (name, b) in cases {
            let ok = match slb1::Reader::new(&b) {
                Err(_) => false,
                Ok(mut r) => {
                    let mut row = Vec::new();
                    loop {
                        match r.next_row(&mut row) {
                            Ok(true) => continue,
                            Ok(false) => break true,
                            Err(_) => break false,
                        }
                    }
                }
            };
            assert!(!ok, "{}: accepted", name);
        }
    }
}
