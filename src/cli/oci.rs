//! `strata export --format oci`: an image as an OCI image in an image layout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use super::ostree::{CompressionArg, ExportArgs};
use super::{output, Ctx};
use crate::oci::image::{Compression, OciTo};
use crate::pipeline::{self, Input};
use crate::store::lock::LockMode;

/// `--output oci:DIR[:TAG]` as (DIR, TAG), with a hint for the destinations strata leaves to skopeo.
pub fn parse_output(spec: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    if spec.starts_with("docker://") || spec.starts_with("oci-archive:") {
        bail!(
            "`{spec}`: strata writes OCI images to image layouts (oci:DIR[:TAG]); `skopeo copy oci:DIR:TAG {spec}` takes one on from there"
        );
    }
    crate::description::oci_reference(spec)
}

pub fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let mut ostree_only = vec![];
    for (given, flag) in [
        (args.repo.is_some(), "--repo"),
        (args.reference.is_some(), "--ref"),
        (args.mode.is_some(), "--mode"),
        (args.deltas > 0, "--deltas"),
        (args.history.is_some(), "--history"),
        (!args.signing.sign_keys.is_empty() || !args.signing.gpg_keys.is_empty(), "--sign-key/--gpg-sign"),
        (args.no_layout, "--no-layout"),
    ] {
        if given {
            ostree_only.push(flag);
        }
    }
    if !ostree_only.is_empty() {
        bail!("{} apply to OSTree commits, not to --format oci", ostree_only.join(", "));
    }
    let Some(spec) = &args.output else {
        bail!("--format oci needs --output oci:DIR[:TAG]");
    };
    let (dir, tag) = parse_output(spec)?;
    let compression = match args.compression {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::None => Compression::None,
    };
    let mut store = ctx.open(LockMode::Shared)?;
    let input = Input::open(&args.build.desc.description, &args.build.desc.profiles)?;
    let note = |m: String| ctx.note(m);
    let src = pipeline::source(&mut store, &input, &args.build.options()?, args.version.clone(), &ctx.progress, &note)?;
    let tag = match tag {
        Some(t) => t,
        None => {
            src.version.clone().filter(|v| crate::description::valid_oci_tag(v)).unwrap_or_else(|| "latest".to_string())
        }
    };
    let to = OciTo {
        dir: &dir,
        tag: &tag,
        compression,
        source_date: args.build.source_date_epoch().unwrap_or(crate::graph::DEFAULT_EPOCH),
        arch: &args.build.arch,
    };
    let report =
        crate::oci::image::export(&mut store, &src.entry, &src.image, src.version.as_deref(), &to, &ctx.progress)?;
    if ctx.json {
        output::json(&serde_json::json!({
            "image": src.image, "entry": src.entry.key, "report": report,
        }))?;
    } else {
        println!("{}", report.manifest);
        let written = report.layers.iter().filter(|l| l.written).count();
        ctx.note(format!(
            "oci:{}:{}: {} layers ({} written, {}; {} already there), {} compressed",
            dir.display(),
            tag,
            report.layers.len(),
            written,
            output::bytes(report.bytes_written),
            report.layers.len() - written,
            report.compression.as_str()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        assert_eq!(parse_output("oci:/tmp/l:web").unwrap(), (PathBuf::from("/tmp/l"), Some("web".into())));
        assert_eq!(parse_output("oci:/tmp/l").unwrap(), (PathBuf::from("/tmp/l"), None));
        assert_eq!(parse_output("oci:l:1.0.2").unwrap(), (PathBuf::from("l"), Some("1.0.2".into())));
        assert!(parse_output("oci:/tmp/l:-x").unwrap_err().to_string().contains("tag `-x`"));
        assert!(parse_output("docker://r/x:1").unwrap_err().to_string().contains("skopeo copy"));
        assert!(parse_output("/tmp/l").unwrap_err().to_string().contains("expected oci:DIR[:TAG]"));
        assert!(parse_output("oci:").unwrap_err().to_string().contains("missing"));
    }
}
