//! Packet capture at a device boundary, into classic pcap files that tcpdump, tshark and
//! Wireshark open.
//!
//! `--pcap FILE` attaches a [`PcapDumper`] where frames enter and leave a device, so what the
//! capture shows is exactly what crossed the boundary, headers and all. A frame arrives here
//! as the stack holds it — a linear header part plus payload fragments living in other mbufs —
//! and is written without being linearised first: the record header and then each segment go
//! straight into the buffered writer, which is the only copy, and it happens only when capture
//! is enabled.
//!
//! The file format is the classic libpcap one (magic `0xa1b2c3d4`, microsecond timestamps,
//! `LINKTYPE_ETHERNET`), the format every tool reads. The global header is written by the
//! `pcap-file` crate. The 16-byte record headers are written here: `pcap-file` 2.0's
//! `PcapWriter` owns its writer with no way to reach it again short of consuming the writer,
//! so it could not offer [`flush`](PcapDumper::flush) — and a capture that can only be
//! flushed by ending it is useless on a long-running stack — and its `PcapPacket` needs the
//! frame in one contiguous slice, which would cost a second copy.
//!
//! Linux: the `AF_PACKET` taps in `dev_queue_xmit_nit()` / `__netif_receive_skb_core()`
//! (net/core/dev.c) feeding libpcap's `pcap_dump()`; DPDK: `rte_pcapng` and the `net_pcap` PMD.

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, TsResolution};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Bytes kept of each frame; longer frames are cut, with their true length in the record
/// (`orig_len`), as `tcpdump -s 65535` does. 65535 covers any frame within a 64 KiB MTU.
pub const SNAPLEN: u32 = 65535;

/// Size of the buffer between the dumper and the file: a few dozen full-size frames per
/// write(2), so capture does not turn every packet into a system call.
const WRITE_BUFFER: usize = 64 * 1024;

/// Errors of a pcap capture. Each names the capture file, since several devices may capture
/// at once.
#[derive(Debug, Error)]
pub enum PcapError {
    /// The capture file could not be created.
    #[error("pcap {}: cannot create: {source}", .path.display())]
    Create {
        /// File given.
        path: PathBuf,
        /// Why the system refused.
        source: io::Error,
    },
    /// Writing or flushing the capture failed. The file is left incomplete and the dumper
    /// refuses further frames, because a partly written record would make every later record
    /// unreadable.
    #[error("pcap {}: write failed: {source}", .path.display())]
    Write {
        /// File being written.
        path: PathBuf,
        /// Why the write failed.
        source: io::Error,
    },
    /// The timestamp does not fit pcap's 32-bit seconds field (it is after 2106 if counted
    /// from the Unix epoch, as pcap expects).
    #[error("pcap {}: timestamp of {secs} s does not fit pcap's 32-bit seconds", .path.display())]
    Timestamp {
        /// File being written.
        path: PathBuf,
        /// Seconds in the timestamp given.
        secs: u64,
    },
}

/// Writes frames into a pcap file (or any [`Write`]), one record per frame.
///
/// Records are buffered; call [`flush`](Self::flush) to make them visible to a reader while
/// the stack runs. Dropping the dumper flushes too (an error then can only be logged).
#[derive(Debug)]
pub struct PcapDumper<W: Write = BufWriter<File>> {
    out: W,
    /// Names the capture in errors: the file path, or whatever the caller calls its writer.
    path: PathBuf,
    frames: u64,
    /// Set by the first failed write; see [`PcapError::Write`].
    failed: bool,
}

impl PcapDumper<BufWriter<File>> {
    /// Creates (or truncates) the capture file `path` and writes the pcap global header.
    pub fn create(path: &Path) -> Result<Self, PcapError> {
        let file = File::create(path).map_err(|source| PcapError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_writer(BufWriter::with_capacity(WRITE_BUFFER, file), path)
    }
}

impl<W: Write> PcapDumper<W> {
    /// Starts a capture on `out`, writing the pcap global header; `name` stands for it in
    /// errors. Frames are written in several pieces each, so `out` should be buffered.
    pub fn from_writer(out: W, name: &Path) -> Result<Self, PcapError> {
        let mut dumper = PcapDumper {
            out,
            path: name.to_path_buf(),
            frames: 0,
            failed: false,
        };
        // Host byte order, like libpcap's own files; the record headers below use the same.
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        header
            .write_to(&mut dumper.out)
            .map_err(|e| match e {
                pcap_file::PcapError::IoError(source) => source,
                other => io::Error::other(other.to_string()),
            })
            .map_err(|source| dumper.write_failed(source))?;
        Ok(dumper)
    }

    /// Appends one frame received or sent at `ts` (time since the Unix epoch, or the virtual
    /// clock in tests), given as the byte segments it is made of: the linear header part
    /// followed by the payload fragments. The record's original length is the sum of the
    /// segments; at most [`SNAPLEN`] bytes of it are kept. Libpcap: `pcap_dump()`.
    pub fn write_frame(&mut self, ts: Duration, segments: &[&[u8]]) -> Result<(), PcapError> {
        if self.failed {
            return Err(self.write_failed(io::Error::other("an earlier write failed; the capture is incomplete")));
        }
        let secs = ts.as_secs();
        let ts_sec = u32::try_from(secs).map_err(|_| PcapError::Timestamp {
            path: self.path.clone(),
            secs,
        })?;
        let orig_len: usize = segments.iter().map(|s| s.len()).sum();
        let incl_len = orig_len.min(SNAPLEN as usize);
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&ts_sec.to_ne_bytes());
        record[4..8].copy_from_slice(&ts.subsec_micros().to_ne_bytes());
        // incl_len <= SNAPLEN, and a frame past 4 GiB cannot exist: neither conversion cuts.
        record[8..12].copy_from_slice(&(incl_len as u32).to_ne_bytes());
        record[12..16].copy_from_slice(&u32::try_from(orig_len).unwrap_or(u32::MAX).to_ne_bytes());

        let result = self.write_record(&record, segments, incl_len);
        result.map_err(|source| self.write_failed(source))?;
        self.frames += 1;
        Ok(())
    }

    fn write_record(&mut self, record: &[u8], segments: &[&[u8]], incl_len: usize) -> io::Result<()> {
        self.out.write_all(record)?;
        let mut left = incl_len;
        for segment in segments {
            if left == 0 {
                break;
            }
            let take = segment.len().min(left);
            self.out.write_all(&segment[..take])?;
            left -= take;
        }
        Ok(())
    }

    /// Pushes buffered records to the file, so a reader (`tcpdump -r`) sees every frame
    /// written so far.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.out.flush().map_err(|source| self.write_failed(source))
    }

    /// Frames written since the capture started.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The capture's file path (or the name given to [`from_writer`](Self::from_writer)).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer underneath, e.g. the bytes of an in-memory capture.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn write_failed(&mut self, source: io::Error) -> PcapError {
        self.failed = true;
        PcapError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl<W: Write> Drop for PcapDumper<W> {
    fn drop(&mut self) {
        if self.failed {
            return;
        }
        if let Err(e) = self.flush() {
            log::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;
    use std::process::Command;

    /// A minimal Ethernet + IPv4 + UDP frame with `payload` bytes of payload, so tools that
    /// decode the capture see real packets.
    fn udp_frame(src_port: u16, payload: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2]); // dst MAC
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]); // src MAC
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let total = (20 + 8 + payload) as u16;
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let mut sum: u32 = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&src_port.to_be_bytes());
        f.extend_from_slice(&9u16.to_be_bytes());
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("blink-pcap-{}-{tag}.pcap", std::process::id()))
    }

    /// Writes the three test frames, the second given as header + payload segments.
    fn write_three(dumper: &mut PcapDumper<impl Write>) -> Vec<(Duration, Vec<u8>)> {
        let frames = vec![
            (Duration::new(1_700_000_000, 1_000), udp_frame(1000, 10)),
            (Duration::new(1_700_000_000, 250_000_000), udp_frame(1001, 1400)),
            (Duration::new(1_700_000_001, 999_999_000), udp_frame(1002, 0)),
        ];
        dumper.write_frame(frames[0].0, &[&frames[0].1]).unwrap();
        let (head, payload) = frames[1].1.split_at(14 + 20 + 8);
        dumper.write_frame(frames[1].0, &[head, payload]).unwrap();
        dumper.write_frame(frames[2].0, &[&frames[2].1]).unwrap();
        assert_eq!(dumper.frames(), 3);
        frames
    }

    #[test]
    fn file_reads_back_with_pcap_file() {
        let path = temp_path("readback");
        let mut dumper = PcapDumper::create(&path).unwrap();
        let frames = write_three(&mut dumper);
        dumper.flush().unwrap();
        drop(dumper);

        let mut reader = PcapReader::new(File::open(&path).unwrap()).unwrap();
        let header = reader.header();
        assert_eq!(header.datalink, DataLink::ETHERNET);
        assert_eq!(header.snaplen, SNAPLEN);
        assert_eq!((header.version_major, header.version_minor), (2, 4));
        let mut n = 0;
        while let Some(pkt) = reader.next_packet() {
            let pkt = pkt.unwrap();
            let (ts, bytes) = &frames[n];
            assert_eq!(pkt.timestamp, *ts, "frame {n}");
            assert_eq!(pkt.orig_len as usize, bytes.len(), "frame {n}");
            assert_eq!(&pkt.data[..], &bytes[..], "frame {n}");
            n += 1;
        }
        assert_eq!(n, 3);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn drop_flushes() {
        let path = temp_path("drop");
        {
            let mut dumper = PcapDumper::create(&path).unwrap();
            dumper.write_frame(Duration::ZERO, &[&udp_frame(7, 3)]).unwrap();
            // Still buffered: only the file exists so far.
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        }
        let expected = 24 + 16 + (14 + 20 + 8 + 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), expected);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn long_frames_are_cut_to_snaplen_keeping_orig_len() {
        let mut dumper = PcapDumper::from_writer(Vec::new(), Path::new("memory")).unwrap();
        let head = [0xabu8; 100];
        let tail = vec![0xcdu8; SNAPLEN as usize];
        dumper.write_frame(Duration::ZERO, &[&head, &tail]).unwrap();
        dumper.write_frame(Duration::ZERO, &[]).unwrap();
        let bytes = dumper.get_ref().clone();
        assert_eq!(bytes.len(), 24 + 16 + SNAPLEN as usize + 16);
        let record = &bytes[24..40];
        let field = |i: usize| u32::from_ne_bytes(record[i..i + 4].try_into().unwrap());
        assert_eq!(field(8), SNAPLEN);
        assert_eq!(field(12), SNAPLEN + 100);
        assert_eq!(&bytes[40..140], &head[..]);
        assert!(bytes[140..40 + SNAPLEN as usize].iter().all(|&b| b == 0xcd));
        let empty = &bytes[40 + SNAPLEN as usize..];
        assert_eq!(empty[8..16], [0; 8]);
    }

    #[test]
    fn errors_name_the_file() {
        let path = Path::new("/nonexistent-blink-dir/cap.pcap");
        let err = PcapDumper::create(path).unwrap_err();
        assert!(matches!(err, PcapError::Create { .. }));
        assert!(
            err.to_string()
                .starts_with("pcap /nonexistent-blink-dir/cap.pcap: cannot create"),
            "{err}"
        );

        let mut dumper = PcapDumper::from_writer(Vec::new(), Path::new("mem")).unwrap();
        let late = Duration::from_secs(u64::from(u32::MAX) + 1);
        let err = dumper.write_frame(late, &[&[0u8; 14]]).unwrap_err();
        assert!(err.to_string().starts_with("pcap mem: timestamp"), "{err}");
        assert_eq!(dumper.frames(), 0);
    }

    /// A writer that fails after `budget` bytes, to check that a broken capture stays broken.
    struct Failing {
        budget: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_failure_stops_the_capture() {
        let mut dumper = PcapDumper::from_writer(Failing { budget: 24 + 20 }, Path::new("disk")).unwrap();
        let frame = udp_frame(1, 0);
        let err = dumper.write_frame(Duration::ZERO, &[&frame]).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        dumper.out.budget = 1 << 20;
        let err = dumper.write_frame(Duration::ZERO, &[&frame]).unwrap_err();
        assert!(matches!(err, PcapError::Write { .. }));
        assert_eq!(dumper.frames(), 0);
    }

    /// tcpdump is the reader users reach for; run it when it is installed, skip otherwise.
    #[test]
    fn tcpdump_reads_the_file() {
        let path = temp_path("tcpdump");
        let mut dumper = PcapDumper::create(&path).unwrap();
        write_three(&mut dumper);
        drop(dumper);
        let output = match Command::new("tcpdump").arg("-r").arg(&path).arg("-nn").output() {
            Ok(output) => output,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                println!("tcpdump not installed: skipped");
                std::fs::remove_file(&path).unwrap();
                return;
            }
            Err(e) => panic!("running tcpdump: {e}"),
        };
        std::fs::remove_file(&path).unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "tcpdump failed: {stderr}");
        assert_eq!(stdout.lines().count(), 3, "tcpdump printed:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("10.0.0.1.1001 > 10.0.0.2.9: UDP, length 1400"),
            "{stdout}"
        );
    }
}
