//! `vidgest clip CAMERA --start T --end T -o FILE.mp4`.

use super::{load_config, open_reader};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vidgest::clock::{format_rfc3339, Clock, SystemClock};
use vidgest::playback::{plan_clip, write_clip_part};
use vidgest::timespec::parse_time;

pub fn export(
    config: &Path,
    camera: &str,
    start: &str,
    end: &str,
    output: &Path,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let now = SystemClock.now_ns();
    let (start, end) = (parse_time(start, now)?, parse_time(end, now)?);
    let reader = open_reader(&config)?;
    let parts = plan_clip(&reader, camera, start, end)?;
    if parts.len() > 1 {
        eprintln!(
            "the codec configuration changes inside this range: writing {} files, one per configuration",
            parts.len()
        );
    }
    let total: u64 = parts.iter().map(|p| p.bytes()).sum();
    let bar = ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("valid template"),
    );
    let mut done = 0;
    for (i, part) in parts.iter().enumerate() {
        let path = part_path(output, i);
        let tmp = path.with_extension("mp4.partial");
        let file = std::fs::File::create(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        let base = done;
        write_clip_part(&reader, part, &mut w, |n| bar.set_position(base + n))?;
        drop(w);
        std::fs::rename(&tmp, &path)?;
        done += part.bytes();
        bar.suspend(|| {
            eprintln!(
                "wrote {} ({} fragments, {} .. {})",
                path.display(),
                part.fragments.len(),
                format_rfc3339(part.start_ns()),
                format_rfc3339(part.end_ns())
            )
        });
    }
    bar.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}

/// `clip.mp4`, then `clip-2.mp4`, `clip-3.mp4` ...
fn part_path(output: &Path, index: usize) -> PathBuf {
    if index == 0 {
        return output.to_path_buf();
    }
    let stem = output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("clip");
    let ext = output.extension().and_then(|s| s.to_str()).unwrap_or("mp4");
    output.with_file_name(format!("{stem}-{}.{ext}", index + 1))
}
