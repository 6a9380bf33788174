//! A directory tree to archive (files of many sizes, binary content, dotfiles, nested and
//! empty directories, symlinks, permissions) and a manifest of what a tree is.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use super::run_ok;

/// What a file tree is: relative path → (kind, mode, sha256 of content or link target).
pub fn manifest(root: &Path) -> BTreeMap<String, (char, u32, String)> {
    let mut out = BTreeMap::new();
    let sums = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . -type f -exec sha256sum {} +")
            .arg("sh")
            .arg(root),
    );
    let sums: BTreeMap<String, String> = sums
        .lines()
        .map(|l| {
            let (sum, path) = l.split_once("  ").unwrap();
            (path.trim_start_matches("./").to_string(), sum.to_string())
        })
        .collect();
    fn walk(
        root: &Path,
        dir: &Path,
        sums: &BTreeMap<String, String>,
        out: &mut BTreeMap<String, (char, u32, String)>,
    ) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap().display().to_string();
                out.insert(rel, ('l', 0, target));
            } else if meta.is_dir() {
                out.insert(rel, ('d', mode, String::new()));
                walk(root, &path, sums, out);
            } else {
                let sum = sums.get(&rel).cloned().unwrap_or_default();
                out.insert(rel, ('f', mode, sum));
            }
        }
    }
    walk(root, root, &sums, &mut out);
    out
}

/// 1000 files: nested directories, sizes from empty to 64 KiB, binary content, dotfiles,
/// names with spaces and unicode, an empty directory, symlinks, and a few odd permissions.
pub fn seed(root: &Path, files: usize) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..files {
        let dir = root.join(format!("uploads/{:02}/{}", i % 17, i % 5));
        std::fs::create_dir_all(&dir).unwrap();
        let name = match i % 10 {
            0 => format!(".hidden-{i}"),
            1 => format!("photo {i} ünïcødé.jpg"),
            _ => format!("file-{i}.bin"),
        };
        let size = match i % 7 {
            0 => 0,
            1 => 1,
            2 => 65_536,
            _ => (i * 131) % 9000,
        };
        let bytes: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        if i % 50 == 3 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        if i % 50 == 4 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    symlink("uploads/00/0", root.join("latest")).unwrap();
    symlink("../../does-not-exist", root.join("uploads/dangling")).unwrap();
    std::fs::write(root.join(".config"), "top-level dotfile\n").unwrap();
}

/// What a failed upgrade may leave in a tree [`seed`] made: files deleted and overwritten,
/// directories removed, new files and directories added.
pub fn damage(root: &Path) {
    let mut n = 0;
    for (rel, (kind, _, _)) in &manifest(root) {
        if *kind != 'f' {
            continue;
        }
        n += 1;
        let path = root.join(rel);
        if n % 3 == 0 {
            std::fs::remove_file(&path).unwrap();
        } else if n % 10 == 1 {
            std::fs::write(&path, b"overwritten by the new version").unwrap();
        }
    }
    std::fs::remove_dir_all(root.join("uploads/05")).unwrap();
    std::fs::remove_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("new-version/cache")).unwrap();
    std::fs::write(root.join("new-version/cache/x"), "new").unwrap();
    std::fs::write(root.join(".new-dotfile"), "new").unwrap();
}
