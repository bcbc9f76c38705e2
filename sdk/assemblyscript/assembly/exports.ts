// The guest exports of abi/SPEC.md section 5. A plugin's entry file re-exports them:
//
//   export * from "<sdk>/assembly/exports";
//
// Build with `--exportStart _initialize` (a WASI reactor: the host calls _initialize, which
// runs the entry file's top-level code, i.e. register()) and `--use abort=...sluiceAbort`
// (so a failed assertion logs and traps instead of importing env.abort, which the host
// refuses); asconfig.json has both.

import * as host from "./host";
import { JSONValue, JSONKind, parseJSON } from "./json";
import { Batch, Classification, Destination, PluginError, Result, RunContext,
  log, Level, newDestination, registeredManifest } from "./sdk";

let input: ArrayBuffer = new ArrayBuffer(0);  // the buffer sluice_alloc handed out
let output: ArrayBuffer = new ArrayBuffer(0); // the last result, valid until the next export
let dest: Destination | null = null;          // the run's destination, open .. close

/** The ABI 1.0 marker. */
export function sluice_abi_v1_0(): void {}

/** The host writes each export's input here (one buffer at a time; kept until the next). */
export function sluice_alloc(size: i32): usize {
  if (size < 0) return 0;
  input = new ArrayBuffer(size);
  return changetype<usize>(input);
}

function inputDoc(ptr: usize, len: i32): JSONValue | null {
  if (len <= 0 || ptr != changetype<usize>(input) || len > input.byteLength) return null;
  return parseJSON(String.UTF8.decodeUnsafe(ptr, <usize>len));
}

function packed(doc: string): i64 {
  if (doc.length == 0) return 0;
  output = String.UTF8.encode(doc);
  return (<i64>changetype<usize>(output) << 32) | <i64>output.byteLength;
}

function result(err: PluginError | null): i64 {
  if (err == null) return 0;
  return packed("{\"error\":" + err.toJSON() + "}");
}

export function sluice_describe(): i64 {
  return packed(registeredManifest());
}

export function sluice_validate(ptr: usize, len: i32): i64 {
  const req = inputDoc(ptr, len);
  if (req == null) return result(PluginError.plugin("sluice_validate: the request is not JSON"));
  let cfg = req.get("config");
  if (cfg == null || cfg.kind != JSONKind.Object) cfg = new JSONValue();
  const secrets: string[] = [];
  const ss = req.get("secrets_set");
  if (ss != null) for (let i = 0; i < ss.items.length; i++) secrets.push(ss.items[i].str);
  return result(newDestination().validate(cfg, secrets));
}

/**
 * The first sluice_write_batch failure of the open run: sluice_finish then fails too (the
 * run misses a batch; the host never calls finish after a failed write, and a plugin must
 * not succeed if one does).
 */
let writeFailed: PluginError | null = null;

export function sluice_open(ptr: usize, len: i32): i64 {
  const req = inputDoc(ptr, len);
  if (req == null) return result(PluginError.plugin("sluice_open: the request is not JSON"));
  const d = newDestination();
  dest = d;
  writeFailed = null;
  return result(d.open(RunContext.parse(req)));
}

export function sluice_write_batch(batch: i32, records: i32): i64 {
  const d = dest;
  if (d == null) return result(PluginError.plugin("sluice_write_batch before sluice_open"));
  const err = d.writeBatch(new Batch(batch, records));
  if (err != null && writeFailed == null) writeFailed = err;
  return result(err);
}

export function sluice_finish(): i64 {
  const d = dest;
  if (d == null) return result(PluginError.plugin("sluice_finish before sluice_open"));
  const failed = writeFailed;
  if (failed != null) return result(PluginError.plugin("sluice_finish after a failed sluice_write_batch: " + failed.message));
  const res = new Result();
  const err = d.finish(res);
  if (err != null) return result(err);
  return packed(res.toJSON());
}

export function sluice_classify(ptr: usize, len: i32): i64 {
  const req = inputDoc(ptr, len);
  const e = new PluginError("");
  let attempt: i32 = 1;
  if (req != null) {
    attempt = <i32>req.getInt("attempt", 1);
    const ev = req.get("error");
    if (ev != null) {
      e.message = ev.getString("message");
      e.status = ev.getString("status");
      e.code = ev.getString("code");
      e.field = ev.getString("field");
    }
  }
  const d = dest != null ? dest! : newDestination();
  const c: Classification = d.classify(e, attempt);
  return packed(c.toJSON());
}

export function sluice_close(): i64 {
  const d = dest;
  dest = null;
  writeFailed = null;
  if (d != null) d.close();
  return 0;
}

/**
 * Replaces AssemblyScript's env.abort import (asconfig.json: "use": ["abort=..."]): the
 * message goes to the run's log at ERROR, then the call traps; the host discards the
 * instance and classifies the trap.
 */
export function sluiceAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let msg = "abort: " + (message != null ? message : "(no message)");
  if (fileName != null) msg += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  log(Level.ERROR, msg);
  unreachable();
}
