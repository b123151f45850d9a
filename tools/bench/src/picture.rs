//! The picture issue 33 asks for: latency (p50 and p99) against offered load,
//! from a sweep of open-loop rates, one line pair per mode.
//!
//! Each run writes its sweep as `sweep-<mode>.tsv` into the picture
//! directory, then draws `latency-vs-load.svg` from every sweep there, so a
//! default run and a distributed one, one after the other, end in one
//! picture of both modes. Plain SVG, no dependency: both axes logarithmic
//! (the two modes' rates are an order of magnitude apart).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One rate of the sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Reservations offered per second.
    pub offered: f64,
    /// Reservations answered with success per second.
    pub accepted: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Writes `points` as the sweep of `mode`.
///
/// # Errors
/// The file system's.
pub fn save(dir: &Path, mode: &str, points: &[Point]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut text = String::from("offered\taccepted\tp50_ms\tp99_ms\n");
    for p in points {
        let _ = writeln!(
            text,
            "{:.1}\t{:.1}\t{:.3}\t{:.3}",
            p.offered, p.accepted, p.p50_ms, p.p99_ms
        );
    }
    let path = dir.join(format!("sweep-{mode}.tsv"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Every sweep in `dir`, by mode name, sorted.
///
/// # Errors
/// The file system's; a file that does not parse.
pub fn load(dir: &Path) -> anyhow::Result<Vec<(String, Vec<Point>)>> {
    let mut sweeps = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(mode) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("sweep-"))
            .and_then(|n| n.strip_suffix(".tsv"))
        else {
            continue;
        };
        let mut points = Vec::new();
        for line in std::fs::read_to_string(&path)?.lines().skip(1) {
            let f: Vec<f64> = line
                .split('\t')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{}: {line:?}: {e}", path.display()))?;
            let [offered, accepted, p50_ms, p99_ms] = f[..] else {
                anyhow::bail!("{}: {line:?}: four columns expected", path.display());
            };
            let positive_rate = offered.is_finite() && offered > 0.0;
            let figures = [accepted, p50_ms, p99_ms]
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0);
            if !(positive_rate && figures) {
                anyhow::bail!(
                    "{}: {line:?}: a positive rate and finite, non-negative figures expected",
                    path.display()
                );
            }
            points.push(Point {
                offered,
                accepted,
                p50_ms,
                p99_ms,
            });
        }
        sweeps.push((mode.to_owned(), points));
    }
    sweeps.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(sweeps)
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// The latency axis: 0.1 ms to 10 s.
const MS_LOW: f64 = 0.1;
const MS_HIGH: f64 = 10_000.0;
const COLOURS: [&str; 4] = ["#1b6ac9", "#d1495b", "#2e933c", "#8a4fff"];

/// The picture of `sweeps`.
pub fn svg(sweeps: &[(String, Vec<Point>)]) -> String {
    let rates = || {
        sweeps
            .iter()
            .flat_map(|(_, ps)| ps.iter().map(|p| p.offered))
    };
    let x_max = nice_ceiling(rates().fold(1.0_f64, f64::max));
    let x_min = nice_floor(rates().fold(x_max, f64::min)).min(x_max / 10.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |rate: f64| {
        let rate = rate.clamp(x_min, x_max);
        LEFT + (rate.log10() - x_min.log10()) / (x_max.log10() - x_min.log10()) * plot_w
    };
    let y = |ms: f64| {
        let ms = ms.clamp(MS_LOW, MS_HIGH);
        TOP + (MS_HIGH.log10() - ms.log10()) / (MS_HIGH.log10() - MS_LOW.log10()) * plot_h
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{LEFT}" y="22" font-size="14">Reserve roaming, open loop: latency against offered load (bench)</text>"#
    );
    // Latency grid, one line a decade.
    let mut ms = MS_LOW;
    while ms <= MS_HIGH * 1.001 {
        let yy = y(ms);
        let label = if ms < 1.0 {
            format!("{ms} ms")
        } else if ms < 1000.0 {
            format!("{ms:.0} ms")
        } else {
            format!("{:.0} s", ms / 1000.0)
        };
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0
        );
        ms *= 10.0;
    }
    // Rate ticks: 1, 2 and 5 of every decade in range.
    let mut decade = 10_f64.powf(x_min.log10().floor());
    let mut ticks = Vec::new();
    while decade <= x_max {
        for m in [1.0, 2.0, 5.0] {
            let rate = m * decade;
            if rate >= x_min * 0.999 && rate <= x_max * 1.001 {
                ticks.push(rate);
            }
        }
        decade *= 10.0;
    }
    for rate in ticks {
        let xx = x(rate);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{rate:.0}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">reservations offered per second</text><rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 18.0
    );
    for (n, (mode, points)) in sweeps.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let mode = escape(mode);
        // A rate that completed no call has no latency to draw.
        let points: Vec<&Point> = points.iter().filter(|p| p.accepted > 0.0).collect();
        for (quantile, dash, pick) in [
            ("p99", "", (|p: &Point| p.p99_ms) as fn(&Point) -> f64),
            ("p50", r#" stroke-dasharray="5,4""#, |p: &Point| p.p50_ms),
        ] {
            let path: Vec<String> = points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.offered), y(pick(p))))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for p in &points {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{mode} {quantile}: {:.1} ms at {:.0}/s offered, {:.0}/s accepted</title></circle>"#,
                    x(p.offered),
                    y(pick(p)),
                    pick(p),
                    p.offered,
                    p.accepted
                );
            }
            let row = u32::try_from(n * 2).unwrap_or(0) + u32::from(quantile == "p50");
            let ly = TOP + 10.0 + f64::from(row) * 18.0;
            let lx = LEFT + plot_w + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{mode} {quantile}</text>"#,
                lx + 24.0,
                lx + 30.0,
                ly + 4.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// `text` safe inside SVG text and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// 1, 2 or 5 times a power of ten, at most `v`.
fn nice_floor(v: f64) -> f64 {
    let decade = 10_f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|c| *c <= v)
        .unwrap_or(decade)
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let decade = 10_f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * decade)
}

/// Saves `points` as `mode`'s sweep and draws every sweep of `dir` into
/// `latency-vs-load.svg` there; answers the picture's path.
///
/// # Errors
/// The file system's.
pub fn record(dir: &Path, mode: &str, points: &[Point]) -> anyhow::Result<PathBuf> {
    save(dir, mode, points)?;
    let picture = dir.join("latency-vs-load.svg");
    std::fs::write(&picture, svg(&load(dir)?))?;
    Ok(picture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_round_trip_and_draw_a_line_pair_per_mode() {
        let dir = std::env::temp_dir().join(format!("bench-picture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let points = |scale: f64| {
            [100.0, 200.0, 400.0]
                .map(|r| Point {
                    offered: r * scale,
                    accepted: r * scale,
                    p50_ms: 2.0 * scale,
                    p99_ms: 20.0 * scale,
                })
                .to_vec()
        };
        record(&dir, "embedded", &points(4.0)).unwrap();
        let picture = record(&dir, "distributed", &points(1.0)).unwrap();
        let sweeps = load(&dir).unwrap();
        assert_eq!(sweeps.len(), 2);
        assert_eq!(sweeps[0], ("distributed".to_owned(), points(1.0)));
        assert_eq!(sweeps[1], ("embedded".to_owned(), points(4.0)));
        let svg = std::fs::read_to_string(picture).unwrap();
        assert_eq!(
            svg.matches("<polyline").count(),
            4,
            "p50 and p99 of each mode"
        );
        assert!(svg.contains("embedded p99") && svg.contains("distributed p50"));
        // The axis ends at a round rate at or past the highest offered.
        assert!((nice_ceiling(1_600.0) - 2_000.0).abs() < 1e-9);
        assert!((nice_ceiling(400.0) - 500.0).abs() < 1e-9);
        assert!((nice_floor(97.0) - 50.0).abs() < 1e-9);
        assert!((nice_floor(250.0) - 200.0).abs() < 1e-9);
        // A rate of nothing (or not a number) is refused, not drawn.
        std::fs::write(
            dir.join("sweep-bad.tsv"),
            "offered\taccepted\tp50_ms\tp99_ms\n0\t0\t1\t1\n",
        )
        .unwrap();
        assert!(load(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
