//! Builds the example policy plugins in `plugins/` for wasm32-wasip2 (their own target dir
//! under target/plugins) and returns the folder holding the `.wasm` files.

use std::path::{Path, PathBuf};

pub fn build_plugins() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("plugins");
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(root.join("plugins"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building plugins/ failed");
    target.join("wasm32-wasip2").join("release")
}
