//! Records what the handshake compares: the libtorch version (from `$LIBTORCH`) and
//! the exact rustc, and adds libtorch's rpath for the SDK's own tests.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    dctk_plugin_build::link_libtorch();
    println!("cargo:rustc-env=DCTK_PLUGIN_RUSTC_VERSION={}", dctk_plugin_build::rustc_version());
}
