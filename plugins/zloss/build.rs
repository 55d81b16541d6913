//! rpath to libtorch for the plugin library and its tests.
fn main() {
    dctk_plugin_build::link_libtorch();
}
