//! The README's shell examples, run as pasted: every ```sh block preceded by the marker line
//! `<!-- ci: run -->`, in order, in one bash, from a scratch directory that holds what the
//! examples expect to find (`./target/release/blink` is this build's binary, README.md a copy
//! of the README). As root, `sudo` is a function that runs its arguments, and `cargo` one
//! that does nothing (the binary is built already): nothing else of the text is changed.
//!
//! The examples make their own namespaces (`blinkns`, 10.200.0.0/24 inside it, and the
//! exception path's `blinkkni`, the several ports' `blinkmp`) and remove them;
//! the test removes it too if a block failed half-way.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const MARKER: &str = "<!-- ci: run -->";
/// Blocks that need the DPDK build: run by `cargo test --features dpdk --test readme` (which
/// runs only these), not by the default build.
const MARKER_DPDK: &str = "<!-- ci: run dpdk -->";

/// The blocks this build runs, with the README line each starts on.
fn runnable_blocks(readme: &str) -> Vec<(usize, String)> {
    let marker = if cfg!(feature = "dpdk") { MARKER_DPDK } else { MARKER };
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == marker {
            assert!(
                lines.get(i + 1).is_some_and(|l| l.trim() == "```sh"),
                "README line {}: the marker must be followed by a ```sh block",
                i + 1
            );
            let start = i + 2;
            let end = start
                + lines[start..]
                    .iter()
                    .position(|l| l.trim() == "```")
                    .unwrap_or_else(|| panic!("README line {start}: unterminated block"));
            blocks.push((start + 1, lines[start..end].join("\n")));
            i = end;
        }
        i += 1;
    }
    blocks
}

#[test]
fn the_marked_blocks_are_found() {
    let text = "a\n<!-- ci: run -->\n```sh\necho one\necho two\n```\n```sh\nnot this\n```\n\
                <!-- ci: run dpdk -->\n```sh\necho dpdk\n```\n";
    if cfg!(feature = "dpdk") {
        assert_eq!(runnable_blocks(text), vec![(12, "echo dpdk".to_string())]);
    } else {
        assert_eq!(runnable_blocks(text), vec![(4, "echo one\necho two".to_string())]);
    }
}

#[test]
fn readme_examples_run_as_pasted() {
    if !require_root("readme_examples_run_as_pasted") {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let blocks = runnable_blocks(&readme);
    let want = if cfg!(feature = "dpdk") { 1 } else { 5 };
    assert!(
        blocks.len() >= want,
        "expected the examples to be marked `{MARKER}` / `{MARKER_DPDK}`"
    );

    let dir = std::env::temp_dir().join(format!("blink-readme-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("target/release")).expect("scratch dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_blink"), dir.join("target/release/blink")).expect("link blink");
    std::fs::copy(repo.join("README.md"), dir.join("README.md")).expect("copy README");

    let cleanup = || {
        let _ = Command::new("pkill").args(["-INT", "-x", "blink"]).status();
        let _ = Command::new("pkill").args(["-f", "http.server 8000"]).status();
        let _ = Command::new("ip").args(["netns", "del", "blinkns"]).status();
        let _ = Command::new("ip").args(["netns", "del", "blinkdp"]).status();
        let _ = Command::new("ip").args(["netns", "del", "blinkkni"]).status();
        let _ = Command::new("ip").args(["netns", "del", "blinkmp"]).status();
    };
    cleanup();
    for (line, block) in &blocks {
        // From a file, as a pasted line would be typed: with `bash -c`, the script's text is
        // in the shell's command line, where `pkill -f` would find itself.
        let script = format!("sudo() {{ \"$@\"; }}\ncargo() {{ :; }}\nset -ex\n{block}\n");
        std::fs::write(dir.join("block.sh"), script).expect("write block");
        let out = Command::new("bash")
            .arg("block.sh")
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            cleanup();
            panic!(
                "README block at line {line} failed ({}):\n{stdout}\n{stderr}",
                out.status
            );
        }
        eprintln!("README block at line {line}: ok");
        // What each block is there to show, checked in its output.
        let both = format!("{stdout}{stderr}");
        if block.contains("ping -c 5 10.200.0.2") {
            assert!(both.contains("5 received"), "line {line}: the kernel's pings:\n{both}");
        }
        if block.contains("blink route echo") {
            assert!(both.contains("10.200.0.0/24 dev btap0"), "line {line}: routes:\n{both}");
            assert!(both.contains("consume_skb"), "line {line}: the trace:\n{both}");
        }
        if block.contains("--dev dpdk") {
            assert!(both.contains("3 received"), "line {line}: the kernel's pings:\n{both}");
            // The echoed stream's hash, then the file's: the same.
            let hashes: Vec<&str> = both
                .split_whitespace()
                .filter(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
                .collect();
            assert!(
                hashes.len() >= 2 && hashes[0] == hashes[1],
                "line {line}: echoed bytes:\n{both}"
            );
        }
        if block.contains("tap:mtap0,tap:mtap1") {
            // Both ports served, each with its own address.
            assert_eq!(
                both.lines().filter(|l| l.trim() == "1024").count(),
                2,
                "line {line}: HTTP on each port:\n{both}"
            );
            assert!(
                both.contains("inet 10.200.20.2/24") && both.contains("inet 10.200.21.2/24"),
                "line {line}: blink link:\n{both}"
            );
        }
        if block.contains("--to-kernel") {
            // Both shares on one address, and each ping answered once.
            assert!(both.contains("\n1024\n"), "line {line}: blink's HTTP:\n{both}");
            assert!(
                both.contains("hello from the kernel"),
                "line {line}: the kernel's port 22:\n{both}"
            );
            assert!(
                both.contains("3 received") && !both.contains("DUP"),
                "line {line}: ping:\n{both}"
            );
            assert!(both.contains("Exc: ToKernel"), "line {line}: counters:\n{both}");
        }
        if block.contains("ab -n 20000") {
            assert!(both.contains("Failed requests:        0"), "line {line}: ab:\n{both}");
            assert!(
                both.contains("requests: 2000 ok, 0 failed"),
                "line {line}: load:\n{both}"
            );
        }
    }
    cleanup();
    let _ = std::fs::remove_dir_all(&dir);
}
