//! `blink httpd`: an HTTP/1.1 server on glue, like mTCP's epserver. Keep-alive (HTTP/1.1 by
//! default, HTTP/1.0 on request), pipelined requests answered in order, GET and HEAD of a
//! fixed-size body (`--size`) or of files under a directory (`--root`).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blink_glue::tcp::TcpConfig;
use blink_glue::{Closed, Glue, GlueError, GlueHandler, Socket};
use clap::Args;

use crate::args::{usage, DevArgs};
use crate::cores::{report_cores, run_cores, CoreApp, RunOpts};
use crate::setup::{build_cores, stop_flag, SetupError};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("content").required(true).args(["size", "root"])))]
pub struct HttpdArgs {
    #[command(flatten)]
    pub dev: DevArgs,
    /// TCP port to serve on.
    #[arg(long, default_value_t = 80)]
    pub port: u16,
    /// Answer every GET with a body of this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub size: Option<u64>,
    /// Serve the files under this directory.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// Longest request head accepted (a longer one is answered 400 and the connection closed).
const MAX_HEAD: usize = 16 * 1024;
/// Stop parsing pipelined requests while this much response is waiting to be sent.
const MAX_PENDING_OUT: usize = 1 << 20;
const MAX_HEADERS: usize = 64;

/// What the server serves.
#[derive(Debug, Clone)]
pub enum Content {
    /// Every path answers with the same body (one copy, shared by every core's `Httpd`).
    Fixed(Arc<[u8]>),
    /// Files under a (canonical) directory.
    Root(PathBuf),
}

/// A parsed request, as far as the server cares.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Keep the connection open after the response.
    pub keep_alive: bool,
    /// Bytes of the input the request used (head plus any body).
    pub consumed: usize,
}

/// The outcome of parsing the front of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    Complete(Request),
    /// More bytes needed.
    Partial,
    /// Garbage: answer 400 and close.
    Bad,
}

/// Parse one request from the front of `buf`.
pub fn parse_request(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parse::Partial,
        _ => return Parse::Bad,
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Parse::Bad;
    };
    let mut keep_alive = version == 1;
    let mut body = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                keep_alive = false;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                Some(n) if n <= MAX_HEAD => body = n,
                _ => return Parse::Bad,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // A GET/HEAD server has no use for chunked request bodies.
            return Parse::Bad;
        }
    }
    if buf.len() < head_len + body {
        return Parse::Partial;
    }
    Parse::Complete(Request {
        method: method.to_string(),
        path: path.to_string(),
        keep_alive,
        consumed: head_len + body,
    })
}

/// Map a request path to a file under `root`: None for anything that tries to leave it
/// (`..`, absolute components, NUL, backslashes, or a symlink pointing outside).
pub fn resolve(root: &Path, url_path: &str) -> Result<PathBuf, u16> {
    let p = url_path.split(['?', '#']).next().unwrap_or("");
    if !p.starts_with('/') || p.contains('\0') || p.contains('\\') || p.contains('%') {
        // Percent-encoding is refused rather than decoded: an encoded `..` cannot sneak by.
        return Err(if p.contains('%') || p.contains('\\') { 403 } else { 400 });
    }
    let rel = Path::new(&p[1..]);
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(403),
        }
    }
    let mut full = root.join(rel);
    if full.is_dir() {
        full.push("index.html");
    }
    let canon = full.canonicalize().map_err(|_| 404u16)?;
    if !canon.starts_with(root) {
        return Err(403);
    }
    if !canon.is_file() {
        return Err(404);
    }
    Ok(canon)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// One connection: input not yet parsed, responses not yet sent.
#[derive(Default)]
pub struct Conn {
    inbuf: Vec<u8>,
    /// Response pieces in order, with how much of the first one is sent. Bodies are shared
    /// (`Arc`: one fixed body serves every core), so a fixed body is never copied per request before the socket copies it.
    out: std::collections::VecDeque<Arc<[u8]>>,
    out_off: usize,
    out_bytes: usize,
    /// Close once `out` is sent (Connection: close, HTTP/1.0, bad request, or peer EOF).
    close_after: bool,
    eof: bool,
}

/// Counters printed at the end.
#[derive(Default, Debug, Clone)]
pub struct HttpStats {
    pub connections: u64,
    pub requests: u64,
    pub status_2xx: u64,
    pub status_4xx: u64,
    pub body_bytes: u64,
    pub resets: u64,
}

impl HttpStats {
    /// Add another core's counters.
    pub fn merge(&mut self, o: &HttpStats) {
        self.connections += o.connections;
        self.requests += o.requests;
        self.status_2xx += o.status_2xx;
        self.status_4xx += o.status_4xx;
        self.body_bytes += o.body_bytes;
        self.resets += o.resets;
    }
}

/// One core's server (each core runs its own, on the connections its hash selects).
pub struct Httpd {
    content: Content,
    scratch: Vec<u8>,
    pub stats: HttpStats,
}

impl Httpd {
    pub fn new(content: Content) -> Httpd {
        Httpd {
            content,
            scratch: vec![0u8; 64 * 1024],
            stats: HttpStats::default(),
        }
    }

    /// Build the response to `req` onto `c.out`.
    fn respond(&mut self, c: &mut Conn, req: &Request) {
        let head_only = req.method == "HEAD";
        let (status, body): (u16, Option<Arc<[u8]>>) = if req.method != "GET" && !head_only {
            (405, None)
        } else {
            match &self.content {
                Content::Fixed(b) => (200, Some(b.clone())),
                Content::Root(root) => match resolve(root, &req.path) {
                    Ok(f) => match std::fs::read(&f) {
                        Ok(v) => (200, Some(v.into())),
                        Err(_) => (500, None),
                    },
                    Err(s) => (s, None),
                },
            }
        };
        self.stats.requests += 1;
        let keep = req.keep_alive && status < 500;
        self.push_response(c, status, body, head_only, keep);
    }

    fn push_response(&mut self, c: &mut Conn, status: u16, body: Option<Arc<[u8]>>, head_only: bool, keep: bool) {
        let (body, ctype): (Arc<[u8]>, &str) = match body {
            Some(b) => (b, "application/octet-stream"),
            None => (
                format!("{status} {}\n", reason(status)).into_bytes().into(),
                "text/plain",
            ),
        };
        if status < 300 {
            self.stats.status_2xx += 1;
        } else {
            self.stats.status_4xx += 1;
        }
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nServer: blink\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        head.push_str(if keep {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        let head: Arc<[u8]> = head.into_bytes().into();
        c.out_bytes += head.len();
        c.out.push_back(head);
        if !head_only && !body.is_empty() {
            self.stats.body_bytes += body.len() as u64;
            c.out_bytes += body.len();
            c.out.push_back(body);
        }
        if !keep {
            c.close_after = true;
        }
    }

    /// Send what is queued; false when the socket refused some (wait for writable).
    fn flush(glue: &mut Glue<Conn>, s: Socket, c: &mut Conn) -> Result<bool, GlueError> {
        while let Some(front) = c.out.front() {
            let rest = &front[c.out_off..];
            let n = glue.send(s, rest)?;
            c.out_bytes -= n;
            if n < rest.len() {
                c.out_off += n;
                return Ok(false);
            }
            c.out.pop_front();
            c.out_off = 0;
        }
        Ok(true)
    }

    /// Move the connection forward as far as it goes: send, parse, read, repeat.
    fn service(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        let Some(mut c) = glue.take_user_data(s) else { return };
        match self.service_conn(glue, s, &mut c) {
            Ok(true) => {
                let _ = glue.set_user_data(s, c);
            }
            Ok(false) => {
                let _ = glue.close(s);
            }
            Err(_) => {
                self.stats.resets += 1;
                let _ = glue.close(s);
            }
        }
    }

    /// Ok(false) when the connection is finished.
    fn service_conn(&mut self, glue: &mut Glue<Conn>, s: Socket, c: &mut Conn) -> Result<bool, GlueError> {
        loop {
            if !Self::flush(glue, s, c)? {
                return Ok(true);
            }
            if c.close_after {
                return Ok(false);
            }
            // Answer every complete request already here, in order (pipelining).
            let mut used = 0;
            while c.out_bytes < MAX_PENDING_OUT && !c.close_after {
                match parse_request(&c.inbuf[used..]) {
                    Parse::Complete(req) => {
                        used += req.consumed;
                        self.respond(c, &req);
                    }
                    Parse::Partial => break,
                    Parse::Bad => {
                        self.stats.requests += 1;
                        self.push_response(c, 400, None, false, false);
                        used = c.inbuf.len();
                    }
                }
            }
            c.inbuf.drain(..used);
            if !c.out.is_empty() {
                continue;
            }
            if c.eof {
                return Ok(false);
            }
            match glue.recv(s, &mut self.scratch) {
                Ok(0) => c.eof = true,
                Ok(n) => c.inbuf.extend_from_slice(&self.scratch[..n]),
                Err(GlueError::WouldBlock) => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }
}

/// A server: never done by itself.
impl CoreApp<Conn> for Httpd {}

impl GlueHandler<Conn> for Httpd {
    fn on_accept(&mut self, glue: &mut Glue<Conn>, _l: Socket, s: Socket) {
        self.stats.connections += 1;
        let _ = glue.set_user_data(s, Conn::default());
        self.service(glue, s);
    }

    fn on_readable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        self.service(glue, s);
    }

    fn on_writable(&mut self, glue: &mut Glue<Conn>, s: Socket) {
        self.service(glue, s);
    }

    fn on_closed(&mut self, _glue: &mut Glue<Conn>, c: Closed<Conn>) {
        if c.reason != blink_glue::CloseReason::Normal {
            self.stats.resets += 1;
        }
    }
}

/// The TCP settings httpd and load use: no Nagle (responses and requests are small writes
/// whose latency matters), modest buffers so many connections fit the pool.
pub fn http_tcp_config() -> TcpConfig {
    TcpConfig {
        nodelay: true,
        sndbuf: 256 * 1024,
        rcvbuf: 256 * 1024,
        ..Default::default()
    }
}

pub fn run(a: HttpdArgs) -> Result<(), SetupError> {
    let content = match (&a.size, &a.root) {
        (Some(n), None) => {
            let n = usize::try_from(*n).map_err(|_| usage("--size: too large"))?;
            // A recognisable pattern rather than zeros, so a client's checksum means something.
            let body: Vec<u8> = (0..n).map(|i| b"blink-httpd\n"[i % 12]).collect();
            Content::Fixed(body.into())
        }
        (None, Some(r)) => {
            let root = r
                .canonicalize()
                .map_err(|e| usage(format!("--root {}: {e}", r.display())))?;
            if !root.is_dir() {
                return Err(usage(format!("--root {}: not a directory", r.display())).into());
            }
            Content::Root(root)
        }
        _ => return Err(usage("give exactly one of --size BYTES or --root DIR").into()),
    };
    let mut cores: Vec<Glue<Conn>> = build_cores(&a.dev, http_tcp_config(), 65536)?;
    // Every core listens: each has its own accept queue and accepts the connections its hash
    // selects (SO_REUSEPORT with RSS).
    for glue in &mut cores {
        glue.tcp_listen(a.port, 4096)
            .map_err(|e| usage(format!("--port {}: {e}", a.port)))?;
    }
    let n = cores.len();
    let d = &cores[0].stack().devs[0];
    println!(
        "blink httpd: {} mac {} addr {} port {} serving {}{}",
        d.name(),
        d.mac,
        d.addrs().iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
        a.port,
        match &content {
            Content::Fixed(b) => format!("{} bytes on every path", b.len()),
            Content::Root(r) => r.display().to_string(),
        },
        if n > 1 {
            format!(" on {n} cores ({} mode)", a.dev.mode)
        } else {
            String::new()
        }
    );
    let pool = cores[0].pool().clone();
    let opts = RunOpts {
        stop: stop_flag(),
        duration: a.duration.filter(|d| *d > 0.0).map(Duration::from_secs_f64),
        stats: a.dev.stats,
        ctl: Some(a.dev.ctl_path("httpd")),
    };
    let results = run_cores(
        cores,
        &opts,
        |_glue| Httpd::new(content.clone()),
        |_glue, httpd| httpd.stats,
    );
    let mut s = HttpStats::default();
    for (_, st) in &results {
        s.merge(st);
    }
    println!(
        "httpd: {} connections, {} requests ({} 2xx, {} 4xx/5xx), {} body bytes, {} reset or failed",
        s.connections, s.requests, s.status_2xx, s.status_4xx, s.body_bytes, s.resets
    );
    let in_use = results.first().map(|(c, _)| c.pool_in_use).unwrap_or(0);
    let summaries: Vec<_> = results.into_iter().map(|(c, _)| c).collect();
    report_cores("blink httpd", &summaries, in_use);
    println!("mbufs in use after shutdown: {}", pool.in_use());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keep_alive_rules() {
        let Parse::Complete(r) = parse_request(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n") else {
            panic!()
        };
        assert!(r.keep_alive);
        assert_eq!(r.path, "/a");
        let Parse::Complete(r) = parse_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n") else {
            panic!()
        };
        assert!(!r.keep_alive);
        let Parse::Complete(r) = parse_request(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!r.keep_alive);
        let Parse::Complete(r) = parse_request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") else {
            panic!()
        };
        assert!(r.keep_alive, "ab -k speaks HTTP/1.0 with Connection: Keep-Alive");
    }

    #[test]
    fn partial_garbage_and_pipelining() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost"), Parse::Partial);
        assert_eq!(parse_request(b"\x00\x01garbage\r\n\r\n"), Parse::Bad);
        assert_eq!(parse_request(&vec![b'a'; MAX_HEAD + 10]), Parse::Bad);
        let two = b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\n";
        let Parse::Complete(r1) = parse_request(two) else {
            panic!()
        };
        let Parse::Complete(r2) = parse_request(&two[r1.consumed..]) else {
            panic!()
        };
        assert_eq!((r1.path.as_str(), r2.method.as_str()), ("/1", "HEAD"));
        assert_eq!(r1.consumed + r2.consumed, two.len());
        // A body announced but not yet here.
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"),
            Parse::Partial
        );
    }

    /// Two glue instances on the in-memory wire: the server runs `Httpd`, the client writes
    /// raw bytes and collects everything until the server closes.
    fn exchange(content: Content, request: &[u8]) -> (Vec<u8>, HttpStats) {
        use blink_glue::netcore::drivers::wire::{wire_pair, WireConfig};
        use blink_glue::netcore::jiffies::{Clock, VirtualClock};
        use blink_glue::netcore::{EthAddr, Mempool, MempoolConfig};
        use blink_glue::GlueBuilder;
        let pool = Mempool::new(&MempoolConfig {
            n: 4096,
            ..Default::default()
        })
        .unwrap();
        let vc = VirtualClock::new();
        let clock = Clock::virtual_clock(&vc);
        let (wa, wb) = wire_pair(
            ("c", "s"),
            (EthAddr([2, 0, 0, 0, 0, 1]), EthAddr([2, 0, 0, 0, 0, 2])),
            &WireConfig::default(),
        );
        let tcp = TcpConfig {
            timewait_ms: 1000,
            ..http_tcp_config()
        };
        let build = |dev: blink_glue::netcore::drivers::wire::WireDev, ip: &str| {
            GlueBuilder::new()
                .device(Box::new(dev))
                .addr(ip.parse().unwrap())
                .pool(pool.clone())
                .clock(clock.clone())
                .tcp(tcp.clone())
        };
        let mut client: Glue<()> = build(wa, "10.0.0.1/24").build().unwrap();
        let mut server: Glue<Conn> = build(wb, "10.0.0.2/24").build().unwrap();
        let l = server.tcp_listen(80, 16).unwrap();
        let c = client.tcp_connect("10.0.0.2".parse().unwrap(), 80, None).unwrap();
        let mut httpd = Httpd::new(content);
        let (mut sent, mut got, mut eof) = (0, Vec::new(), false);
        let mut buf = [0u8; 4096];
        for _ in 0..100_000 {
            let n = client.periodic() + server.periodic_with(&mut httpd);
            vc.advance_ms(if n == 0 { 1 } else { 0 });
            if sent < request.len() {
                sent += client.send(c, &request[sent..]).unwrap_or(0);
            }
            while let Ok(n) = client.recv(c, &mut buf) {
                if n == 0 {
                    eof = true;
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if eof {
                break;
            }
        }
        assert!(eof, "the server closed the connection");
        client.close(c).unwrap();
        server.close(l).unwrap();
        for _ in 0..10_000 {
            if client.protocol_sockets() == 0 && server.protocol_sockets() == 0 {
                break;
            }
            client.periodic();
            server.periodic_with(&mut httpd);
            vc.advance_ms(1);
        }
        assert_eq!(client.protocol_sockets() + server.protocol_sockets(), 0);
        drop((client, server));
        assert_eq!(pool.in_use(), 0, "mbufs leaked");
        (got, httpd.stats)
    }

    #[test]
    fn pipelined_requests_answered_in_order_on_the_wire() {
        let body: Arc<[u8]> = b"0123456789".to_vec().into();
        let req = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /4 HTTP/1.1\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n";
        let (got, st) = exchange(Content::Fixed(body), req);
        let text = String::from_utf8(got).unwrap();
        let statuses: Vec<&str> = text
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &text[i + 9..i + 12])
            .collect();
        assert_eq!(statuses, ["200", "200", "405", "200"], "{text}");
        assert_eq!(
            text.matches("0123456789").count(),
            2,
            "GET bodies only, not HEAD's: {text}"
        );
        assert_eq!(text.matches("Connection: keep-alive").count(), 3);
        assert!(text.ends_with("Connection: close\r\n\r\n0123456789"), "{text}");
        assert_eq!(st.requests, 4, "nothing after Connection: close is answered");
    }

    #[test]
    fn garbage_gets_400_and_close_on_the_wire() {
        let (got, st) = exchange(Content::Fixed(b"x".to_vec().into()), b"\x01\x02 nonsense\r\n\r\n");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("Connection: close"));
        assert_eq!(st.status_4xx, 1);
    }

    #[test]
    fn traversal_is_refused() {
        let dir = std::env::temp_dir().join(format!("blink-httpd-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f.txt"), b"x").unwrap();
        std::fs::write(dir.join("index.html"), b"i").unwrap();
        let root = dir.canonicalize().unwrap();
        assert_eq!(resolve(&root, "/sub/f.txt?x=1").unwrap(), root.join("sub/f.txt"));
        assert_eq!(resolve(&root, "/").unwrap(), root.join("index.html"));
        assert_eq!(resolve(&root, "/../etc/passwd"), Err(403));
        assert_eq!(resolve(&root, "/sub/../../x"), Err(403));
        assert_eq!(resolve(&root, "/%2e%2e/x"), Err(403));
        assert_eq!(resolve(&root, "/missing"), Err(404));
        assert_eq!(resolve(&root, "relative"), Err(400));
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink("/etc", root.join("out"));
            assert_eq!(resolve(&root, "/out/passwd"), Err(403), "symlinks do not lead out");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
