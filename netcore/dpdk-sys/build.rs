//! Finds the system DPDK with pkg-config, compiles the C shim with `cc`, and generates the
//! bindings with bindgen. Linking the shared libraries is enough for vdev drivers (net_tap,
//! net_af_packet, net_memif, net_ring): EAL loads them as plugins from its PMD directory.

fn main() {
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=build.rs");
    // Built as a plain workspace member without blink's `dpdk` feature: nothing to do.
    #[cfg(feature = "enabled")]
    enabled::build();
}

#[cfg(feature = "enabled")]
mod enabled {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    pub fn build() {
        let lib = match pkg_config::Config::new().atleast_version("22.11").probe("libdpdk") {
            Ok(l) => l,
            Err(e) => panic!(
                "blink-dpdk-sys: DPDK >= 22.11 not found with pkg-config ({e}).\n\
             Install it (Debian/Ubuntu: apt-get install libdpdk-dev pkg-config clang libclang-dev), \
             or build blink without the `dpdk` feature."
            ),
        };
        // The raw cflags carry `-include rte_config.h` and `-march=...`, which the pkg-config crate
        // does not expose; both the shim and bindgen need exactly what DPDK's users compile with.
        let out = Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("pkg-config ran a moment ago");
        let cflags: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut args: Vec<String> = Vec::new();
        let mut it = cflags.iter();
        while let Some(a) = it.next() {
            if a == "-include" {
                if let Some(f) = it.next() {
                    args.push(a.clone());
                    args.push(f.clone());
                }
            } else {
                args.push(a.clone());
            }
        }

        let mut cc = cc::Build::new();
        cc.file("shim.c").opt_level(2).warnings(true);
        for p in &lib.include_paths {
            cc.include(p);
        }
        for a in &args {
            cc.flag(a);
        }
        cc.compile("blink_dpdk_shim");

        let bindings = bindgen::Builder::default()
            .header("shim.h")
            .clang_args(&args)
            .allowlist_function("rte_eal_.*")
            .allowlist_function("rte_eth_.*")
            .allowlist_function("rte_pktmbuf_.*")
            .allowlist_function("rte_mempool_.*")
            .allowlist_function("rte_ring_(create|free|lookup|count|free_count)")
            .allowlist_function("rte_strerror")
            .allowlist_function("rte_socket_id")
            .allowlist_function("rte_version")
            .allowlist_function("blink_.*")
            .allowlist_type("rte_mbuf")
            .allowlist_type("blink_rx_info")
            .allowlist_type("rte_eth_.*")
            .allowlist_var("RTE_MAX_ETHPORTS")
            .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
            .allowlist_var("RTE_PKTMBUF_HEADROOM")
            .allowlist_var("RTE_ETH_LINK_.*")
            .allowlist_var("RTE_ETH_RSS_.*")
            .allowlist_var("RTE_MEMPOOL_CACHE_MAX_SIZE")
            .allowlist_var("RTE_MBUF_PRIV_ALIGN")
            .allowlist_var("RING_F_.*")
            .allowlist_var("E.*")
            .default_enum_style(bindgen::EnumVariation::Consts)
            .derive_default(true)
            .layout_tests(false)
            .generate_comments(false)
            .generate()
            .expect("bindgen over DPDK's headers (needs clang/libclang-dev)");
        let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        bindings
            .write_to_file(out.join("bindings.rs"))
            .expect("write bindings.rs");
    }
}
