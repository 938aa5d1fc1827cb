//! `GlueBuilder::dpdk` (feature `dpdk`, root): a library user hands the builder EAL arguments
//! and gets every port EAL probed as a device, with no code of blink's apps. Two `net_null`
//! vdevs (no kernel interface, no hugepages) become devices 0 and 1, each with its own
//! address, on a DPDK mempool the builder made; an out-of-range `on_device` names the field.

#![cfg(feature = "dpdk")]

use blink_glue::{Glue, GlueBuilder, GlueError};

#[test]
fn eal_args_in_the_builder_open_every_port() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let strict = std::env::var("BLINK_REQUIRE_ROOT").is_ok_and(|v| v == "1")
            || std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!strict, "eal_args_in_the_builder_open_every_port needs root (EAL)");
        eprintln!("skipped: needs root");
        return;
    }
    let eal = format!(
        "--no-huge -m 256 --no-pci --vdev=net_null0 --vdev=net_null1 -l 0 --file-prefix=blink-glue-dpdk-{} \
         --no-telemetry --log-level=lib.eal:error",
        std::process::id()
    );
    let b = GlueBuilder::new().dpdk(&eal, 1500);
    assert!(b.error().is_none(), "{:?}", b.error());
    assert_eq!(b.nb_devices(), 2);
    // Settings name a device by index once several were added at a time.
    match GlueBuilder::new().dpdk(&eal, 1500).on_device(2).build::<()>() {
        Err(GlueError::Config { field, msg }) => assert_eq!(field, "device", "{msg}"),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("device 2 of 2 accepted"),
    }
    let mut g: Glue<()> = b
        .on_device(0)
        .addr("10.200.76.2/24".parse().unwrap())
        .on_device(1)
        .addr("10.200.77.2/24".parse().unwrap())
        .pool_size(2048)
        .build()
        .unwrap();
    let notes = g.device_notes().join("\n");
    assert!(notes.contains("dpdk: port 0 (net_null)"), "{notes}");
    assert!(notes.contains("dpdk: port 1 (net_null)"), "{notes}");
    let st = g.stack();
    assert_eq!(st.devs.len(), 2);
    assert_eq!(st.fib.lookup("10.200.76.9".parse().unwrap()).unwrap().dev, 0);
    assert_eq!(st.fib.lookup("10.200.77.9".parse().unwrap()).unwrap().dev, 1);
    // The ports are live: net_null hands out frames, which the stack takes and frees.
    for _ in 0..10 {
        g.periodic();
    }
    assert!(g.stack().devs[0].dev.stats().rx_packets > 0);
    assert!(g.stack().devs[1].dev.stats().rx_packets > 0);
}
