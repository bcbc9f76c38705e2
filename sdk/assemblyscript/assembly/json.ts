// A small JSON reader and writer: enough for the control messages of SPEC section 7.

export const enum JSONKind { Null, Bool, Number, String, Array, Object }

/** A parsed JSON value. Objects keep their keys in order. */
export class JSONValue {
  kind: JSONKind = JSONKind.Null;
  bool: bool = false;
  num: f64 = 0;
  str: string = "";
  items: JSONValue[] = [];
  keys: string[] = [];

  /** The member `key` of an object, or null. */
  get(key: string): JSONValue | null {
    if (this.kind != JSONKind.Object) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }
  /** The string member `key`, or def when missing or not a string. */
  getString(key: string, def: string = ""): string {
    const v = this.get(key);
    return v != null && v.kind == JSONKind.String ? v.str : def;
  }
  /** The number member `key` as an integer, or def. */
  getInt(key: string, def: i64 = 0): i64 {
    const v = this.get(key);
    return v != null && v.kind == JSONKind.Number ? <i64>v.num : def;
  }
  /** The boolean member `key`, or def. */
  getBool(key: string, def: bool = false): bool {
    const v = this.get(key);
    return v != null && v.kind == JSONKind.Bool ? v.bool : def;
  }
  /** The value as JSON text. */
  toJSON(): string {
    const w = new JSONWriter();
    w.value(this);
    return w.toString();
  }
}

/** Parses JSON text; returns null on a syntax error. */
export function parseJSON(s: string): JSONValue | null {
  const p = new Parser(s);
  p.ws();
  const v = p.value();
  p.ws();
  if (v == null || p.failed || p.i != s.length) return null;
  return v;
}

class Parser {
  i: i32 = 0;
  failed: bool = false;
  constructor(public s: string) {}

  ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      this.i++;
    }
  }

  value(): JSONValue | null {
    if (this.i >= this.s.length) return null;
    const c = this.s.charCodeAt(this.i);
    const v = new JSONValue();
    if (c == 0x7b) { // {
      v.kind = JSONKind.Object;
      this.i++;
      this.ws();
      if (this.peek(0x7d)) { this.i++; return v; }
      while (true) {
        this.ws();
        if (!this.peek(0x22)) return null;
        const k = this.string();
        if (k == null) return null;
        this.ws();
        if (!this.peek(0x3a)) return null;
        this.i++;
        this.ws();
        const m = this.value();
        if (m == null) return null;
        v.keys.push(k);
        v.items.push(m);
        this.ws();
        if (this.peek(0x2c)) { this.i++; continue; }
        if (this.peek(0x7d)) { this.i++; return v; }
        return null;
      }
    }
    if (c == 0x5b) { // [
      v.kind = JSONKind.Array;
      this.i++;
      this.ws();
      if (this.peek(0x5d)) { this.i++; return v; }
      while (true) {
        this.ws();
        const m = this.value();
        if (m == null) return null;
        v.items.push(m);
        this.ws();
        if (this.peek(0x2c)) { this.i++; continue; }
        if (this.peek(0x5d)) { this.i++; return v; }
        return null;
      }
    }
    if (c == 0x22) {
      const s = this.string();
      if (s == null) return null;
      v.kind = JSONKind.String;
      v.str = s;
      return v;
    }
    if (this.s.startsWith("true", this.i)) { this.i += 4; v.kind = JSONKind.Bool; v.bool = true; return v; }
    if (this.s.startsWith("false", this.i)) { this.i += 5; v.kind = JSONKind.Bool; return v; }
    if (this.s.startsWith("null", this.i)) { this.i += 4; return v; }
    const start = this.i;
    while (this.i < this.s.length) {
      const d = this.s.charCodeAt(this.i);
      if ((d >= 0x30 && d <= 0x39) || d == 0x2d || d == 0x2b || d == 0x2e || d == 0x65 || d == 0x45) this.i++;
      else break;
    }
    if (this.i == start) return null;
    v.kind = JSONKind.Number;
    v.num = parseFloat(this.s.substring(start, this.i));
    if (isNaN(v.num)) return null;
    return v;
  }

  peek(c: i32): bool {
    return this.i < this.s.length && this.s.charCodeAt(this.i) == c;
  }

  string(): string | null {
    this.i++; // opening quote
    let out = "";
    let from = this.i;
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c == 0x22) {
        out += this.s.substring(from, this.i);
        this.i++;
        return out;
      }
      if (c == 0x5c) {
        out += this.s.substring(from, this.i);
        this.i++;
        if (this.i >= this.s.length) return null;
        const e = this.s.charCodeAt(this.i);
        this.i++;
        if (e == 0x6e) out += "\n";
        else if (e == 0x74) out += "\t";
        else if (e == 0x72) out += "\r";
        else if (e == 0x62) out += "\b";
        else if (e == 0x66) out += "\f";
        else if (e == 0x75) {
          if (this.i + 4 > this.s.length) return null;
          const code = I32.parseInt(this.s.substring(this.i, this.i + 4), 16);
          out += String.fromCharCode(code); // surrogate pairs arrive as two escapes
          this.i += 4;
        } else out += String.fromCharCode(e);
        from = this.i;
        continue;
      }
      this.i++;
    }
    return null;
  }
}

/** Builds JSON text. Members are separated automatically. */
export class JSONWriter {
  private parts: string[] = [];
  private first: bool = true;

  private sep(): void {
    if (!this.first) this.parts.push(",");
    this.first = false;
  }
  beginObject(): JSONWriter { this.sep(); this.parts.push("{"); this.first = true; return this; }
  endObject(): JSONWriter { this.parts.push("}"); this.first = false; return this; }
  beginArray(): JSONWriter { this.sep(); this.parts.push("["); this.first = true; return this; }
  endArray(): JSONWriter { this.parts.push("]"); this.first = false; return this; }
  /** Starts an object member; the next call writes its value. */
  key(k: string): JSONWriter {
    this.sep();
    this.parts.push(quote(k));
    this.parts.push(":");
    this.first = true;
    return this;
  }
  string(s: string): JSONWriter { this.sep(); this.parts.push(quote(s)); return this; }
  int(n: i64): JSONWriter { this.sep(); this.parts.push(n.toString()); return this; }
  bool(b: bool): JSONWriter { this.sep(); this.parts.push(b ? "true" : "false"); return this; }
  nul(): JSONWriter { this.sep(); this.parts.push("null"); return this; }
  /** Writes text that already is JSON. */
  raw(json: string): JSONWriter { this.sep(); this.parts.push(json); return this; }
  value(v: JSONValue): JSONWriter {
    switch (v.kind) {
      case JSONKind.Null: return this.nul();
      case JSONKind.Bool: return this.bool(v.bool);
      case JSONKind.Number: return this.raw(Number.isInteger(v.num) && Math.abs(v.num) < 9e15 ? (<i64>v.num).toString() : v.num.toString());
      case JSONKind.String: return this.string(v.str);
      case JSONKind.Array: {
        this.beginArray();
        for (let i = 0; i < v.items.length; i++) this.value(v.items[i]);
        return this.endArray();
      }
    }
    this.beginObject();
    for (let i = 0; i < v.keys.length; i++) this.key(v.keys[i]).value(v.items[i]);
    return this.endObject();
  }
  toString(): string { return this.parts.join(""); }
}

const HEX = "0123456789abcdef";

/** s as a JSON string literal (quotes, escapes for '"', '\\' and control characters). */
export function quote(s: string): string {
  let out = "\"";
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(from, i);
    from = i + 1;
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15);
  }
  return out + s.substring(from) + "\"";
}
