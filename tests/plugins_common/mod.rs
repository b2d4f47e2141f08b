//! Shared by the plugin tests: builds the plugin workspace once per test binary (its own
//! target dir, so it never waits on the outer build's lock) and writes `[[plugins]]` TOML.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds `plugins/` for wasm32-wasip2 (release) once and returns the folder of `.wasm` files.
pub fn wasm_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = root();
        let target = root.join("target").join("plugins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(root.join("plugins"))
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("run cargo to build the plugins");
        assert!(
            out.status.success(),
            "building plugins/ for wasm32-wasip2 failed (rustup target add wasm32-wasip2?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("wasm32-wasip2").join("release")
    })
}

/// The path of a built plugin, e.g. `wasm("mask_email")`.
pub fn wasm(name: &str) -> PathBuf {
    let p = wasm_dir().join(format!("{name}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// One `[[plugins]]` entry; `config` is an inline TOML table body (`tables = ["x"]`).
pub fn plugin_toml(name: &str, path: &Path, config: &str) -> String {
    format!(
        "[[plugins]]\nname = \"{name}\"\npath = \"{}\"\nconfig = {{ {config} }}\n",
        path.display()
    )
}
