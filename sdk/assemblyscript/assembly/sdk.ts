// The SDK proper: errors, uploads and host encoders, run context, results, classification,
// the Destination a plugin implements and register().

import * as host from "./host";
import { statusName, Status } from "./host";
import { JSONValue, JSONWriter, JSONKind, parseJSON } from "./json";
import { BatchReader } from "./batch";

// ---------------------------------------------------------------------------------------
// Logs and metrics

export namespace Level {
  export const DEBUG: i32 = -4;
  export const INFO: i32 = 0;
  export const WARN: i32 = 4;
  export const ERROR: i32 = 8;
}

/** Writes a run log line (stored with the run, the export and the plugin's name). */
export function log(level: i32, msg: string): void {
  const b = String.UTF8.encode(msg);
  host.log(level, changetype<usize>(b), b.byteLength);
}

/** Whether the host keeps lines at level: check before building an expensive line. */
export function logEnabled(level: i32): bool {
  return host.log_enabled(level) != 0;
}

/** Adds value to the run's counter name ([a-z0-9_]{1,64}, at most 32 names per run). */
export function metric(name: string, value: i64): PluginError | null {
  const b = String.UTF8.encode(name);
  return check("metric", <u32>host.metric(changetype<usize>(b), b.byteLength, value));
}

// ---------------------------------------------------------------------------------------
// Errors (SPEC section 7's Error; section 5's classification reads its status)

/**
 * A failure returned from an export. `status` is the status name of the host call that
 * caused it; a plugin's own error says whether retrying may help with retryable()
 * (status retryable_io) or fatal() (fatal_io). defaultClassify reads the status; an error
 * without one (plugin()) is retried.
 */
export class PluginError {
  status: string = "";
  field: string = "";
  code: string = "";
  /** For a failed host call: the host's Error document, passed through verbatim. */
  hostDoc: string = "";

  constructor(public message: string) {}

  /** A plugin error without a status: the default classification retries it. */
  static plugin(msg: string): PluginError {
    return new PluginError(msg);
  }
  /** A destination fault worth retrying (timeout, throttling, 5xx), with its code. */
  static retryable(msg: string, code: string = ""): PluginError {
    const e = new PluginError(msg);
    e.status = "retryable_io";
    e.code = code;
    return e;
  }
  /** A destination fault not worth retrying (authentication, missing table), with its code. */
  static fatal(msg: string, code: string = ""): PluginError {
    const e = new PluginError(msg);
    e.status = "fatal_io";
    e.code = code;
    return e;
  }
  /** A config key at fault (from validate or open): status bad_argument, field set. */
  static field(field: string, msg: string): PluginError {
    const e = new PluginError(msg);
    e.status = "bad_argument";
    e.field = field;
    return e;
  }
  /**
   * The error of a failed host call: the host's Error document from the response buffer
   * (its message, status, code), or one naming the call and the status.
   */
  static host(op: string, st: u32, len: u32): PluginError {
    const e = new PluginError(op + " failed: " + statusName(st));
    e.status = statusName(st);
    const doc = readResponse(len);
    if (doc.length > 0) {
      const v = parseJSON(doc);
      if (v != null && v.kind == JSONKind.Object) {
        e.hostDoc = doc;
        e.message = v.getString("message", e.message);
        e.code = v.getString("code");
        e.field = v.getString("field");
      }
    }
    return e;
  }
  /** Whether defaultClassify retries it. */
  get retryable(): bool {
    return defaultClassify(this, 1).outcome != "fail";
  }
  toJSON(): string {
    if (this.hostDoc.length > 0) return this.hostDoc;
    const w = new JSONWriter().beginObject().key("message").string(this.message);
    if (this.status.length > 0) w.key("status").string(this.status);
    if (this.field.length > 0) w.key("field").string(this.field);
    if (this.code.length > 0) w.key("code").string(this.code);
    return w.endObject().toString();
  }
}

/** The response buffer's document (len: its length when known, else 0). */
export function readResponse(len: u32): string {
  let cap: i32 = len > 0 ? <i32>len : 0;
  for (let i = 0; i < 2; i++) {
    const buf = new ArrayBuffer(cap);
    const r = <u64>host.response_read(changetype<usize>(buf), cap);
    const st = <u32>(r >> 32);
    const n = <i32>(<u32>r);
    if (st == Status.OK) return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>n);
    if (st != Status.BUFFER_TOO_SMALL) return "";
    cap = n;
  }
  return "";
}

function check(op: string, st: u32): PluginError | null {
  return st == Status.OK ? null : PluginError.host(op, st, 0);
}

// ---------------------------------------------------------------------------------------
// Uploads, host encoders, batches

/** An UploadSpec (SPEC section 7). */
export class UploadSpec {
  contentType: string = "";
  contentEncoding: string = "";
  /** "object" (the default), or a warehouse stage sink. */
  sink: string = "";
  constructor(public key: string) {}
  toJSON(): string {
    const w = new JSONWriter().beginObject().key("key").string(this.key);
    if (this.sink.length > 0) w.key("sink").string(this.sink);
    if (this.contentType.length > 0) w.key("content_type").string(this.contentType);
    if (this.contentEncoding.length > 0) w.key("content_encoding").string(this.contentEncoding);
    return w.endObject().toString();
  }
}

/** An EncoderSpec: format jsonl, parquet or csv; compression gzip, zstd... or "" (none). */
export class EncoderSpec {
  compression: string = "";
  /** Columns to select (and rename with `as`); empty: every column of the run. */
  columns: string[] = [];
  as: string[] = [];
  /** Keep only rows whose string column whereColumn equals whereEquals (when set). */
  whereColumn: string = "";
  whereEquals: string = "";
  constructor(public format: string) {}
  select(name: string, as: string = ""): EncoderSpec {
    this.columns.push(name);
    this.as.push(as);
    return this;
  }
  toJSON(): string {
    const w = new JSONWriter().beginObject().key("format").string(this.format);
    if (this.compression.length > 0) w.key("compression").string(this.compression);
    if (this.columns.length > 0) {
      w.key("columns").beginArray();
      for (let i = 0; i < this.columns.length; i++) {
        w.beginObject().key("name").string(this.columns[i]);
        if (this.as[i].length > 0) w.key("as").string(this.as[i]);
        w.endObject();
      }
      w.endArray();
    }
    if (this.whereColumn.length > 0) {
      w.key("where").beginObject().key("column").string(this.whereColumn).key("equals").string(this.whereEquals).endObject();
    }
    return w.endObject().toString();
  }
}

/** The host's answer to a commit. */
export class CommitInfo {
  key: string = "";
  bytes: i64 = 0;
  etag: string = "";
  error: PluginError | null = null;
}

/**
 * An upload into the export's bound sink (the bucket and prefix the admin configured).
 * Check `error` after open(). Uploads not committed when the run closes are aborted.
 */
export class Upload {
  handle: i32 = -1;
  error: PluginError | null = null;

  static open(spec: UploadSpec): Upload {
    const u = new Upload();
    const b = String.UTF8.encode(spec.toJSON());
    const r = <u64>host.upload_open(changetype<usize>(b), b.byteLength);
    if ((r >> 32) != 0) u.error = PluginError.host("upload_open", <u32>(r >> 32), <u32>r);
    else u.handle = <i32>(<u32>r);
    return u;
  }
  /** Appends raw bytes (the plugin's own encoding). */
  write(data: ArrayBuffer): PluginError | null {
    return check("upload_write", <u32>host.upload_write(this.handle, changetype<usize>(data), data.byteLength));
  }
  writeString(s: string): PluginError | null {
    return this.write(String.UTF8.encode(s));
  }
  /** Appends n bytes at ptr (a ByteBuffer's dataStart: ByteBuffer.writeTo). */
  writeBytes(ptr: usize, n: i32): PluginError | null {
    return check("upload_write", <u32>host.upload_write(this.handle, ptr, n));
  }
  /** Bytes received so far, after encoding and compression (split files on it); -1 on error. */
  bytes(): i64 {
    const out = new ArrayBuffer(8);
    if (host.upload_bytes(this.handle, changetype<usize>(out)) != 0) return -1;
    return load<i64>(changetype<usize>(out));
  }
  /** Opens a host-native encoder on the upload. Check the encoder's `error`. */
  encoder(spec: EncoderSpec): Encoder {
    const e = new Encoder();
    const b = String.UTF8.encode(spec.toJSON());
    const r = <u64>host.encoder_open(this.handle, changetype<usize>(b), b.byteLength);
    if ((r >> 32) != 0) e.error = PluginError.host("encoder_open", <u32>(r >> 32), <u32>r);
    else e.handle = <i32>(<u32>r);
    return e;
  }
  /** Completes the upload (closing its encoder); the handle is invalid afterwards. */
  commit(): CommitInfo {
    const ci = new CommitInfo();
    const r = <u64>host.upload_commit(this.handle);
    this.handle = -1;
    if ((r >> 32) != 0) {
      ci.error = PluginError.host("upload_commit", <u32>(r >> 32), <u32>r);
      return ci;
    }
    const v = parseJSON(readResponse(<u32>r));
    if (v != null) {
      ci.key = v.getString("key");
      ci.bytes = v.getInt("bytes");
      ci.etag = v.getString("etag");
    }
    return ci;
  }
  /** Removes every trace of the upload. */
  abort(): void {
    if (this.handle >= 0) host.upload_abort(this.handle);
    this.handle = -1;
  }
}

/** A host-native streaming encoder: records are encoded on the host, never in the guest. */
export class Encoder {
  handle: i32 = -1;
  error: PluginError | null = null;
  writeBatch(b: Batch): PluginError | null {
    return check("encoder_write", <u32>host.encoder_write(this.handle, b.handle));
  }
  /** Writes the format's footer; the upload stays open. */
  close(): PluginError | null {
    return check("encoder_close", <u32>host.encoder_close(this.handle));
  }
}

/** One batch of the run, valid only during writeBatch. */
export class Batch {
  error: PluginError | null = null;
  constructor(public handle: i32, public records: i32) {}
  /** Copies the batch's SLB1 bytes into the guest (batch_read); null with `error` set. */
  read(): Uint8Array | null {
    const r = <u64>host.batch_read(this.handle, 0, 0);
    const st = <u32>(r >> 32);
    if (st != Status.OK && st != Status.BUFFER_TOO_SMALL) {
      this.error = PluginError.host("batch_read", st, <u32>r);
      return null;
    }
    const buf = new Uint8Array(<i32>(<u32>r));
    const r2 = <u64>host.batch_read(this.handle, buf.dataStart, buf.length);
    if ((r2 >> 32) != 0) {
      this.error = PluginError.host("batch_read", <u32>(r2 >> 32), <u32>r2);
      return null;
    }
    return buf;
  }
  /** A decoder over the batch's records (copied in); check its `error`. */
  reader(): BatchReader {
    const b = this.read();
    return new BatchReader(b != null ? b : new Uint8Array(0));
  }
}

// ---------------------------------------------------------------------------------------
// Control messages

/** A column of the run (OpenRequest.columns). */
export class RunColumn {
  constructor(public name: string, public kind: string, public nullable: bool) {}
}

/** The OpenRequest of a run. Times are RFC 3339 strings in UTC. */
export class RunContext {
  runId: string = "";
  exportId: string = "";
  exportName: string = "";
  intervalStart: string = "";
  intervalEnd: string = "";
  attempt: i64 = 0;
  generation: i64 = 0;
  backfill: bool = false;
  /** The non-secret config, defaults applied. */
  config: JSONValue = new JSONValue();
  columns: RunColumn[] = [];

  static parse(v: JSONValue): RunContext {
    const rc = new RunContext();
    rc.runId = v.getString("run_id");
    rc.exportId = v.getString("export_id");
    rc.exportName = v.getString("export_name");
    rc.intervalStart = v.getString("interval_start");
    rc.intervalEnd = v.getString("interval_end");
    rc.attempt = v.getInt("attempt");
    rc.generation = v.getInt("generation");
    rc.backfill = v.getBool("backfill");
    const c = v.get("config");
    if (c != null && c.kind == JSONKind.Object) rc.config = c;
    const cols = v.get("columns");
    if (cols != null) {
      for (let i = 0; i < cols.items.length; i++) {
        const col = cols.items[i];
        rc.columns.push(new RunColumn(col.getString("name"), col.getString("kind"), col.getBool("nullable")));
      }
    }
    return rc;
  }
}

/** One output of a run. */
export class Output {
  constructor(public kind: string, public name: string, public records: i64, public bytes: i64) {}
}

/** What a run wrote (SPEC section 7's Result). */
export class Result {
  records: i64 = 0;
  bytes: i64 = 0;
  outputs: Output[] = [];
  toJSON(): string {
    const w = new JSONWriter().beginObject().key("records").int(this.records).key("bytes").int(this.bytes);
    w.key("outputs").beginArray();
    for (let i = 0; i < this.outputs.length; i++) {
      const o = this.outputs[i];
      w.beginObject().key("kind").string(o.kind).key("name").string(o.name)
        .key("records").int(o.records).key("bytes").int(o.bytes).endObject();
    }
    return w.endArray().endObject().toString();
  }
}

/** The decision on a failed run: retry, retry_after (ms) or fail. */
export class Classification {
  constructor(public outcome: string, public reason: string, public retryAfterMs: i64 = 0) {}
  static retry(reason: string): Classification { return new Classification("retry", reason); }
  static retryAfter(ms: i64, reason: string): Classification { return new Classification("retry_after", reason, ms); }
  static fail(reason: string): Classification { return new Classification("fail", reason); }
  toJSON(): string {
    const w = new JSONWriter().beginObject().key("outcome").string(this.outcome);
    if (this.outcome == "retry_after") w.key("retry_after_ms").int(this.retryAfterMs);
    return w.key("reason").string(this.reason).endObject().toString();
  }
}

/**
 * PostHog-like, as the Go SDK's DefaultClassify: a failure whose status is retryable_io,
 * cancelled, internal (or unknown), or that came from the plugin without a status, is
 * retried; fatal_io, denied, bad_argument, not_found, limit_exceeded and unimplemented fail.
 */
export function defaultClassify(e: PluginError, attempt: i32): Classification {
  const st = e.status;
  if (st.length == 0) return Classification.retry("plugin error");
  if (st == "fatal_io" || st == "denied" || st == "bad_argument" || st == "not_found" ||
      st == "limit_exceeded" || st == "unimplemented") {
    return Classification.fail("non-retryable status " + st);
  }
  return Classification.retry("retryable status " + st);
}

// ---------------------------------------------------------------------------------------
// The destination

/**
 * What a plugin implements. register()'s factory makes a fresh Destination for every run
 * (and for validate and classify), so run state lives in its fields.
 */
export abstract class Destination {
  /** Checks the config after the host's schema check; PluginError.field names the key. */
  validate(config: JSONValue, secretsSet: string[]): PluginError | null { return null; }
  /** Starts a run. */
  abstract open(rc: RunContext): PluginError | null;
  /** One batch: hand it to an Encoder (host-native) or decode it (batch.reader()). */
  abstract writeBatch(b: Batch): PluginError | null;
  /** Completes the run (commit uploads) and fills the result. */
  abstract finish(res: Result): PluginError | null;
  /** Decides on a failure; must not call host imports other than log and metric. */
  classify(e: PluginError, attempt: i32): Classification { return defaultClassify(e, attempt); }
  /** Ends the run whatever happened; the host aborts uploads left open. */
  close(): void {}
}

let manifestJSON: string = "";
let factory: (() => Destination) | null = null;

/** Declares the plugin: its manifest (SPEC section 7, JSON text) and a constructor. */
export function register(manifest: string, newDestination: () => Destination): void {
  manifestJSON = manifest;
  factory = newDestination;
}

/** @internal for the exports */
export function registeredManifest(): string { return manifestJSON; }

/** @internal for the exports */
export function newDestination(): Destination {
  const f = factory;
  if (f == null) {
    log(Level.ERROR, "sluice: register() was not called in the plugin's entry file");
    unreachable();
  }
  return f!();
}
