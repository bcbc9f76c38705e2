//! rust-jsonl: a minimal Sluice destination plugin written from abi/SPEC.md alone, with no
//! crates. It writes each run's events into one JSON Lines object named after the run's
//! interval (`{interval_start}-{interval_end}.jsonl`, so a retry overwrites it), through the
//! host's native encoder: encoder_write gets the batch handle, no record enters the guest.
//!
//! Build (Debian's rustc with libstd-rust-dev-wasm32; rustup's rustc cannot add targets):
//!
//!   /usr/bin/rustc --edition 2018 --crate-type cdylib -C opt-level=3 -C lto -C panic=abort \
//!     -C strip=symbols --target wasm32-wasi -o bin/plugins/rust-jsonl.wasm plugins/rust-jsonl/src/lib.rs
//!
//! Everything crossing the boundary is JSON text built or scanned by hand: the manifest is a
//! constant, the two times are cut out of the OpenRequest, and host Error documents are
//! passed through verbatim inside {"error": ...}.

#![allow(clippy::missing_safety_doc)]

#[link(wasm_import_module = "sluice_v1")]
extern "C" {
    fn log(level: i32, ptr: *const u8, len: i32);
    fn response_read(ptr: *mut u8, cap: i32) -> i64;
    fn upload_open(spec: *const u8, len: i32) -> i64;
    fn upload_commit(upload: i32) -> i64;
    fn upload_abort(upload: i32) -> i32;
    fn encoder_open(upload: i32, spec: *const u8, len: i32) -> i64;
    fn encoder_write(encoder: i32, batch: i32) -> i32;
}

const MANIFEST: &str = concat!(
    r#"{"name":"rust-jsonl","version":"0.1.0","abi_version":"1.0","#,
    r#""description":"Minimal JSON Lines destination in Rust (host encoder route)","#,
    r#""capabilities":["object"],"formats":["jsonl"],"config":["#,
    r#"{"name":"bucket_name","type":"string","required":true,"binding":"object.bucket","description":"Bucket or local directory name."},"#,
    r#"{"name":"endpoint_url","type":"string","binding":"object.endpoint_url"},"#,
    r#"{"name":"region","type":"string","binding":"object.region"},"#,
    r#"{"name":"aws_access_key_id","type":"string","secret":true,"binding":"object.access_key_id"},"#,
    r#"{"name":"aws_secret_access_key","type":"string","secret":true,"binding":"object.secret_access_key"}"#,
    r#"]}"#
);

const STATUS_NAMES: [&str; 11] = [
    "ok", "not_found", "bad_argument", "buffer_too_small", "denied", "limit_exceeded",
    "retryable_io", "fatal_io", "cancelled", "internal", "unimplemented",
];

/// Run state. One instance serves one call at a time (SPEC section 10), so plain statics
/// are enough; they are only touched inside exports.
struct State {
    input: Vec<u8>,  // the buffer handed out by sluice_alloc, reused
    output: Vec<u8>, // the last result document, kept until the next export
    upload: i32,     // -1: none
    encoder: i32,
    key: Vec<u8>,
    records: u64,
}

static mut STATE: State = State {
    input: Vec::new(),
    output: Vec::new(),
    upload: -1,
    encoder: -1,
    key: Vec::new(),
    records: 0,
};

fn state() -> &'static mut State {
    unsafe { &mut STATE }
}

fn status_name(st: u32) -> &'static str {
    STATUS_NAMES.get(st as usize).copied().unwrap_or("internal")
}

/// Packs the output document: ptr << 32 | len.
fn pack(doc: &[u8]) -> i64 {
    if doc.is_empty() {
        return 0;
    }
    (((doc.as_ptr() as u32 as u64) << 32) | doc.len() as u64) as i64
}

fn set_output(doc: Vec<u8>) -> i64 {
    let s = state();
    s.output = doc;
    pack(&s.output)
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
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
fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
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

/// The error document of a failed host call: the host's Error document from the response
/// buffer wrapped in {"error": ...}, or a built one if there is none.
fn host_error(op: &str, st: u32, len: u32) -> i64 {
    let mut doc = b"{\"error\":".to_vec();
    let mut buf = vec![0u8; if len > 0 { len as usize } else { 4096 }];
    let r = unsafe { response_read(buf.as_mut_ptr(), buf.len() as i32) } as u64;
    if (r >> 32) == 0 && (r as u32) > 0 {
        doc.extend_from_slice(&buf[..r as u32 as usize]);
    } else {
        doc.extend_from_slice(b"{\"message\":");
        let mut msg = op.as_bytes().to_vec();
        msg.extend_from_slice(b" failed: ");
        msg.extend_from_slice(status_name(st).as_bytes());
        push_json_str(&mut doc, &msg);
        doc.extend_from_slice(b",\"status\":");
        push_json_str(&mut doc, status_name(st).as_bytes());
        doc.push(b'}');
    }
    doc.push(b'}');
    set_output(doc)
}

fn plugin_error(msg: &str) -> i64 {
    let mut doc = b"{\"error\":{\"message\":".to_vec();
    push_json_str(&mut doc, msg.as_bytes());
    doc.extend_from_slice(b"}}");
    set_output(doc)
}

fn info(msg: &str) {
    unsafe { log(0, msg.as_ptr(), msg.len() as i32) }
}

/// Finds `"key":"` in a JSON document and returns the string value up to the next quote.
/// Enough for the RFC 3339 times and status names the host sends (no escapes in them).
fn scan_str<'a>(doc: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut pat = Vec::with_capacity(key.len() + 4);
    pat.push(b'"');
    pat.extend_from_slice(key.as_bytes());
    pat.extend_from_slice(b"\":");
    let at = doc.windows(pat.len()).position(|w| w == &pat[..])?;
    let mut i = at + pat.len();
    while i < doc.len() && doc[i] == b' ' {
        i += 1;
    }
    if i >= doc.len() || doc[i] != b'"' {
        return None;
    }
    let start = i + 1;
    let end = start + doc[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
    Some(&doc[start..end])
}

/// Finds `"key":` followed by an unsigned integer.
fn scan_u64(doc: &[u8], key: &str) -> u64 {
    let mut pat = Vec::with_capacity(key.len() + 3);
    pat.push(b'"');
    pat.extend_from_slice(key.as_bytes());
    pat.extend_from_slice(b"\":");
    let mut n = 0u64;
    if let Some(at) = doc.windows(pat.len()).position(|w| w == &pat[..]) {
        for &c in doc[at + pat.len()..].iter().skip_while(|&&c| c == b' ') {
            if !(b'0'..=b'9').contains(&c) {
                break;
            }
            n = n * 10 + (c - b'0') as u64;
        }
    }
    n
}

fn input(ptr: i32, len: i32) -> &'static [u8] {
    let s = state();
    if len <= 0 || s.input.is_empty() || ptr as usize != s.input.as_ptr() as usize {
        return &[];
    }
    &s.input[..(len as usize).min(s.input.len())]
}

extern "C" {
    /// Runs the static constructors of the Rust runtime (provided by wasm-ld).
    fn __wasm_call_ctors();
}

/// The WASI reactor entry point. Defining it (and calling the constructors from it) makes
/// wasm-ld link a reactor: without it, a wasm32-wasi cdylib is a "command" whose every
/// export is wrapped to run the constructors and destructors around each call.
#[no_mangle]
pub extern "C" fn _initialize() {
    unsafe { __wasm_call_ctors() }
}

#[no_mangle]
pub extern "C" fn sluice_abi_v1_0() {}

/// One input buffer at a time (the host allocates right before each export call): the
/// buffer is reused, grown when needed.
#[no_mangle]
pub extern "C" fn sluice_alloc(size: i32) -> i32 {
    let s = state();
    let size = size.max(1) as usize;
    if s.input.capacity() < size {
        s.input = Vec::with_capacity(size);
    }
    // SAFETY: u8 has no invalid values; the host overwrites the bytes.
    unsafe { s.input.set_len(size) };
    s.input.as_mut_ptr() as i32
}

#[no_mangle]
pub extern "C" fn sluice_describe() -> i64 {
    pack(MANIFEST.as_bytes())
}

#[no_mangle]
pub extern "C" fn sluice_validate(_ptr: i32, _len: i32) -> i64 {
    0 // the host's schema check is all this plugin needs
}

#[no_mangle]
pub extern "C" fn sluice_open(ptr: i32, len: i32) -> i64 {
    let req = input(ptr, len);
    let (start, end) = match (scan_str(req, "interval_start"), scan_str(req, "interval_end")) {
        (Some(a), Some(b)) => (a.to_vec(), b.to_vec()),
        _ => return plugin_error("rust-jsonl: open: interval_start or interval_end missing"),
    };
    let s = state();
    s.records = 0;
    s.key = start;
    s.key.push(b'-');
    s.key.extend_from_slice(&end);
    s.key.extend_from_slice(b".jsonl");

    let mut spec = b"{\"key\":".to_vec();
    push_json_str(&mut spec, &s.key);
    spec.extend_from_slice(b",\"content_type\":\"application/jsonl\"}");
    let r = unsafe { upload_open(spec.as_ptr(), spec.len() as i32) } as u64;
    if (r >> 32) != 0 {
        return host_error("upload_open", (r >> 32) as u32, r as u32);
    }
    s.upload = r as u32 as i32;

    let enc = b"{\"format\":\"jsonl\"}";
    let r = unsafe { encoder_open(s.upload, enc.as_ptr(), enc.len() as i32) } as u64;
    if (r >> 32) != 0 {
        return host_error("encoder_open", (r >> 32) as u32, r as u32);
    }
    s.encoder = r as u32 as i32;
    info("rust-jsonl: run opened");
    0
}

#[no_mangle]
pub extern "C" fn sluice_write_batch(batch: i32, records: i32) -> i64 {
    let s = state();
    if s.encoder < 0 {
        return plugin_error("rust-jsonl: write_batch before open");
    }
    let st = unsafe { encoder_write(s.encoder, batch) } as u32;
    if st != 0 {
        return host_error("encoder_write", st, 0);
    }
    s.records += records as u32 as u64;
    0
}

#[no_mangle]
pub extern "C" fn sluice_finish() -> i64 {
    let s = state();
    if s.upload < 0 {
        return plugin_error("rust-jsonl: finish before open");
    }
    let r = unsafe { upload_commit(s.upload) } as u64;
    s.upload = -1; // invalid after commit, on success and on failure
    s.encoder = -1;
    if (r >> 32) != 0 {
        return host_error("upload_commit", (r >> 32) as u32, r as u32);
    }
    let mut info_doc = vec![0u8; (r as u32 as usize).max(1)];
    let rr = unsafe { response_read(info_doc.as_mut_ptr(), info_doc.len() as i32) } as u64;
    let bytes = if (rr >> 32) == 0 { scan_u64(&info_doc[..rr as u32 as usize], "bytes") } else { 0 };
    let key = match scan_str(&info_doc, "key") {
        Some(k) if (rr >> 32) == 0 => k.to_vec(),
        _ => s.key.clone(),
    };

    let mut doc = b"{\"records\":".to_vec();
    push_u64(&mut doc, s.records);
    doc.extend_from_slice(b",\"bytes\":");
    push_u64(&mut doc, bytes);
    doc.extend_from_slice(b",\"outputs\":[{\"kind\":\"object\",\"name\":");
    push_json_str(&mut doc, &key);
    doc.extend_from_slice(b",\"records\":");
    push_u64(&mut doc, s.records);
    doc.extend_from_slice(b",\"bytes\":");
    push_u64(&mut doc, bytes);
    doc.extend_from_slice(b"}]}");
    set_output(doc)
}

/// PostHog-like defaults: host statuses that retrying cannot fix fail the run; the rest
/// (retryable_io, cancelled, internal, plugin errors without a status) is retried.
#[no_mangle]
pub extern "C" fn sluice_classify(ptr: i32, len: i32) -> i64 {
    let req = input(ptr, len);
    let fail = match scan_str(req, "status") {
        Some(st) => matches!(
            st,
            b"fatal_io" | b"denied" | b"bad_argument" | b"not_found" | b"limit_exceeded" | b"unimplemented"
        ),
        None => false,
    };
    let doc: &[u8] = if fail {
        b"{\"outcome\":\"fail\",\"reason\":\"non-retryable host status\"}"
    } else {
        b"{\"outcome\":\"retry\",\"reason\":\"retryable\"}"
    };
    set_output(doc.to_vec())
}

#[no_mangle]
pub extern "C" fn sluice_close() -> i64 {
    let s = state();
    if s.upload >= 0 {
        unsafe { upload_abort(s.upload) };
    }
    s.upload = -1;
    s.encoder = -1;
    s.records = 0;
    s.key.clear();
    0
}
