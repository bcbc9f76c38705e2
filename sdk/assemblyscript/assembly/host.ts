// The raw host imports of abi/SPEC.md section 6 (module "sluice_v1", ABI 1.0).
// Pointers are offsets into the module's memory; i64 results are `status << 32 | value`.

@external("sluice_v1", "log")
export declare function log(level: i32, ptr: usize, len: i32): void;
@external("sluice_v1", "log_enabled")
export declare function log_enabled(level: i32): i32;
@external("sluice_v1", "metric")
export declare function metric(namePtr: usize, nameLen: i32, value: i64): i32;
@external("sluice_v1", "response_read")
export declare function response_read(ptr: usize, cap: i32): i64;
@external("sluice_v1", "batch_read")
export declare function batch_read(batch: i32, ptr: usize, cap: i32): i64;
@external("sluice_v1", "upload_open")
export declare function upload_open(specPtr: usize, specLen: i32): i64;
@external("sluice_v1", "upload_write")
export declare function upload_write(upload: i32, ptr: usize, len: i32): i32;
@external("sluice_v1", "upload_bytes")
export declare function upload_bytes(upload: i32, outPtr: usize): i32;
@external("sluice_v1", "upload_commit")
export declare function upload_commit(upload: i32): i64;
@external("sluice_v1", "upload_abort")
export declare function upload_abort(upload: i32): i32;
@external("sluice_v1", "encoder_open")
export declare function encoder_open(upload: i32, specPtr: usize, specLen: i32): i64;
@external("sluice_v1", "encoder_write")
export declare function encoder_write(encoder: i32, batch: i32): i32;
@external("sluice_v1", "encoder_close")
export declare function encoder_close(encoder: i32): i32;

/** Status codes of SPEC section 4. */
export namespace Status {
  export const OK: u32 = 0;
  export const NOT_FOUND: u32 = 1;
  export const BAD_ARGUMENT: u32 = 2;
  export const BUFFER_TOO_SMALL: u32 = 3;
  export const DENIED: u32 = 4;
  export const LIMIT_EXCEEDED: u32 = 5;
  export const RETRYABLE_IO: u32 = 6;
  export const FATAL_IO: u32 = 7;
  export const CANCELLED: u32 = 8;
  export const INTERNAL: u32 = 9;
  export const UNIMPLEMENTED: u32 = 10;
}

const STATUS_NAMES: string[] = [
  "ok", "not_found", "bad_argument", "buffer_too_small", "denied", "limit_exceeded",
  "retryable_io", "fatal_io", "cancelled", "internal", "unimplemented",
];

/** The name of a status code; an unknown code is "internal" (SPEC section 4). */
export function statusName(st: u32): string {
  return st < <u32>STATUS_NAMES.length ? STATUS_NAMES[st] : "internal";
}
