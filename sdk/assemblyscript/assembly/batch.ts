// SLB1 batch decoding (abi/SPEC.md section 8), for plugins that process records themselves.
// The host-encoder route (Encoder.writeBatch) never needs it.

/** Column kinds (SPEC section 8). */
export namespace Kind {
  export const STRING: u8 = 1;
  export const JSON: u8 = 2;
  export const INT64: u8 = 3;
  export const TIMESTAMP: u8 = 4;
  export const UUID: u8 = 5;
  export const FLOAT64: u8 = 6;
  export const BOOL: u8 = 7;
}

const KIND_NAMES: string[] = ["", "string", "json", "int64", "timestamp", "uuid", "float64", "bool"];

/** The name of a kind ("string", "int64"...). */
export function kindName(k: u8): string {
  return k >= 1 && k <= 7 ? KIND_NAMES[k] : "unknown";
}

export class Column {
  constructor(public name: string, public kind: u8, public nullable: bool) {}
}

/**
 * Reads one SLB1 batch row by row, checking every must-reject rule of SPEC section 8.
 *
 *   const r = new BatchReader(bytes);
 *   while (r.next()) { r.getString(1); r.getInt64(4); r.isNull(3) ... }
 *   if (r.error != null) return Err.plugin("bad batch: " + r.error!);
 *
 * Values of the current row are read by column index; string values are decoded from
 * UTF-8 only when asked for.
 */
export class BatchReader {
  /** Why the batch was refused; null while it is valid. */
  error: string | null = null;
  columns: Column[] = [];
  /** The row count the header announces. */
  count: u32 = 0;
  /** Rows returned by next() so far. */
  row: u32 = 0;

  private buf: Uint8Array;
  private pos: i32 = 0;
  // The current row: per column, null flag, payload start and length, integer value.
  private nulls: StaticArray<bool> = new StaticArray<bool>(0);
  private starts: StaticArray<i32> = new StaticArray<i32>(0);
  private lens: StaticArray<i32> = new StaticArray<i32>(0);
  private ints: StaticArray<i64> = new StaticArray<i64>(0);

  constructor(bytes: Uint8Array) {
    this.buf = bytes;
    this.header();
  }

  private fail(msg: string): bool {
    if (this.error == null) this.error = msg + " at byte " + this.pos.toString();
    return false;
  }

  private u32le(): u32 {
    const b = this.buf;
    const p = this.pos;
    this.pos += 4;
    return <u32>b[p] | (<u32>b[p + 1] << 8) | (<u32>b[p + 2] << 16) | (<u32>b[p + 3] << 24);
  }

  /** Unsigned LEB128, at most 10 bytes; -1 (with error set) when malformed. */
  private uvarint(): u64 {
    let x: u64 = 0;
    let shift: u64 = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) { this.fail("uvarint past the end"); return 0; }
      const c = this.buf[this.pos++];
      if (i == 9 && c > 1) { this.fail("uvarint overflows 64 bits"); return 0; }
      x |= (<u64>(c & 0x7f)) << shift;
      if (c < 0x80) return x;
      shift += 7;
    }
    this.fail("uvarint longer than 10 bytes");
    return 0;
  }

  private header(): void {
    const b = this.buf;
    if (b.length < 12 || b[0] != 0x53 || b[1] != 0x4c || b[2] != 0x42 || b[3] != 0x31) {
      this.fail("not an SLB1 batch (wrong magic)");
      return;
    }
    this.pos = 4;
    this.count = this.u32le();
    const flags = this.u32le();
    if (flags != 0) { this.fail("flags " + flags.toString() + " are not 0"); return; }
    const n = this.uvarint();
    if (this.error != null) return;
    if (n == 0 || n > 1024) { this.fail("column count " + n.toString() + " is not in 1..1024"); return; }
    for (let i: u64 = 0; i < n; i++) {
      const l = this.uvarint();
      if (this.error != null) return;
      if (l == 0 || l > 256) { this.fail("column name length " + l.toString() + " is not in 1..256"); return; }
      if (<u64>this.pos + l + 1 > <u64>b.length) { this.fail("column name past the end"); return; }
      const start = this.pos;
      if (!validUTF8(b, start, start + <i32>l)) { this.fail("column name is not UTF-8"); return; }
      const name = String.UTF8.decodeUnsafe(b.dataStart + start, <usize>l);
      this.pos += <i32>l;
      const t = b[this.pos++];
      const kind = t & 0x7f;
      if (kind < 1 || kind > 7) { this.fail("unknown column kind " + kind.toString()); return; }
      this.columns.push(new Column(name, kind, (t & 0x80) != 0));
    }
    // Every value takes at least one byte.
    if (<u64>this.count * n > <u64>(b.length - this.pos)) {
      this.fail("row count " + this.count.toString() + " cannot fit in the batch");
      return;
    }
    const nc = this.columns.length;
    this.nulls = new StaticArray<bool>(nc);
    this.starts = new StaticArray<i32>(nc);
    this.lens = new StaticArray<i32>(nc);
    this.ints = new StaticArray<i64>(nc);
    if (this.count == 0) this.end();
  }

  private end(): void {
    if (this.pos != this.buf.length) this.fail("trailing bytes after the last row");
  }

  private payload(n: i32): bool {
    if (this.pos + n > this.buf.length) return this.fail("value past the end");
    this.pos += n;
    return true;
  }

  /** Decodes the next row; false after the last one or on an error (see `error`). */
  next(): bool {
    if (this.error != null || this.row >= this.count) return false;
    const b = this.buf;
    for (let c = 0; c < this.columns.length; c++) {
      const col = this.columns[c];
      this.nulls[c] = false;
      if (col.nullable) {
        if (this.pos >= b.length) return this.fail("presence byte past the end");
        const p = b[this.pos++];
        if (p > 1) return this.fail("presence byte " + p.toString() + " is not 0 or 1");
        if (p == 0) { this.nulls[c] = true; continue; }
      }
      const k = col.kind;
      if (k == Kind.STRING || k == Kind.JSON) {
        const l = this.uvarint();
        if (this.error != null) return false;
        if (l > <u64>(b.length - this.pos)) return this.fail("string past the end");
        this.starts[c] = this.pos;
        this.lens[c] = <i32>l;
        this.pos += <i32>l;
      } else if (k == Kind.INT64 || k == Kind.TIMESTAMP) {
        const z = this.uvarint();
        if (this.error != null) return false;
        this.ints[c] = <i64>(z >> 1) ^ -(<i64>(z & 1)); // zigzag
      } else if (k == Kind.UUID) {
        this.starts[c] = this.pos;
        if (!this.payload(16)) return false;
      } else if (k == Kind.FLOAT64) {
        this.starts[c] = this.pos;
        if (!this.payload(8)) return false;
      } else { // bool
        if (this.pos >= b.length) return this.fail("bool past the end");
        const v = b[this.pos++];
        if (v > 1) return this.fail("bool byte " + v.toString() + " is not 0 or 1");
        this.ints[c] = v;
      }
    }
    this.row++;
    if (this.row == this.count) {
      this.end();
      if (this.error != null) return false;
    }
    return true;
  }

  /** The index of the column `name`, or -1. */
  column(name: string): i32 {
    for (let i = 0; i < this.columns.length; i++) if (this.columns[i].name == name) return i;
    return -1;
  }

  isNull(c: i32): bool { return this.nulls[c]; }
  /**
   * Where the current row's string, json, uuid (16 bytes) or float64 (8 bytes) value of
   * column c lies in the batch, for copying it without a string (ByteBuffer.raw,
   * ByteBuffer.jsonString, ByteBuffer.uuid). Valid while the batch bytes are.
   */
  valuePtr(c: i32): usize { return this.buf.dataStart + <usize>this.starts[c]; }
  /** The byte length of a string or json value. */
  valueLen(c: i32): i32 { return this.lens[c]; }
  /** A string or json value (UTF-8 decoded; invalid bytes become U+FFFD). */
  getString(c: i32): string {
    if (this.nulls[c]) return "";
    return String.UTF8.decodeUnsafe(this.buf.dataStart + this.starts[c], <usize>this.lens[c]);
  }
  /** The raw bytes of a string or json value. */
  getBytes(c: i32): Uint8Array {
    return this.buf.slice(this.starts[c], this.starts[c] + this.lens[c]);
  }
  getInt64(c: i32): i64 { return this.ints[c]; }
  /** Microseconds since 1970-01-01T00:00:00Z. */
  getTimestamp(c: i32): i64 { return this.ints[c]; }
  getBool(c: i32): bool { return this.ints[c] != 0; }
  getFloat64(c: i32): f64 { return load<f64>(this.buf.dataStart + <usize>this.starts[c]); }
  /** The canonical text of a uuid value: 8-4-4-4-12 lowercase hex digits. */
  getUUID(c: i32): string {
    let s = "";
    const p = this.starts[c];
    for (let i = 0; i < 16; i++) {
      if (i == 4 || i == 6 || i == 8 || i == 10) s += "-";
      const x = this.buf[p + i];
      s += HEXD.charAt(x >> 4) + HEXD.charAt(x & 15);
    }
    return s;
  }
}

const HEXD = "0123456789abcdef";

function validUTF8(b: Uint8Array, from: i32, to: i32): bool {
  let i = from;
  while (i < to) {
    const c = b[i];
    let n = 0;
    let min: u32 = 0;
    if (c < 0x80) { i++; continue; }
    else if ((c & 0xe0) == 0xc0) { n = 1; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { n = 2; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { n = 3; min = 0x10000; }
    else return false;
    if (i + n >= to) return false; // truncated sequence
    let cp: u32 = <u32>c & (<u32>0x3f >> <u32>n);
    for (let j = 1; j <= n; j++) {
      const d = b[i + j];
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

function pad(n: i64, w: i32): string {
  let s = n.toString();
  while (s.length < w) s = "0" + s;
  return s;
}

/**
 * Microseconds since the epoch as RFC 3339 in UTC with six fractional digits
 * (2025-01-01T00:00:00.000000Z), as the host's encoders write timestamps. Years 0-9999.
 */
export function formatTimestamp(micros: i64): string {
  const perDay: i64 = 86400000000;
  let days = micros / perDay;
  let rem = micros % perDay;
  if (rem < 0) { rem += perDay; days--; }
  // civil from days (H. Hinnant)
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
  return pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T" + pad(secs / 3600, 2) + ":" +
    pad((secs / 60) % 60, 2) + ":" + pad(secs % 60, 2) + "." + pad(rem % 1000000, 6) + "Z";
}
