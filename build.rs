//! Gives the crate's own tests, examples and benches an rpath to the
//! libtorch that `torch-sys` linked, so they run without LD_LIBRARY_PATH.
//! Downstream crates do not inherit this; the README explains their set-up.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
