// ByteBuffer: a growable byte buffer for plugins that write their own encoding (the
// per-record route): bytes go straight into it, with no UTF-16 strings in between, and
// Upload.writeBuffer hands it to the host in one call.

import { Upload, PluginError } from "./sdk";

const HEX = "0123456789abcdef";

export class ByteBuffer {
  private buf: Uint8Array;
  /** Bytes written so far. */
  length: i32 = 0;

  constructor(capacity: i32 = 65536) {
    this.buf = new Uint8Array(max(capacity, 16));
  }

  /** Makes room for n more bytes and returns where they go. */
  reserve(n: i32): usize {
    const need = this.length + n;
    if (need > this.buf.length) {
      let c = this.buf.length * 2;
      while (c < need) c *= 2;
      const nb = new Uint8Array(c);
      memory.copy(nb.dataStart, this.buf.dataStart, <usize>this.length);
      this.buf = nb;
    }
    return this.buf.dataStart + <usize>this.length;
  }

  /** The address of the first byte (valid until the next write). */
  get dataStart(): usize { return this.buf.dataStart; }
  /** A copy of the bytes written. */
  toUint8Array(): Uint8Array { return this.buf.slice(0, this.length); }
  reset(): void { this.length = 0; }

  byte(b: u8): ByteBuffer {
    store<u8>(this.reserve(1), b);
    this.length++;
    return this;
  }
  /** n raw bytes from ptr (a BatchReader value, another buffer). */
  raw(ptr: usize, n: i32): ByteBuffer {
    memory.copy(this.reserve(n), ptr, <usize>n);
    this.length += n;
    return this;
  }
  /** A string of ASCII characters (literals, numbers); use utf8() for any other text. */
  ascii(s: string): ByteBuffer {
    const p = this.reserve(s.length);
    for (let i = 0; i < s.length; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i));
    this.length += s.length;
    return this;
  }
  /** Any string, encoded as UTF-8. */
  utf8(s: string): ByteBuffer {
    const n = String.UTF8.byteLength(s);
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, this.reserve(n));
    this.length += n;
    return this;
  }
  /** A decimal integer. */
  int(n: i64): ByteBuffer {
    return this.ascii(n.toString());
  }
  /** n in decimal, zero-padded to w digits (n >= 0). */
  digits(n: i64, w: i32): ByteBuffer {
    const p = this.reserve(w);
    for (let i = w - 1; i >= 0; i--) {
      store<u8>(p + <usize>i, <u8>(0x30 + n % 10));
      n /= 10;
    }
    this.length += w;
    return this;
  }
  /**
   * A JSON number as the host's encoders write float64 values (encoding/json's shortest
   * form); NaN and infinities, which JSON cannot hold, are null.
   */
  float(f: f64): ByteBuffer {
    if (!isFinite(f)) return this.ascii("null");
    let s = f.toString();
    if (s.endsWith(".0")) s = s.substring(0, s.length - 2);
    return this.ascii(s);
  }

  /**
   * UTF-8 bytes as a JSON string literal, escaped exactly as the host's encoders do: '"',
   * '\\', \n \r \t \b \f, other control characters as \u00XX, U+2028 and U+2029 escaped,
   * invalid UTF-8 as \ufffd.
   */
  jsonString(ptr: usize, n: i32): ByteBuffer {
    this.byte(0x22);
    let start = 0;
    let i = 0;
    while (i < n) {
      const c = load<u8>(ptr + <usize>i);
      if (c >= 0x20 && c < 0x80 && c != 0x22 && c != 0x5c) { i++; continue; }
      if (c < 0x80) {
        this.raw(ptr + <usize>start, i - start);
        if (c == 0x22) this.ascii("\\\"");
        else if (c == 0x5c) this.ascii("\\\\");
        else if (c == 0x0a) this.ascii("\\n");
        else if (c == 0x0d) this.ascii("\\r");
        else if (c == 0x09) this.ascii("\\t");
        else if (c == 0x08) this.ascii("\\b");
        else if (c == 0x0c) this.ascii("\\f");
        else this.ascii("\\u00").byte(<u8>HEX.charCodeAt(c >> 4)).byte(<u8>HEX.charCodeAt(c & 15));
        i++;
        start = i;
        continue;
      }
      const size = runeSize(ptr + <usize>i, n - i);
      if (size == 0) {
        this.raw(ptr + <usize>start, i - start).ascii("\\ufffd");
        i++;
        start = i;
        continue;
      }
      // U+2028, U+2029: e2 80 a8 / e2 80 a9
      if (size == 3 && c == 0xe2 && load<u8>(ptr + <usize>i + 1) == 0x80 &&
          (load<u8>(ptr + <usize>i + 2) == 0xa8 || load<u8>(ptr + <usize>i + 2) == 0xa9)) {
        this.raw(ptr + <usize>start, i - start).ascii(load<u8>(ptr + <usize>i + 2) == 0xa8 ? "\\u2028" : "\\u2029");
        i += 3;
        start = i;
        continue;
      }
      i += size;
    }
    this.raw(ptr + <usize>start, n - start);
    return this.byte(0x22);
  }

  /** Microseconds since the epoch as RFC 3339 UTC with six fractional digits (years 0-9999). */
  timestamp(micros: i64): ByteBuffer {
    const perDay: i64 = 86400000000;
    let days = micros / perDay;
    let rem = micros % perDay;
    if (rem < 0) { rem += perDay; days--; }
    const z = days + 719468;
    const era = (z >= 0 ? z : z - 146096) / 146097;
    const doe = z - era * 146097;
    const yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    const doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const mp = (5 * doy + 2) / 153;
    const d = doy - (153 * mp + 2) / 5 + 1;
    const m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) y++;
    const secs = rem / 1000000;
    return this.digits(y, 4).byte(0x2d).digits(m, 2).byte(0x2d).digits(d, 2).byte(0x54)
      .digits(secs / 3600, 2).byte(0x3a).digits((secs / 60) % 60, 2).byte(0x3a).digits(secs % 60, 2)
      .byte(0x2e).digits(rem % 1000000, 6).byte(0x5a);
  }

  /** 16 bytes at ptr as the canonical uuid text (8-4-4-4-12 lowercase hex). */
  uuid(ptr: usize): ByteBuffer {
    const p = this.reserve(36);
    let o: usize = 0;
    for (let i = 0; i < 16; i++) {
      if (i == 4 || i == 6 || i == 8 || i == 10) store<u8>(p + o++, 0x2d);
      const x = load<u8>(ptr + <usize>i);
      store<u8>(p + o++, <u8>HEX.charCodeAt(x >> 4));
      store<u8>(p + o++, <u8>HEX.charCodeAt(x & 15));
    }
    this.length += 36;
    return this;
  }

  /** Appends the buffer to an upload (upload_write) and empties it. */
  writeTo(up: Upload): PluginError | null {
    const err = up.writeBytes(this.buf.dataStart, this.length);
    this.length = 0;
    return err;
  }
}

/** The length of the valid UTF-8 sequence at p (first byte >= 0x80), 0 when invalid (as Go). */
function runeSize(p: usize, n: i32): i32 {
  const c0 = load<u8>(p);
  if (c0 < 0xc2) return 0;
  if (c0 < 0xe0) return n >= 2 && isCont(load<u8>(p + 1)) ? 2 : 0;
  if (c0 < 0xf0) {
    if (n < 3 || !isCont(load<u8>(p + 2))) return 0;
    const c1 = load<u8>(p + 1);
    const lo: u8 = c0 == 0xe0 ? 0xa0 : 0x80;
    const hi: u8 = c0 == 0xed ? 0x9f : 0xbf;
    return c1 >= lo && c1 <= hi ? 3 : 0;
  }
  if (c0 < 0xf5) {
    if (n < 4 || !isCont(load<u8>(p + 2)) || !isCont(load<u8>(p + 3))) return 0;
    const c1 = load<u8>(p + 1);
    const lo: u8 = c0 == 0xf0 ? 0x90 : 0x80;
    const hi: u8 = c0 == 0xf4 ? 0x8f : 0xbf;
    return c1 >= lo && c1 <= hi ? 4 : 0;
  }
  return 0;
}

function isCont(c: u8): bool { return c >= 0x80 && c <= 0xbf; }
