//! Object bodies: JSON lines (one record's data per line, as Firehose with a newline delimiter),
//! compressed while records are added, so a batch never holds its records twice.

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Snappy,
}

impl Compression {
    /// Object name extension of a JSON lines body (Firehose appends the compression's).
    pub fn jsonl_extension(self) -> &'static str {
        match self {
            Compression::None => ".jsonl",
            Compression::Gzip => ".jsonl.gz",
            Compression::Zstd => ".jsonl.zst",
            Compression::Snappy => ".jsonl.snappy",
        }
    }
}

enum Encoder {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    /// Snappy's framing format (what `snappy`-aware tools and Firehose's "Snappy" read); boxed,
    /// its buffers make it much larger than the other encoders.
    Snappy(Box<snap::write::FrameEncoder<Vec<u8>>>),
}

/// One object being built from records.
pub struct JsonlBody {
    enc: Encoder,
    records: usize,
    raw_bytes: u64,
}

/// gzip level 6 and zstd level 3: the command-line tools' defaults, which the delivery
/// benchmark compares against.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

impl JsonlBody {
    pub fn new(compression: Compression) -> std::io::Result<JsonlBody> {
        let enc = match compression {
            Compression::None => Encoder::Plain(Vec::new()),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Compression::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?)
            }
            Compression::Snappy => {
                Encoder::Snappy(Box::new(snap::write::FrameEncoder::new(Vec::new())))
            }
        };
        Ok(JsonlBody {
            enc,
            records: 0,
            raw_bytes: 0,
        })
    }

    /// Adds one record's data as a line (a trailing newline in the data is not doubled).
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        let data = data.strip_suffix(b"\n").unwrap_or(data);
        let w: &mut dyn Write = match &mut self.enc {
            Encoder::Plain(v) => v,
            Encoder::Gzip(e) => e,
            Encoder::Zstd(e) => e,
            Encoder::Snappy(e) => e.as_mut(),
        };
        w.write_all(data)?;
        w.write_all(b"\n")?;
        self.records += 1;
        self.raw_bytes += data.len() as u64 + 1;
        Ok(())
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Uncompressed bytes so far (what `buffer_size` counts, as Firehose's buffering hints).
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// The finished object body.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self.enc {
            Encoder::Plain(v) => Ok(v),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Snappy(e) => e
                .into_inner()
                .map_err(|e| std::io::Error::other(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::Command;

    fn records() -> Vec<Vec<u8>> {
        (0..2000)
            .map(|i| format!(r#"{{"camera":"cam-{}","n":{i}}}"#, i % 3).into_bytes())
            .collect()
    }

    fn body(c: Compression) -> (Vec<u8>, u64) {
        let mut b = JsonlBody::new(c).unwrap();
        for r in records() {
            b.push(&r).unwrap();
        }
        b.push(b"{\"already\":\"terminated\"}\n").unwrap();
        assert_eq!(b.records(), 2001);
        let raw = b.raw_bytes();
        (b.finish().unwrap(), raw)
    }

    fn expected() -> String {
        let mut s = String::new();
        for r in records() {
            s.push_str(std::str::from_utf8(&r).unwrap());
            s.push('\n');
        }
        s.push_str("{\"already\":\"terminated\"}\n");
        s
    }

    #[test]
    fn every_compression_round_trips_to_json_lines() {
        let want = expected();
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            let (bytes, raw) = body(c);
            assert_eq!(raw, want.len() as u64, "{c:?}");
            let mut text = String::new();
            match c {
                Compression::None => text = String::from_utf8(bytes).unwrap(),
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_string(&mut text)
                        .unwrap();
                }
                Compression::Zstd => {
                    zstd::stream::read::Decoder::new(&bytes[..])
                        .unwrap()
                        .read_to_string(&mut text)
                        .unwrap();
                }
                Compression::Snappy => {
                    snap::read::FrameDecoder::new(&bytes[..])
                        .read_to_string(&mut text)
                        .unwrap();
                }
            }
            assert_eq!(text, want, "{c:?}");
        }
    }

    /// The real command-line tools accept what we write (`gzip -t`, `zstd -t`).
    #[test]
    fn gzip_and_zstd_tools_accept_the_objects() {
        let dir = tempfile::tempdir().unwrap();
        for (c, tool) in [(Compression::Gzip, "gzip"), (Compression::Zstd, "zstd")] {
            let path = dir.path().join(format!("o{}", c.jsonl_extension()));
            std::fs::write(&path, body(c).0).unwrap();
            let out = Command::new(tool)
                .arg("-t")
                .arg(&path)
                .output()
                .unwrap_or_else(|e| {
                    panic!("{tool} (Debian package, installed with gzip/zstd): {e}")
                });
            assert!(
                out.status.success(),
                "{tool} -t: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
