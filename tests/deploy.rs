//! `strata deploy` and `strata boot` end to end: the three examples (from the build host's
//! Debian mirror, downloads cached in /var/cache/strata-tests) deployed to disks and live ISOs
//! that boot to a login prompt in QEMU with BIOS and with UEFI, where commands run; the
//! artifact and initramfs caches; `ostree:` sources; an xfs root updated and rolled back inside
//! the machine; and the errors a user meets.

mod common;

use std::path::PathBuf;

use common::{env_with_cache, sh, write, Env};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn boot(env: &Env, image: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "boot", image, "--timeout", "900"];
    args.extend_from_slice(extra);
    let out = env.cmd(&args).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report from strata boot: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        out.status.success() && report["success"] == true,
        "boot of {image} {extra:?} failed: {}\n{}",
        report["failure"],
        report["last_lines"]
            .as_array()
            .map(|l| l.iter().map(|x| x.as_str().unwrap_or("")).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    );
    report
}

fn remove(files: &[&PathBuf]) {
    for f in files {
        fs_err::remove_file(f).unwrap();
    }
}

fn output_of(report: &serde_json::Value, i: usize) -> &str {
    report["commands"][i]["output"].as_str().unwrap()
}

#[test]
fn the_examples_deploy_to_disks_and_live_isos_that_boot_with_bios_and_uefi() {
    let env = env_with_cache();
    // Built from the mirror once, then from its lock: the mirror may publish a new kernel while
    // the test runs, and whether a deploy is a cache hit must not depend on that.
    let desc = env.path("debian-base");
    sh(&format!("cp -a {} {}", project().join("descriptions/debian-base").display(), desc.display()));
    let d = desc.to_str().unwrap();
    env.ok(&["lock", d]);
    let qcow2 = env.path("debian.qcow2");
    let q = qcow2.to_str().unwrap();

    // No --format: the description's primary target (`<type image="oem" format="qcow2">`).
    let first = env.json(&["deploy", d, "--locked", "--output", q]);
    assert_eq!(first["cached"], false);
    assert_eq!(first["format"], "qcow2");
    assert_eq!(first["filesystem"], "ext4");
    let kargs: Vec<&str> = first["kernel_arguments"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(kargs.contains(&"root=LABEL=strata-root") && kargs.contains(&"console=ttyS0"), "{kargs:?}");
    let info = sh(&format!("qemu-img info {q}"));
    assert!(info.contains("file format: qcow2"), "{info}");
    // The artifact keeps the transcript of its assembly; its key also reaches the image's steps.
    let artifact = first["artifact"].as_str().unwrap();
    let assembly = env.ok(&["log", artifact, "qcow2"]);
    assert!(assembly.contains("\n$ mkfs.ext4 ") && assembly.contains("\n$ qemu-img convert "), "{assembly}");
    let steps = env.json(&["log", artifact, "--list"]);
    assert!(steps.as_array().unwrap().iter().any(|s| s["name"] == "debian-base/script config.sh"), "{steps}");

    let bios = boot(
        &env,
        q,
        &[
            "--login",
            "debian:debian",
            "--run",
            "ostree admin status",
            "--run",
            "findmnt -no FSTYPE,LABEL /boot",
            "--run",
            "cat /proc/cmdline",
            "--run",
            "test ! -d /sys/firmware/efi",
            "--run",
            "printf 'no newline'",
        ],
    );
    assert_eq!(bios["firmware"], "bios");
    assert_eq!(output_of(&bios, 4), "no newline\n", "a last line without a newline is ended: {bios}");
    assert!(output_of(&bios, 0).contains(&format!("* debian-base {}", first["commit"].as_str().unwrap())), "{bios}");
    assert!(output_of(&bios, 1).contains("ext4   strata-boot"), "{bios}");
    assert!(output_of(&bios, 2).contains("ostree=/ostree/boot."), "{bios}");

    let uefi = boot(
        &env,
        q,
        &["--uefi", "--login", "debian:debian", "--run", "test -d /sys/firmware/efi", "--run", "ostree admin status"],
    );
    assert_eq!(uefi["firmware"], "uefi");

    // Nothing changed: the artifact is a cache hit and the output is already right.
    let again = env.json(&["deploy", d, "--locked", "--format", "qcow2", "--output", q]);
    assert_eq!(again["cached"], true);
    assert_eq!(again["copied"], false);
    assert_eq!(again["artifact"], first["artifact"]);

    // The same commit as a live ISO: El Torito for BIOS and UEFI, the root on squashfs under an
    // overlay, found by the description's volume id.
    let iso = env.path("debian.iso");
    let i = iso.to_str().unwrap();
    let live = env.json(&["deploy", d, "--locked", "--format", "iso", "--output", i]);
    assert_eq!(live["commit"], first["commit"]);
    assert_eq!(live["volid"], "DEBIAN_BASE");
    assert_eq!(live["built"]["initramfs_cached"], false);
    let torito = sh(&format!("xorriso -indev {i} -report_el_torito plain 2>&1"));
    assert!(torito.contains("BIOS") && torito.contains("UEFI"), "{torito}");
    let files = sh(&format!("xorriso -indev {i} -find / -type f 2>&1"));
    for f in ["/LiveOS/squashfs.img", "/boot/vmlinuz", "/boot/initrd.img"] {
        assert!(files.contains(f), "{f} in {files}");
    }
    let checks = [
        "--login",
        "debian:debian",
        "--run",
        "findmnt -no FSTYPE /",
        "--run",
        "cat /proc/cmdline",
        "--run",
        "echo live > /home/debian/written && cat /home/debian/written",
        "--run",
        "test -e /usr/lib/tmpfiles.d/strata-var.conf && ls /var/lib/dpkg/status",
    ];
    for firmware in [&[][..], &["--uefi"][..]] {
        let report = boot(&env, i, &[firmware, &checks[..]].concat());
        assert_eq!(output_of(&report, 0).trim(), "overlay", "{report}");
        assert!(output_of(&report, 1).contains("root=live:CDLABEL=DEBIAN_BASE rd.live.image"), "{report}");
        assert_eq!(output_of(&report, 2).trim(), "live", "the live system is writable: {report}");
    }
    let again = env.json(&["deploy", d, "--locked", "--format", "iso", "--output", i]);
    assert_eq!((&again["cached"], &again["copied"]), (&true.into(), &false.into()), "{again}");
    // A wrong password is reported as such, at once (not at the timeout).
    let out = env.cmd(&["--json", "boot", i, "--login", "debian:wrong", "--timeout", "900"]).output().unwrap();
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failure"], "login incorrect", "{report}");

    // Another kernel argument: a new ISO, the initramfs step reused.
    let other = env.json(&["deploy", d, "--locked", "--format", "iso", "--output", i, "--karg", "quiet"]);
    assert_eq!(other["cached"], false);
    assert_eq!(other["built"]["initramfs_cached"], true);
    assert_eq!(other["built"]["initramfs_step"], live["built"]["initramfs_step"]);
    // Outputs are removed once checked: the test's disk use stays within what a CI machine has.
    remove(&[&qcow2, &iso]);

    // The derived examples: debian-web (its only target is a disk without a format: raw, as in
    // KIWI) and debian-slim (a raw disk), each as a qcow2 disk and an ISO.
    let web = project().join("descriptions/debian-web");
    let web_disk = env.path("web.qcow2");
    let out = env.json(&["deploy", web.to_str().unwrap(), "--format", "qcow2", "--output", web_disk.to_str().unwrap()]);
    assert_eq!(out["format"], "qcow2");
    let report = boot(
        &env,
        web_disk.to_str().unwrap(),
        &["--login", "debian:debian", "--run", "systemctl is-active nginx", "--run", "curl -s http://127.0.0.1/"],
    );
    assert_eq!(output_of(&report, 0).trim(), "active", "{report}");
    assert!(!output_of(&report, 1).trim().is_empty(), "nginx serves the site: {report}");
    let web_iso = env.path("web.iso");
    let out = env.json(&["deploy", web.to_str().unwrap(), "--format", "iso", "--output", web_iso.to_str().unwrap()]);
    assert_eq!(out["format"], "iso");
    let report = boot(
        &env,
        web_iso.to_str().unwrap(),
        &["--uefi", "--login", "debian:debian", "--run", "systemctl is-active nginx"],
    );
    assert_eq!(output_of(&report, 0).trim(), "active", "{report}");
    remove(&[&web_disk, &web_iso]);

    let slim = project().join("descriptions/debian-slim");
    let slim_raw = env.path("slim.raw");
    let out = env.json(&["deploy", slim.to_str().unwrap(), "--output", slim_raw.to_str().unwrap()]);
    assert_eq!(out["format"], "raw", "the description's target");
    remove(&[&slim_raw]);
    let slim_disk = env.path("slim.qcow2");
    env.json(&["deploy", slim.to_str().unwrap(), "--format", "qcow2", "--output", slim_disk.to_str().unwrap()]);
    let report = boot(
        &env,
        slim_disk.to_str().unwrap(),
        &["--uefi", "--login", "debian:debian", "--run", "id operator", "--run", "command -v nano || echo no nano"],
    );
    assert!(output_of(&report, 0).contains("1100"), "{report}");
    assert!(output_of(&report, 1).contains("no nano"), "{report}");
    let slim_iso = env.path("slim.iso");
    env.json(&["deploy", slim.to_str().unwrap(), "--format", "iso", "--output", slim_iso.to_str().unwrap()]);
    let report = boot(&env, slim_iso.to_str().unwrap(), &["--login", "debian:debian", "--run", "id operator"]);
    assert!(output_of(&report, 0).contains("1100"), "{report}");
    remove(&[&slim_disk, &slim_iso]);

    // From an OSTree repository: a raw disk of a given size, and an ISO (its tree imported).
    let repo = env.path("repo");
    env.ok(&["export", "images/debian-base", "--repo", repo.to_str().unwrap(), "--ref", "exampleos/x86_64"]);
    let raw = env.path("disk.raw");
    let spec = format!("ostree:{}#exampleos/x86_64", repo.display());
    let from_repo = env.json(&[
        "deploy",
        &spec,
        "--format",
        "raw",
        "--output",
        raw.to_str().unwrap(),
        "--size",
        "3G",
        "--os",
        "exampleos",
    ]);
    assert_eq!(from_repo["os"], "exampleos");
    assert_eq!(fs_err::metadata(&raw).unwrap().len(), 3 << 30);
    let table = sh(&format!("sfdisk --dump {}", raw.display()));
    for name in ["\"bios\"", "\"esp\"", "\"boot\"", "\"root\""] {
        assert!(table.contains(name), "{table}");
    }
    let esp = sh(&format!("mdir -i {}@@{} ::/EFI/BOOT", raw.display(), 2 << 20));
    assert!(esp.contains("BOOTX64"), "{esp}");
    let repo_iso = env.path("exampleos.iso");
    let out = env.json(&["deploy", &spec, "--format", "iso", "--output", repo_iso.to_str().unwrap()]);
    assert_eq!(out["volid"], "EXAMPLEOS");
    let torito = sh(&format!("xorriso -indev {} -report_el_torito plain 2>&1", repo_iso.display()));
    assert!(torito.contains("BIOS") && torito.contains("UEFI"), "{torito}");

    // Errors name what is wrong.
    let err = env.fail(&["deploy", &spec, "--format", "raw", "--output", raw.to_str().unwrap(), "--size", "1G"]);
    assert!(err.contains("too small") && err.contains("MiB"), "{err}");
    let err = env.fail(&["deploy", &spec, "--format", "raw", "--output", raw.to_str().unwrap(), "--size", "3 parsecs"]);
    assert!(err.contains("invalid size `3 parsecs`"), "{err}");
    let err = env.fail(&["deploy", &spec, "--format", "iso", "--output", raw.to_str().unwrap(), "--size", "3G"]);
    assert!(err.contains("--size is for disk images"), "{err}");
    let err = env.fail(&["deploy", &spec, "--output", raw.to_str().unwrap()]);
    assert!(err.contains("give --format"), "{err}");
    let err =
        env.fail(&["deploy", &spec, "--format", "raw", "--filesystem", "ntfs", "--output", raw.to_str().unwrap()]);
    assert!(err.contains("`ntfs` is not supported: expected ext4 or xfs"), "{err}");
    let err = env.fail(&["deploy", &spec, "--format", "iso", "--karg", "a;b", "--output", raw.to_str().unwrap()]);
    assert!(err.contains("kernel argument `a;b`"), "{err}");
    let err = env.fail(&["deploy", "ostree:/nonexistent#x", "--format", "raw", "--output", raw.to_str().unwrap()]);
    assert!(err.contains("/nonexistent"), "{err}");
    remove(&[&raw, &repo_iso]);

    // Retention and cached artifacts: with debian-slim's generations removed, gc takes its disks
    // and ISO, and those made from the OSTree repository (no generation's); every other image's
    // artifacts stay, and deploying one again is a cache hit.
    let artifacts = || -> Vec<String> {
        let ls = env.json(&["store", "ls"]);
        let mut names: Vec<String> = ls
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "artifact")
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let before = artifacts();
    for gone in ["debian-slim/raw", "debian-slim/qcow2", "debian-slim/iso", "exampleos/raw", "exampleos/iso"] {
        assert!(before.iter().any(|a| a == gone), "{gone} in {before:?}");
    }
    env.ok(&["images", "rm", "debian-slim"]);
    let gc = env.json(&["gc"]);
    assert_eq!(gc["kept_artifacts"], 5, "{gc}");
    assert_eq!(
        artifacts(),
        ["debian-base/iso", "debian-base/iso", "debian-base/qcow2", "debian-web/iso", "debian-web/qcow2"],
        "{gc}"
    );
    let deploy_repo = env.store().join("ostree-repo");
    let fsck = sh(&format!("ostree fsck --repo={} 2>&1", deploy_repo.display()));
    assert!(fsck.contains("no errors found"), "{fsck}");
    env.ok(&["store", "verify", "--full"]);
    let again = env.json(&["deploy", d, "--locked", "--format", "qcow2", "--output", q]);
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["artifact"], first["artifact"]);
    remove(&[&qcow2]);
}

#[test]
fn a_disk_that_does_not_boot_is_reported_with_its_last_console_lines() {
    let env = Env::new();
    let blank = env.path("blank.raw");
    fs_err::File::create(&blank).unwrap().set_len(16 << 20).unwrap();
    let out = env.cmd(&["boot", blank.to_str().unwrap(), "--timeout", "25", "--accel", "tcg"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no login prompt within 25 s"), "{err}");
    assert!(err.contains("SeaBIOS") || err.contains("Boot failed"), "the console's last lines are shown: {err}");
    let err = env.fail(&["boot", env.path("missing.qcow2").to_str().unwrap()]);
    assert!(err.contains("no such image file"), "{err}");
    let err = env.fail(&["boot", blank.to_str().unwrap(), "--run", "true"]);
    assert!(err.contains("--run needs --login"), "{err}");
}

/// The point of OSTree: a machine boots commit 1, deploys commit 2 (read from a second disk,
/// no network), reboots into it, rolls back and boots commit 1 again.
#[test]
fn an_update_inside_the_machine_boots_the_new_commit_and_rolls_back() {
    let env = env_with_cache();
    let base = project().join("descriptions/debian-base");
    let disk = env.path("machine.qcow2");
    // On an xfs root (the disk target's option).
    let c1 = env.json(&[
        "deploy",
        base.to_str().unwrap(),
        "--format",
        "qcow2",
        "--filesystem",
        "xfs",
        "--output",
        disk.to_str().unwrap(),
    ]);
    assert_eq!(c1["filesystem"], "xfs");
    let mounts = sh("findmnt -rno TARGET");
    assert!(!mounts.contains("xfs-mount"), "the xfs image is unmounted: {mounts}");
    let c1 = c1["commit"].as_str().unwrap().to_string();

    // Commit 2: the same image and ref, with a marker file.
    let v2 = env.path("v2");
    write(
        &v2.join("image.toml"),
        &format!("[image]\nname = \"debian-base-v2\"\nderived-from = \"{}\"\nversion = \"12.0.2\"\n", base.display()),
    );
    write(&v2.join("root/usr/share/strata-marker"), "commit 2\n");
    // No target of its own: the base's (a qcow2 disk) is inherited, so the disk options apply.
    let err = env.fail(&["deploy", v2.to_str().unwrap(), "--filesystem", "ntfs", "--output", "/nonexistent/x"]);
    assert!(err.contains("`ntfs` is not supported"), "{err}");
    let updates = env.path("updates");
    let repo = updates.join("repo");
    let c2 =
        env.json(&["export", v2.to_str().unwrap(), "--repo", repo.to_str().unwrap(), "--ref", "debian-base/x86_64"]);
    let c2 = c2["commit"].as_str().unwrap().to_string();
    let updates_disk = env.path("updates.ext4");
    sh(&format!("mkfs.ext4 -q -L updates -d {} {} 1G", updates.display(), updates_disk.display()));

    let d = disk.to_str().unwrap();
    let u = updates_disk.to_str().unwrap();
    let sudo = "echo debian | sudo -S -p '' ";
    let upgrade = boot(
        &env,
        d,
        &[
            "--persist",
            "--disk",
            u,
            "--login",
            "debian:debian",
            "--run",
            "findmnt -no FSTYPE /sysroot",
            "--run",
            &format!("{sudo}mount -o ro /dev/vdb /mnt"),
            "--run",
            &format!("{sudo}ostree pull-local /mnt/repo debian-base/x86_64"),
            "--run",
            &format!("{sudo}ostree admin deploy debian-base/x86_64"),
            "--run",
            "sync",
        ],
    );
    assert_eq!(upgrade["commands"].as_array().unwrap().len(), 5);
    assert_eq!(output_of(&upgrade, 0).trim(), "xfs", "{upgrade}");

    let updated = boot(
        &env,
        d,
        &[
            "--persist",
            "--login",
            "debian:debian",
            "--run",
            "cat /usr/share/strata-marker",
            "--run",
            "ostree admin status",
            "--run",
            // Back to commit 1 (this libostree has no `admin rollback`): deploy it as the default
            // again, keeping commit 2's deployment.
            &format!("{sudo}ostree admin deploy --retain {c1}"),
            "--run",
            "sync",
        ],
    );
    // (Kernel messages may interleave with command output on the serial console.)
    assert!(output_of(&updated, 0).contains("commit 2"), "{updated}");
    let status = output_of(&updated, 1);
    assert!(status.contains(&format!("* debian-base {c2}.0")), "booted commit 2: {status}");
    assert_eq!(status.matches("debian-base ").count(), 2, "two deployments: {status}");

    let rolled_back = boot(
        &env,
        d,
        &[
            "--uefi",
            "--persist",
            "--login",
            "debian:debian",
            "--run",
            "test ! -e /usr/share/strata-marker",
            "--run",
            "ostree admin status",
        ],
    );
    let status = output_of(&rolled_back, 1);
    assert!(status.contains(&format!("* debian-base {c1}")), "commit 1 is booted again: {status}");
    assert!(status.contains(&format!("  debian-base {c2}")), "commit 2 is kept: {status}");
}
