//! `wsctl build`: cross-compiles the six handler binaries and the probe for `provided.al2023` with
//! cargo-zigbuild (linking against glibc 2.34), zips each as `bootstrap` reproducibly and
//! writes `manifest.json` with every zip's SHA-256.

use super::elf;
use super::manifest::{Artifact, Manifest, MANIFEST_VERSION};
use super::package::{self, Entry};
use crate::contract::FUNCTIONS;
use crate::stage::Arch;
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    /// Target architecture.
    pub arch: Arch,
    /// Output directory for the zips and the manifest.
    pub out_dir: PathBuf,
    /// Directory of the cargo workspace holding the handlers.
    pub workspace: PathBuf,
    /// Cargo package of the handler binaries.
    pub package: String,
    /// Cargo profile (the workspace's `lambda` profile: release, stripped, no debug info).
    pub profile: String,
}

/// What a build produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildResult {
    /// Path of the written manifest.
    pub manifest_path: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
    /// Newest glibc version any binary needs, e.g. `2.34`.
    pub glibc: Option<String>,
}

/// Checks that cargo-zigbuild, zig and the Rust target are installed; each missing piece
/// is an error carrying the command that installs it.
pub fn check_toolchain(arch: Arch) -> anyhow::Result<()> {
    let zigbuild = Command::new("cargo-zigbuild").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !zigbuild.is_ok_and(|s| s.success()) {
        bail!(
            "cargo-zigbuild is not installed; it links the handlers against glibc 2.34 for provided.al2023.\n\
             fix: pip install cargo-zigbuild ziglang   (or: cargo install --locked cargo-zigbuild && pip install ziglang)"
        );
    }
    let zig_on_path = Command::new("zig").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    let zig_from_pip =
        Command::new("python3").args(["-m", "ziglang", "version"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !zig_on_path.is_ok_and(|s| s.success()) && !zig_from_pip.is_ok_and(|s| s.success()) {
        bail!("zig is not installed (cargo-zigbuild needs it as the linker).\nfix: pip install ziglang");
    }
    let target = arch.rust_target();
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).stderr(Stdio::null()).output();
    if let Ok(out) = installed {
        if out.status.success() && !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == target) {
            bail!("the Rust target {target} is not installed.\nfix: rustup target add {target}");
        }
    }
    Ok(())
}

/// Builds, checks, zips and writes the manifest.
pub fn build(plan: &BuildPlan) -> anyhow::Result<BuildResult> {
    check_toolchain(plan.arch)?;
    // Taken before compiling: an edit during the build marks the result out of date.
    let source_hash = super::sources::handler_sources_hash(&plan.workspace);
    let target = plan.arch.rust_target();
    // The `.2.34` suffix makes zig link against glibc 2.34, the version provided.al2023 has.
    let zig_target = format!("{target}.2.34");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&plan.workspace)
        .args(["zigbuild", "--profile", &plan.profile, "--package", &plan.package, "--bins", "--target", &zig_target])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let output = cmd
        .spawn()
        .context("cannot start `cargo zigbuild`")?
        .wait_with_output()
        .context("waiting for `cargo zigbuild`")?;
    if !output.status.success() {
        bail!("`cargo zigbuild` failed ({}); see the compiler output above", output.status);
    }
    let executables = executables_from_messages(&output.stdout);

    std::fs::create_dir_all(&plan.out_dir).with_context(|| format!("cannot create {}", plan.out_dir.display()))?;
    let mut functions = BTreeMap::new();
    let mut newest_glibc = None;
    for f in crate::contract::packaged() {
        let Some(exe) = executables.get(f.name) else {
            bail!(
                "package {} built no binary named `{}`; wsctl deploys {} (one bin per function)",
                plan.package,
                f.name,
                FUNCTIONS.map(|f| f.name).join(", ")
            );
        };
        let bytes = std::fs::read(exe).with_context(|| format!("cannot read {}", exe.display()))?;
        let glibc = elf::check(&bytes, plan.arch).with_context(|| format!("{} ({})", f.name, exe.display()))?;
        newest_glibc = newest_glibc.max(glibc);
        let zip = package::zip(&[Entry { name: "bootstrap", data: &bytes }])?;
        let file = format!("{}.zip", f.name);
        let path = plan.out_dir.join(&file);
        std::fs::write(&path, &zip).with_context(|| format!("cannot write {}", path.display()))?;
        functions.insert(
            f.name.to_owned(),
            Artifact { file, sha256: hex::encode(Sha256::digest(&zip)), size: zip.len() as u64 },
        );
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        architecture: plan.arch.lambda_name().to_owned(),
        target: zig_target,
        functions,
        source_hash,
    };
    let manifest_path = plan.out_dir.join("manifest.json");
    manifest.save(&manifest_path).with_context(|| format!("cannot write {}", manifest_path.display()))?;
    Ok(BuildResult { manifest_path, manifest, glibc: newest_glibc.map(|(a, b)| format!("{a}.{b}")) })
}

/// Binary name → path, from cargo's JSON messages (`compiler-artifact` with an executable).
fn executables_from_messages(stdout: &[u8]) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    for line in stdout.split(|&b| b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        if msg.get("reason").and_then(|r| r.as_str()) != Some("compiler-artifact") {
            continue;
        }
        let Some(exe) = msg.get("executable").and_then(|e| e.as_str()) else { continue };
        let Some(name) = msg.pointer("/target/name").and_then(|n| n.as_str()) else { continue };
        found.insert(name.to_owned(), Path::new(exe).to_owned());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_read_from_cargo_messages() {
        let msgs =
            br#"{"reason":"compiler-artifact","target":{"name":"connect","kind":["bin"]},"executable":"/t/connect"}
{"reason":"compiler-artifact","target":{"name":"wsctl_handlers","kind":["lib"]},"executable":null}
not json
{"reason":"build-finished","success":true}"#;
        let found = executables_from_messages(msgs);
        assert_eq!(found.len(), 1);
        assert_eq!(found["connect"], PathBuf::from("/t/connect"));
    }
}
