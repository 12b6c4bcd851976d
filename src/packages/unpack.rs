//! Unpacking packages into package entries, whatever their format: one file by its magic, or
//! many in parallel on every core. Each package is its own cached step; workers write objects by
//! content and record each package in its own short transaction.

use std::path::Path;

use crate::packages::{Limits, PackageReport};
use crate::store::local::Store;
use crate::util::progress::Progress;

/// Unpack a `.deb` or an `.rpm` into its package entry: an RPM by its lead's magic or its name,
/// anything else as a `.deb` (whose reader then says what is wrong with it).
pub fn unpack_any(store: &mut Store, path: &Path, limits: &Limits) -> anyhow::Result<PackageReport> {
    let mut magic = [0u8; 4];
    let n = std::io::Read::read(&mut fs_err::File::open(path)?, &mut magic)?;
    let rpm_name = path.extension().is_some_and(|e| e == "rpm");
    if magic[..n] == [0xed, 0xab, 0xee, 0xdb] || rpm_name {
        crate::packages::rpm::unpack::unpack(store, path, limits)
    } else {
        crate::packages::deb::unpack::unpack(store, path, limits)
    }
}

/// Unpack `items` with `unpack`, in parallel, counting on a progress bar. Packages are
/// independent steps: each worker has its own handle on the store, opened as the caller's was (objects are written by
/// content, and SQLite serializes the short transactions that record each package).
pub fn unpack_in_parallel<T: Sync>(
    store: &Store,
    items: &[T],
    progress: &Progress,
    unpack: impl Fn(&mut Store, &T) -> anyhow::Result<PackageReport> + Sync,
) -> anyhow::Result<Vec<PackageReport>> {
    use rayon::prelude::*;
    let (root, opts) = (store.root().to_path_buf(), store.shared_options());
    let bar = progress.items(items.len() as u64, "unpacking");
    let out = items
        .par_iter()
        .map_init(
            || Store::open(&root, &opts, || {}),
            |worker, item| -> anyhow::Result<PackageReport> {
                let worker = worker.as_mut().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                let report = unpack(worker, item)?;
                bar.inc(1);
                Ok(report)
            },
        )
        .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();
    Ok(out)
}
