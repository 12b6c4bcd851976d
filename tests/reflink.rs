//! Link modes on a file system that can reflink: a loop-mounted xfs with reflink=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{manifest, special_fixture, Env};

struct Mount {
    dir: PathBuf,
}

impl Mount {
    fn xfs(image: &Path, dir: &Path) -> Mount {
        let f = fs_err::File::create(image).unwrap();
        f.set_len(600 << 20).unwrap();
        drop(f);
        run(Command::new("mkfs.xfs").args(["-q", "-m", "reflink=1"]).arg(image));
        fs_err::create_dir_all(dir).unwrap();
        run(Command::new("mount").args(["-o", "loop"]).arg(image).arg(dir));
        Mount { dir: dir.to_path_buf() }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn auto_uses_reflink_on_xfs_and_copy_across_file_systems() {
    let env = Env::new();
    let mnt = Mount::xfs(&env.path("xfs.img"), &env.path("xfs"));
    let src = env.path("src");
    special_fixture(&src);
    let want = manifest(&src);

    // Store and checkout on the same xfs: auto picks reflink, and the copy is exact.
    let store = mnt.dir.join("store");
    let strata = |args: &[&str]| {
        let out = Command::new(common::bin()).arg("--store").arg(&store).arg("--json").args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    strata(&["store", "add", src.to_str().unwrap(), "--root", "tags/f"]);
    let dest = mnt.dir.join("co");
    let r = strata(&["store", "checkout", "tags/f", dest.to_str().unwrap()]);
    assert_eq!(r["method"], "reflink");
    assert_eq!(manifest(&dest), want);
    // A reflinked file is independent of the store: writing it leaves the object intact.
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(dest.join("usr/lib/a"), std::fs::Permissions::from_mode(0o644)).unwrap();
    fs_err::write(dest.join("usr/lib/a"), "changed").unwrap();
    let out =
        Command::new(common::bin()).arg("--store").arg(&store).args(["store", "verify", "--full"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let explicit = mnt.dir.join("co-explicit");
    assert_eq!(
        strata(&["store", "checkout", "tags/f", explicit.to_str().unwrap(), "--link", "reflink"])["method"],
        "reflink"
    );

    // From the store on xfs to a directory on the root file system: auto copies, hardlink is refused.
    let other = env.path("co-other-fs");
    assert_eq!(strata(&["store", "checkout", "tags/f", other.to_str().unwrap()])["method"], "copy");
    assert_eq!(manifest(&other), want);
    let out = Command::new(common::bin())
        .arg("--store")
        .arg(&store)
        .args(["store", "checkout", "tags/f"])
        .arg(env.path("co-hl"))
        .args(["--link", "hardlink"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another file system"));
}
