//! rust-jsonl: a minimal Sluice destination plugin in Rust, on the crate `sluice_sdk`
//! (sdk/rust, no external crates). It writes each run's events into one JSON Lines object
//! named after the run's interval (`{interval_start}-{interval_end}.jsonl`, so a retry
//! overwrites it), through the host's native encoder: the encoder gets the batch handle, no
//! record enters the guest.
//!
//! Build (Debian's rustc with libstd-rust-dev-wasm32; rustup's rustc cannot add targets):
//! `make plugins` builds the crate into an rlib, then this cdylib with `--extern sluice_sdk=`
//! (plugins/plugins.mk has the exact, reproducible command lines).

use sluice_sdk::{export_plugin, log, Batch, Destination, Encoder, Error, OpenRequest, Output, RunResult, Upload, INFO};

#[derive(Default)]
struct JsonlDest {
    upload: Option<Upload>,
    encoder: Option<Encoder>,
    key: Vec<u8>,
    records: u64,
}

impl Destination for JsonlDest {
    const MANIFEST: &'static str = concat!(
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

    fn open(&mut self, req: &OpenRequest) -> Result<(), Error> {
        self.key = req.interval_start.to_vec();
        self.key.push(b'-');
        self.key.extend_from_slice(req.interval_end);
        self.key.extend_from_slice(b".jsonl");
        let mut up = Upload::open(&self.key, "application/jsonl")?;
        self.encoder = Some(up.encoder(br#"{"format":"jsonl"}"#)?);
        self.upload = Some(up);
        log(INFO, "rust-jsonl: run opened");
        Ok(())
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        let enc = self.encoder.as_mut().ok_or_else(|| Error::new("rust-jsonl: write_batch before open"))?;
        enc.write(batch)?;
        self.records += batch.records as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<RunResult, Error> {
        let up = self.upload.take().ok_or_else(|| Error::new("rust-jsonl: finish before open"))?;
        self.encoder = None; // closed by the commit
        let ci = up.commit()?;
        let name = if ci.key.is_empty() { self.key.clone() } else { ci.key };
        Ok(RunResult {
            records: self.records,
            bytes: ci.bytes,
            outputs: vec![Output { kind: "object", name, records: self.records, bytes: ci.bytes }],
        })
    }

    fn close(&mut self) {
        if let Some(up) = self.upload.take() {
            up.abort();
        }
    }
}

export_plugin!(JsonlDest);
