//! `strata export --format oci`: an image as an OCI image in an image layout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use super::export_args::{CompressionArg, ExportArgs};
use super::image::BuildArgs;
use super::{output, Ctx};
use crate::description::ImageReference;
use crate::oci::archive::ArchiveTarget;
use crate::oci::image::{Compression, LayoutTarget, OciReport, OciTo, Target};
use crate::oci::layout::Layout;
use crate::oci::registry::Push;
use crate::pipeline::{self, Input};
use crate::store::lock::LockMode;

/// Where `--output` sends the image.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Layout(PathBuf, Option<String>),
    Archive(PathBuf, Option<String>),
    Registry(ImageReference),
}

/// `--output oci:DIR[:TAG] | oci-archive:FILE[:TAG] | docker://HOST/REPO[:TAG]`.
pub fn parse_output(spec: &str) -> anyhow::Result<Output> {
    if spec.starts_with("docker://") {
        return Ok(Output::Registry(ImageReference::parse(spec)?));
    }
    if spec.starts_with("oci-archive:") {
        let (file, tag) = crate::oci::archive::parse(spec)?;
        return Ok(Output::Archive(file, tag));
    }
    if !spec.starts_with("oci:") {
        bail!("`{spec}`: expected oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/REPO[:TAG]");
    }
    let (dir, tag) = crate::description::oci_reference(spec)?;
    Ok(Output::Layout(dir, tag))
}

pub fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let source = args.build.desc.description.to_string_lossy();
    if crate::description::ostree_container_image(&source)?.is_some() {
        bail!("`{source}` is an ostree-native container image already: export its commit with --format ostree --repo PATH");
    }
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
        bail!("--format oci needs --output oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/REPO[:TAG]");
    };
    let output = parse_output(spec)?;
    let compression = compression(args.compression);
    let mut store = ctx.open(LockMode::Shared)?;
    let input = Input::open(&args.build.desc.description, &args.build.desc.profiles)?;
    let note = |m: String| ctx.note(m);
    let src = pipeline::source(&mut store, &input, &args.build.options()?, args.version.clone(), &ctx.progress, &note)?;
    write(ctx, &mut store, &src, output, compression, &args.build, Make::Layers)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn compression(arg: CompressionArg) -> Compression {
    match arg {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::None => Compression::None,
    }
}

/// What the image's layers are.
pub(crate) enum Make<'a> {
    /// One per step that changed the tree.
    Layers,
    /// An ostree-native container of this commit.
    OstreeCommit { repo: &'a ostree::Repo, commit: &'a str },
}

/// Export `src` to `output` and report it (`strata export --format oci`, `strata deploy` of a
/// container target).
pub(crate) fn write(
    ctx: &Ctx,
    store: &mut crate::store::local::Store,
    src: &pipeline::Source,
    output: Output,
    compression: Compression,
    build: &BuildArgs,
    make: Make<'_>,
) -> anyhow::Result<OciReport> {
    let given = match &output {
        Output::Layout(_, tag) | Output::Archive(_, tag) => tag.clone(),
        Output::Registry(r) => r.tag.clone(),
    };
    // The destination's tag, else the container's, else the version, else `latest`.
    let tag = given
        .or_else(|| src.container.as_ref().and_then(|c| c.tag.clone()))
        .or_else(|| src.version.clone().filter(|v| crate::description::valid_oci_tag(v)))
        .unwrap_or_else(|| "latest".to_string());
    let source_date = build.source_date_epoch().unwrap_or(crate::graph::DEFAULT_EPOCH);
    let to = OciTo { tag: &tag, container: src.container.as_ref(), compression, source_date, arch: &build.arch };
    let export = |store: &mut crate::store::local::Store, target: &mut dyn Target| match &make {
        Make::Layers => {
            crate::oci::image::export(store, &src.entry, &src.image, src.version.as_deref(), &to, target, &ctx.progress)
        }
        Make::OstreeCommit { repo, commit } => {
            let image = crate::oci::image::Image {
                entry: &src.entry,
                image: &src.image,
                version: src.version.as_deref(),
                labels: Default::default(),
                history_prefix: "",
            };
            crate::ostree::container::encapsulate(store, repo, commit, image, &to, target, &ctx.progress)
        }
    };
    let report = match output {
        Output::Layout(dir, _) => export(store, &mut LayoutTarget { layout: Layout::open(&dir)?, tag: tag.clone() })?,
        Output::Archive(file, _) => {
            export(store, &mut ArchiveTarget::new(crate::oci::cache::open(store)?, &file, &tag, source_date)?)?
        }
        Output::Registry(r) => {
            let r = ImageReference { tag: Some(tag.clone()), ..r };
            let mut push = Push::new(store, crate::oci::cache::open(store)?, &r, &build.registry.settings())?;
            let report = export(store, &mut push)?;
            push.record(store)?;
            report
        }
    };
    if ctx.json {
        let commit = match &make {
            Make::OstreeCommit { commit, .. } => Some(commit.to_string()),
            Make::Layers => None,
        };
        output::json(&serde_json::json!({
            "image": src.image, "entry": src.entry.key, "commit": commit, "report": report,
        }))?;
    } else {
        println!("{}", report.manifest);
        let written = report.layers.iter().filter(|l| l.written).count();
        ctx.note(format!(
            "{}: {} layers ({} written, {}; {} already there), {} compressed",
            report.destination,
            report.layers.len(),
            written,
            output::bytes(report.bytes_written),
            report.layers.len() - written,
            report.compression.as_str()
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        let layout = |d: &str, t: Option<&str>| Output::Layout(PathBuf::from(d), t.map(String::from));
        assert_eq!(parse_output("oci:/tmp/l:web").unwrap(), layout("/tmp/l", Some("web")));
        assert_eq!(parse_output("oci:/tmp/l").unwrap(), layout("/tmp/l", None));
        assert_eq!(parse_output("oci:l:1.0.2").unwrap(), layout("l", Some("1.0.2")));
        assert!(parse_output("oci:/tmp/l:-x").unwrap_err().to_string().contains("tag `-x`"));
        assert_eq!(
            parse_output("oci-archive:/tmp/a.tar:1").unwrap(),
            Output::Archive(PathBuf::from("/tmp/a.tar"), Some("1".into()))
        );
        let Output::Registry(r) = parse_output("docker://127.0.0.1:5000/team/os").unwrap() else { panic!() };
        assert_eq!((r.host.as_str(), r.repo.as_str(), r.tag.as_deref()), ("127.0.0.1:5000", "team/os", None));
        assert_eq!(r.manifest_reference(), "latest");
        assert!(parse_output("docker://os:1").unwrap_err().to_string().contains("with the registry's host"));
        assert!(parse_output("docker://team/os:1").unwrap_err().to_string().contains("no default registry"));
        assert!(parse_output("docker://r.example/Team:1").unwrap_err().to_string().contains("repository `Team`"));
        assert!(parse_output("/tmp/l").unwrap_err().to_string().contains("expected oci:DIR[:TAG]"));
        assert!(parse_output("oci:").unwrap_err().to_string().contains("missing"));
    }
}
