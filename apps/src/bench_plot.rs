//! `blink bench --plot DIR`: the run's results as PNG charts.
//!
//! - `bench-WORKLOAD.png`, one per throughput workload with a result: a bar per peer in the
//!   workload's own unit (trans/s, Gbit/s...), the value written above each bar. (conns has
//!   its own chart below; timers' lines say all there is.)
//! - `bench-ratios.png`, when blink ran beside other peers: for every workload, blink's value
//!   divided by each other peer's (grouped bars, a dashed line at 1.0 = parity).
//! - `conns.png`, after the conns workload: rr over all N connections and the memory per idle
//!   connection end against N (log scale), with the targets (apps/BENCHMARKS.md) dashed.
//!
//! Charts are drawn in memory by plotters and written as PNG; text uses DejaVu Sans, shipped
//! in apps/assets/ (licence beside it) and compiled in, so no system font is needed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bench::{Outcome, Peer};
use crate::bench_conns::ConnsPoint;

/// DejaVu Sans (apps/assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

const SIZE: (u32, u32) = (900, 540);

/// Register the bundled font as plotters' "sans-serif" (the family every chart names);
/// without it every text draw fails with FontUnavailable.
fn font() -> Result<(), String> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the bundled DejaVu Sans font could not be loaded".into())
    }
}

fn color(p: Peer) -> RGBColor {
    match p {
        Peer::Blink => RGBColor(31, 119, 180),
        Peer::Smoltcp => RGBColor(255, 127, 14),
        Peer::LinuxLo => RGBColor(44, 160, 44),
        Peer::LinuxVeth => RGBColor(148, 103, 189),
    }
}

/// Any plotters error as text.
fn pe<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// `1.23 M`, `456 k`, `12.3`: short labels for bars and axes.
fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.2} k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Write every chart the results allow into `dir`; returns the files written.
pub(crate) fn write_plots(
    dir: &Path,
    peers: &[Peer],
    rows: &[(&str, Vec<Outcome>)],
    conns: Option<&[ConnsPoint]>,
) -> Result<Vec<PathBuf>, String> {
    font()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the directory: {e}"))?;
    let mut out = Vec::new();
    for (w, outs) in rows {
        if matches!(*w, "conns" | "timers") {
            continue;
        }
        let bars: Vec<(Peer, f64)> = peers
            .iter()
            .zip(outs)
            .filter_map(|(p, o)| match o {
                Outcome::Done(r) => Some((*p, r.value)),
                Outcome::NotApplicable(_) => None,
            })
            .collect();
        let unit = outs.iter().find_map(|o| match o {
            Outcome::Done(r) => Some(r.unit),
            Outcome::NotApplicable(_) => None,
        });
        let Some(unit) = unit else { continue };
        let path = dir.join(format!("bench-{w}.png"));
        workload_chart(&path, w, unit, &bars)?;
        out.push(path);
    }
    if let Some(path) = ratio_chart(dir, peers, rows)? {
        out.push(path);
    }
    if let Some(points) = conns.filter(|p| !p.is_empty()) {
        let path = dir.join("conns.png");
        conns_chart(&path, points)?;
        out.push(path);
    }
    Ok(out)
}

/// The x axis of a bar chart of `n` categories: category `i` is centred on `i`, so that
/// plotters' own choice of tick marks (whole numbers, at most `n` of them, asked for with
/// `x_labels(n)`) falls on the centres.
fn categories(n: usize) -> std::ops::Range<f64> {
    -0.5..n as f64 - 0.5
}

/// The label of the tick at `x`: a category's name at its centre, nothing elsewhere.
fn category_name(names: &[&str], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    names.get(i as usize).copied().unwrap_or("").to_string()
}

/// One workload: a bar per peer that ran it, in the workload's unit.
fn workload_chart(path: &Path, w: &str, unit: &str, bars: &[(Peer, f64)]) -> Result<(), String> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let n = bars.len().max(1);
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let ymax = if top > 0.0 { top * 1.18 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("blink bench: {w} ({unit}, higher is better)"),
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(categories(n), 0f64..ymax)
        .map_err(pe)?;
    let names: Vec<&str> = bars.iter().map(|b| b.0.name()).collect();
    let xfmt = |x: &f64| category_name(&names, *x);
    let yfmt = |y: &f64| short(*y);
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .y_desc(unit)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(pe)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (p, v))| {
            let x = i as f64;
            Rectangle::new([(x - 0.3, 0.0), (x + 0.3, *v)], color(*p).filled())
        }))
        .map_err(pe)?;
    let label = ("sans-serif", 16)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, (_, v))| Text::new(short(*v), (i as f64, *v + ymax * 0.01), label.clone())),
        )
        .map_err(pe)?;
    root.present().map_err(pe)
}

/// blink / peer for every workload both ran; None when blink ran alone (or not at all).
fn ratio_chart(dir: &Path, peers: &[Peer], rows: &[(&str, Vec<Outcome>)]) -> Result<Option<PathBuf>, String> {
    let Some(bi) = peers.iter().position(|p| *p == Peer::Blink) else {
        return Ok(None);
    };
    let others: Vec<(usize, Peer)> = peers.iter().copied().enumerate().filter(|(i, _)| *i != bi).collect();
    // (workload, [(peer, ratio)]) for workloads with at least one ratio.
    let mut groups: Vec<(&str, Vec<(Peer, f64)>)> = Vec::new();
    for (w, outs) in rows {
        let Outcome::Done(b) = &outs[bi] else { continue };
        let ratios: Vec<(Peer, f64)> = others
            .iter()
            .filter_map(|&(i, p)| match &outs[i] {
                Outcome::Done(x) if x.value > 0.0 => Some((p, b.value / x.value)),
                _ => None,
            })
            .collect();
        if !ratios.is_empty() {
            groups.push((w, ratios));
        }
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let path = dir.join("bench-ratios.png");
    let root = BitMapBackend::new(&path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let n = groups.len();
    // A log scale, bars growing from parity: ratios from 0.5 to 20 in one run are common
    // (smoltcp vs the kernel), and 0.5 and 2 then stand equally far from 1.
    let all = groups.iter().flat_map(|g| g.1.iter().map(|r| r.1));
    let lo = all.clone().fold(1.0, f64::min) / 1.6;
    let hi = all.fold(1.0, f64::max) * 1.6;
    let ticks: Vec<f64> = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0,
    ]
    .into_iter()
    .filter(|t| (lo..=hi).contains(t))
    .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "blink's throughput / each peer's (above 1 = blink faster)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(categories(n), (lo..hi).log_scale().with_key_points(ticks))
        .map_err(pe)?;
    let names: Vec<&str> = groups.iter().map(|g| g.0).collect();
    let xfmt = |x: &f64| category_name(&names, *x);
    let yfmt = |y: &f64| format!("{y}x");
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .y_desc("blink / peer (log scale)")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(pe)?;
    // Bars of one group share the middle 80% of its slot; a peer keeps its slot position in
    // every group (and its colour), so the legend reads across groups.
    let k = others.len() as f64;
    let width = 0.8 / k;
    let font = ("sans-serif", 14).into_font().color(&BLACK);
    let above = font.pos(Pos::new(HPos::Center, VPos::Bottom));
    let below = font.pos(Pos::new(HPos::Center, VPos::Top));
    for (slot, &(_, peer)) in others.iter().enumerate() {
        let bars: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(g, (_, rs))| {
                rs.iter()
                    .find(|r| r.0 == peer)
                    .map(|r| (g as f64 - 0.4 + slot as f64 * width, r.1))
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        let c = color(peer);
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x, v)| Rectangle::new([(x, 1.0), (x + width * 0.9, v)], c.filled())),
            )
            .map_err(pe)?
            .label(format!("blink / {}", peer.name()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
        chart
            .draw_series(bars.iter().map(|&(x, v)| {
                // The value beyond the bar's end: above a bar over 1, below one under 1.
                let (y, style) = if v >= 1.0 {
                    (v * 1.03, above.clone())
                } else {
                    (v / 1.03, below.clone())
                };
                Text::new(format!("{v:.2}"), (x + width * 0.45, y), style)
            }))
            .map_err(pe)?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            8,
            6,
            BLACK.stroke_width(1),
        ))
        .map_err(pe)?
        .label("parity (1.0)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(1)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(Some(path.clone()))
}

/// `1k`, `100k`, `1M` for the connection axis.
fn count_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", short_trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", short_trim(v / 1e3))
    } else {
        short_trim(v)
    }
}

fn short_trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// conns: rr (top) and bytes per idle connection end (bottom) against N, log scale.
fn conns_chart(path: &Path, points: &[ConnsPoint]) -> Result<(), String> {
    let root = BitMapBackend::new(path, (SIZE.0, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let root = root
        .titled(
            "blink bench: conns (cost against the number of connections)",
            ("sans-serif", 24),
        )
        .map_err(pe)?;
    let (upper, lower) = root.split_vertically(380);
    let ns: Vec<f64> = points.iter().map(|p| p.conns as f64).collect();
    let (lo, hi) = (
        ns.iter().copied().fold(f64::MAX, f64::min),
        ns.iter().copied().fold(0.0, f64::max),
    );
    // A little room either side on the log axis (a single N still gets a range).
    let xr = (lo / 2.0).max(0.5)..(hi * 2.0).max(lo * 4.0);
    let xfmt = |x: &f64| count_label(*x);
    let blink = color(Peer::Blink);
    let first_rr = points[0].rr;

    // rr, with the targets relative to the first N dashed.
    let rr_top = points.iter().map(|p| p.rr).fold(first_rr, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&upper)
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(90)
        .caption(
            "64 B request/response spread over all N (higher is better)",
            ("sans-serif", 18),
        )
        .build_cartesian_2d(
            xr.clone().log_scale().with_key_points(ns.clone()),
            0f64..rr_top.max(1.0),
        )
        .map_err(pe)?;
    let yfmt = |y: &f64| short(*y);
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .y_desc("trans/s")
        .x_desc("connections")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(pe)?;
    chart
        .draw_series(
            LineSeries::new(points.iter().map(|p| (p.conns as f64, p.rr)), blink.stroke_width(2)).point_size(4),
        )
        .map_err(pe)?
        .label("blink rr")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], blink.stroke_width(2)));
    let label = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(points.iter().map(|p| {
            Text::new(
                format!("{} ({:.2}x)", short(p.rr), p.ratio),
                (p.conns as f64, p.rr + rr_top * 0.02),
                label.clone(),
            )
        }))
        .map_err(pe)?;
    for (frac, c) in [(0.8, RGBColor(44, 160, 44)), (0.7, RGBColor(214, 39, 40))] {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(xr.start, first_rr * frac), (xr.end, first_rr * frac)],
                8,
                6,
                c.stroke_width(1),
            ))
            .map_err(pe)?
            .label(format!(
                "{:.0}% of rr at {} (target at {})",
                frac * 100.0,
                count_label(points[0].conns as f64),
                if frac == 0.8 { "100k" } else { "1M" }
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(pe)?;

    // Memory per idle connection end, with the 1.5 KiB target dashed.
    const TARGET: f64 = 1536.0;
    // Two lines: just opened, and idle again after one transaction each.
    let series = |f: fn(&ConnsPoint) -> f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| f(p).is_finite())
            .map(|p| (p.conns as f64, f(p)))
            .collect()
    };
    let opened = series(|p| p.bytes_per_end);
    let used = series(|p| p.bytes_per_end_used);
    let mem_top = opened.iter().chain(&used).map(|m| m.1).fold(TARGET, f64::max) * 1.25;
    let mut chart = ChartBuilder::on(&lower)
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(90)
        .caption(
            "process RSS per idle connection end (lower is better)",
            ("sans-serif", 18),
        )
        .build_cartesian_2d(xr.clone().log_scale().with_key_points(ns.clone()), 0f64..mem_top)
        .map_err(pe)?;
    let yfmt = |y: &f64| format!("{y:.0}");
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .y_desc("bytes")
        .x_desc("connections")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(pe)?;
    let light = RGBColor(107, 174, 214);
    // At each N the higher value is written above its point and the lower one below, so
    // the two labels do not collide.
    let below = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let other_at = |other: &[(f64, f64)], x: f64| other.iter().find(|o| o.0 == x).map(|o| o.1);
    for (mem, other, c, what) in [
        (&opened, &used, blink, "blink, just opened"),
        (&used, &opened, light, "blink, after one transaction each"),
    ] {
        chart
            .draw_series(LineSeries::new(mem.iter().copied(), c.stroke_width(2)).point_size(4))
            .map_err(pe)?
            .label(what)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2)));
        chart
            .draw_series(mem.iter().map(|&(x, v)| {
                let up = other_at(other, x).map_or(true, |o| v >= o);
                let (y, style) = if up {
                    (v + mem_top * 0.02, label.clone())
                } else {
                    (v - mem_top * 0.02, below.clone())
                };
                Text::new(format!("{v:.0} B"), (x, y), style)
            }))
            .map_err(pe)?;
    }
    let red = RGBColor(214, 39, 40);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(xr.start, TARGET), (xr.end, TARGET)],
            8,
            6,
            red.stroke_width(1),
        ))
        .map_err(pe)?
        .label("target: 1.5 KiB per end at 1M")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], red.stroke_width(1)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::BenchResult;

    fn result(workload: &'static str, value: f64, unit: &'static str) -> Outcome {
        Outcome::Done(BenchResult {
            workload,
            value,
            unit,
            note: String::new(),
            work: 1.0,
            per: "trans",
            frames: Some(2),
            cpu_s: 0.1,
        })
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("blink-plot-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A PNG: the signature, then an IHDR chunk with the size asked for.
    fn assert_png(path: &Path, w: u32, h: u32) {
        let b = std::fs::read(path).expect("written");
        assert!(b.len() > 1000, "{}: {} bytes", path.display(), b.len());
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        assert_eq!(&b[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(b[16..20].try_into().unwrap()), w);
        assert_eq!(u32::from_be_bytes(b[20..24].try_into().unwrap()), h);
    }

    #[test]
    fn plots_are_valid_pngs() {
        let dir = tmpdir("all");
        let peers = [Peer::Blink, Peer::Smoltcp, Peer::LinuxVeth];
        let rows: Vec<(&str, Vec<Outcome>)> = vec![
            (
                "rr",
                vec![
                    result("rr", 900_000.0, "trans/s"),
                    result("rr", 1_400_000.0, "trans/s"),
                    result("rr", 18_000.0, "trans/s"),
                ],
            ),
            (
                "frag",
                vec![
                    result("frag", 650_000.0, "dgram/s"),
                    result("frag", 750_000.0, "dgram/s"),
                    Outcome::NotApplicable("needs root"),
                ],
            ),
            (
                "conns",
                vec![
                    result("conns", 500_000.0, "trans/s"),
                    Outcome::NotApplicable("blink only"),
                    Outcome::NotApplicable("blink only"),
                ],
            ),
        ];
        let pt = |conns: usize, rr: f64, b: f64| ConnsPoint {
            conns,
            setup_s: 0.1,
            bytes_per_end: b,
            warm_s: 0.1,
            bytes_per_end_used: b,
            idle_mbufs: 0,
            ports: 1,
            rr,
            trans: 1000,
            ratio: rr / 600_000.0,
            frames_per_trans: 2.0,
            cpu_us_per_trans: 1.0,
            delayed_acks: 0,
            retrans: 0,
            loss_probes: 0,
        };
        let points = [
            pt(1000, 600_000.0, 1400.0),
            pt(100_000, 420_000.0, 1300.0),
            pt(1_000_000, 380_000.0, f64::NAN),
        ];
        let files = write_plots(&dir, &peers, &rows, Some(&points)).expect("plots");
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["bench-rr.png", "bench-frag.png", "bench-ratios.png", "conns.png"]
        );
        for f in &files[..3] {
            assert_png(f, SIZE.0, SIZE.1);
        }
        assert_png(&files[3], SIZE.0, 760);
        // BLINK_PLOT_KEEP=1 keeps the charts for a look (the path is printed).
        if std::env::var_os("BLINK_PLOT_KEEP").is_some() {
            eprintln!("charts kept in {}", dir.display());
        } else {
            std::fs::remove_dir_all(&dir).expect("clean up");
        }
    }

    /// Blink alone: no ratio chart, and a workload nobody ran draws nothing.
    #[test]
    fn no_ratio_chart_without_another_peer() {
        let dir = tmpdir("alone");
        let rows: Vec<(&str, Vec<Outcome>)> = vec![
            ("bulk", vec![result("bulk", 20.5, "Gbit/s")]),
            ("frag", vec![Outcome::NotApplicable("n/a")]),
        ];
        let files = write_plots(&dir, &[Peer::Blink], &rows, None).expect("plots");
        assert_eq!(files, vec![dir.join("bench-bulk.png")]);
        assert_png(&files[0], SIZE.0, SIZE.1);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn labels() {
        assert_eq!(count_label(1000.0), "1k");
        assert_eq!(count_label(100_000.0), "100k");
        assert_eq!(count_label(1_000_000.0), "1M");
        assert_eq!(count_label(2500.0), "2.5k");
        assert_eq!(short(1_234_567.0), "1.23 M");
        assert_eq!(short(18_000.0), "18 k");
        assert_eq!(short(0.894), "0.89");
    }
}
