// as-jsonl: a sample Sluice destination in AssemblyScript. Each run's events go into one
// JSON Lines object named after the run's interval ({interval_start}-{interval_end}.jsonl).
// config "route": "host" (default) hands each batch to the host's jsonl encoder (no record
// enters the guest); "guest" decodes the SLB1 batch with the SDK's BatchReader and writes
// the lines itself (the same JSON values the host writes), which is how a plugin with
// per-record logic works.

import {
  Batch, BatchReader, ByteBuffer, Destination, Encoder, EncoderSpec, JSONValue, Kind, Level,
  PluginError, Result, Output, RunContext, Upload, UploadSpec, log, register,
} from "../../assembly/index";

export * from "../../assembly/exports";

const MANIFEST = `{"name":"as-jsonl","version":"0.1.0","abi_version":"1.0",
"description":"Sample JSON Lines destination in AssemblyScript (host encoder or guest decoding)",
"capabilities":["object"],"formats":["jsonl"],"config":[
{"name":"bucket_name","type":"string","required":true,"binding":"object.bucket","description":"Bucket or local directory name."},
{"name":"endpoint_url","type":"string","binding":"object.endpoint_url"},
{"name":"route","type":"string","default":"host","enum":["host","guest"],"description":"host: the host encodes; guest: the plugin decodes and writes each record."},
{"name":"aws_access_key_id","type":"string","secret":true,"binding":"object.access_key_id"},
{"name":"aws_secret_access_key","type":"string","secret":true,"binding":"object.secret_access_key"}]}`;

class JsonlDest extends Destination {
  upload: Upload | null = null;
  encoder: Encoder | null = null;
  guest: bool = false;
  key: string = "";
  records: i64 = 0;
  out: ByteBuffer = new ByteBuffer();

  validate(config: JSONValue, secretsSet: string[]): PluginError | null {
    const r = config.getString("route", "host");
    if (r != "host" && r != "guest") return PluginError.field("route", "route must be host or guest");
    return null;
  }

  open(rc: RunContext): PluginError | null {
    this.guest = rc.config.getString("route", "host") == "guest";
    this.key = rc.intervalStart + "-" + rc.intervalEnd + ".jsonl";
    const spec = new UploadSpec(this.key);
    spec.contentType = "application/jsonl";
    const up = Upload.open(spec);
    if (up.error != null) return up.error;
    this.upload = up;
    if (!this.guest) {
      const enc = up.encoder(new EncoderSpec("jsonl"));
      if (enc.error != null) return enc.error;
      this.encoder = enc;
    }
    log(Level.INFO, "as-jsonl: run opened (route " + (this.guest ? "guest" : "host") + ")");
    return null;
  }

  writeBatch(b: Batch): PluginError | null {
    if (this.upload == null) return PluginError.plugin("as-jsonl: write_batch before open");
    if (!this.guest) {
      const err = this.encoder!.writeBatch(b);
      if (err != null) return err;
      this.records += b.records;
      return null;
    }
    const r = b.reader();
    if (b.error != null) return b.error;
    const out = this.out;
    while (r.next()) line(r, out);
    if (r.error != null) return PluginError.plugin("as-jsonl: bad batch: " + r.error!);
    if (<i64>r.row != <i64>b.records) return PluginError.plugin("as-jsonl: batch has " + r.row.toString() + " rows, the host said " + b.records.toString());
    const err = out.writeTo(this.upload!);
    if (err != null) return err;
    this.records += r.row;
    return null;
  }

  finish(res: Result): PluginError | null {
    const up = this.upload;
    if (up == null) return PluginError.plugin("as-jsonl: finish before open");
    this.upload = null;
    this.encoder = null; // closed by the commit
    const ci = up.commit();
    if (ci.error != null) return ci.error;
    res.records = this.records;
    res.bytes = ci.bytes;
    res.outputs.push(new Output("object", ci.key.length > 0 ? ci.key : this.key, this.records, ci.bytes));
    return null;
  }

  close(): void {
    const up = this.upload;
    if (up != null) up.abort();
    this.upload = null;
  }
}

/**
 * One record as a JSON line into out, the values written as the host's jsonl encoder writes
 * them (json values are copied as they are: the host also compacts multi-line JSON and
 * quotes invalid JSON).
 */
function line(r: BatchReader, out: ByteBuffer): void {
  for (let c = 0; c < r.columns.length; c++) {
    const col = r.columns[c];
    out.byte(c == 0 ? 0x7b : 0x2c).utf8("\"" + col.name + "\":"); // names need no escapes here
    if (r.isNull(c)) { out.ascii("null"); continue; }
    const k = col.kind;
    if (k == Kind.STRING) out.jsonString(r.valuePtr(c), r.valueLen(c));
    else if (k == Kind.JSON) out.raw(r.valuePtr(c), r.valueLen(c));
    else if (k == Kind.INT64) out.int(r.getInt64(c));
    else if (k == Kind.TIMESTAMP) out.byte(0x22).timestamp(r.getTimestamp(c)).byte(0x22);
    else if (k == Kind.UUID) out.byte(0x22).uuid(r.valuePtr(c)).byte(0x22);
    else if (k == Kind.FLOAT64) out.float(r.getFloat64(c));
    else out.ascii(r.getBool(c) ? "true" : "false");
  }
  out.ascii("}\n");
}

register(MANIFEST, (): Destination => new JsonlDest());
