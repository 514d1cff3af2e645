//! `--plot FILE.svg`: two grouped bar charts side by side, drawn as SVG text by hand (no
//! plotting dependency): bulk throughput on the left, handshakes per second on the right.
//! Pure: figures in, text out.

use std::fmt::Write as _;

use super::report::{Column, Report};
use super::stacks::Kx;

/// One bar series (a stack), with its colour.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
}

/// A group of bars (one measure), one value per series (None: no bar, "n/a").
#[derive(Clone, Debug)]
pub struct Group {
    /// Shown under the group; `\n` starts a new line.
    pub label: String,
    pub values: Vec<Option<f64>>,
}

/// One bar chart.
#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub groups: Vec<Group>,
}

const PANEL_WIDTH: f64 = 720.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 90.0;
const BOTTOM: f64 = 90.0;

/// The two charts side by side, with `caption` (e.g. the machine) under them.
pub fn svg(left: &Chart, right: &Chart, caption: &str) -> String {
    let width = 2.0 * PANEL_WIDTH;
    let height = HEIGHT + 30.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    out.push_str(&panel(left, 0.0));
    out.push_str(&panel(right, PANEL_WIDTH));
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#444">{}</text>"##,
        width / 2.0,
        height - 10.0,
        escape(caption)
    );
    out.push_str("</svg>\n");
    out
}

/// A step of 1, 2, 2.5 or 5 times a power of ten giving about `ticks` ticks up to `max`.
pub fn nice_step(max: f64, ticks: usize) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / ticks.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Text for a tick value: no needless decimals.
fn tick_label(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn panel(chart: &Chart, x0: f64) -> String {
    let mut out = String::new();
    let plot_w = PANEL_WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let (px, py) = (x0 + LEFT, TOP);
    let max = chart
        .groups
        .iter()
        .flat_map(|g| g.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let step = nice_step(max, 5);
    let top_value = (max / step).ceil().max(1.0) * step;
    let y_of = |v: f64| py + plot_h - v / top_value * plot_h;

    let _ = writeln!(out, r#"<g class="chart">"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" font-size="17" font-weight="bold" text-anchor="middle">{}</text>"#,
        x0 + PANEL_WIDTH / 2.0,
        escape(&chart.title)
    );
    // Legend, under the title.
    let mut lx = px;
    for series in &chart.series {
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="42" width="14" height="14" fill="{}"/><text x="{}" y="54" font-size="13">{}</text>"#,
            series.color,
            lx + 19.0,
            escape(&series.name)
        );
        lx += 30.0 + 8.0 * series.name.chars().count() as f64;
    }
    // Grid lines and the y axis with its ticks.
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let y = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{px}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"##,
            px + plot_w,
            px - 6.0,
            y + 4.0,
            tick_label(v)
        );
        v += step;
    }
    let _ = writeln!(
        out,
        r#"<line x1="{px}" y1="{py}" x2="{px}" y2="{}" stroke="black"/><line x1="{px}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        py + plot_h,
        py + plot_h,
        px + plot_w,
        py + plot_h
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate({},{}) rotate(-90)" font-size="14" text-anchor="middle">{}</text>"#,
        x0 + 18.0,
        py + plot_h / 2.0,
        escape(&chart.y_label)
    );
    // The bars.
    let groups = chart.groups.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = (group_w * 0.8) / chart.series.len().max(1) as f64;
    for (gi, group) in chart.groups.iter().enumerate() {
        let gx = px + gi as f64 * group_w + group_w * 0.1;
        for (si, series) in chart.series.iter().enumerate() {
            let bx = gx + si as f64 * bar_w;
            let cx = bx + bar_w / 2.0;
            match group.values.get(si).copied().flatten() {
                Some(value) => {
                    let y = y_of(value);
                    let _ = writeln!(
                        out,
                        r#"<rect x="{bx:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                        (bar_w - 2.0).max(1.0),
                        py + plot_h - y,
                        series.color,
                        escape(&series.name),
                        tick_label(value.round())
                    );
                    let _ = writeln!(
                        out,
                        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="10">{}</text>"#,
                        cx + 3.0,
                        y - 3.0,
                        tick_label(value.round())
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        r##"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="10" fill="#888">n/a</text>"##,
                        cx + 3.0,
                        py + plot_h - 3.0
                    );
                }
            }
        }
        // The group's label, one line per `\n`, under the axis.
        let lx = px + gi as f64 * group_w + group_w / 2.0;
        for (li, line) in group.label.split('\n').enumerate() {
            let _ = writeln!(
                out,
                r#"<text x="{lx:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
                py + plot_h + 18.0 + 15.0 * li as f64,
                escape(line)
            );
        }
    }
    let _ = writeln!(out, "</g>");
    out
}

/// The two charts of `--plot`: bulk throughput and handshakes per second.
pub fn of_report(report: &Report) -> String {
    let find = |name: &str| report.measures.iter().find(|m| m.name == name);
    let series = |names: &[(&str, &'static str)]| {
        names
            .iter()
            .map(|(n, c)| Series {
                name: n.to_string(),
                color: c,
            })
            .collect::<Vec<_>>()
    };
    const TCP: &str = "#7f7f7f";
    const RUSTLS: &str = "#ff7f0e";
    const SECSOCK: &str = "#1f77b4";
    const OPENSSL: &str = "#d62728";
    let mut bulk_groups = Vec::new();
    for api in ["blocking", "tokio"] {
        for kib in [16, 64] {
            let name = format!("bulk_{kib}KiB_{api}");
            let m = find(&name);
            let v = |c| m.and_then(|m| m.median(c));
            bulk_groups.push(Group {
                label: format!(
                    "{kib} KiB writes\n{}",
                    if api == "tokio" {
                        "tokio (tokio-rustls)"
                    } else {
                        "blocking"
                    }
                ),
                values: vec![
                    v(Column::Tcp),
                    v(Column::Rustls),
                    v(Column::Secsock),
                    v(Column::Openssl),
                ],
            });
        }
    }
    let mut hs_groups = Vec::new();
    for kx in [Kx::Pq, Kx::X25519] {
        for kind in ["full", "resumed"] {
            for threads in ["1thread", "2threads"] {
                let name = format!("handshakes_{kind}_{threads}_{}", kx.name());
                let m = find(&name);
                let v = |c| m.and_then(|m| m.median(c));
                hs_groups.push(Group {
                    label: format!(
                        "{kind}\n{} client{}\n{}",
                        &threads[..1],
                        if threads == "1thread" { "" } else { "s" },
                        if kx == Kx::Pq { "PQ hybrid" } else { "X25519" }
                    ),
                    values: vec![v(Column::Rustls), v(Column::Secsock), v(Column::Openssl)],
                });
            }
        }
    }
    let m = &report.machine;
    let caption = format!(
        "medians of {} runs on {} ({} cores, Linux {}); rustls {}, {}; loopback, mutual TLS 1.3, AES-128-GCM; bulk: both ends on one CPU",
        report.runs,
        m.cpu_model,
        m.cores,
        m.kernel,
        m.rustls_version,
        m.openssl_version.as_deref().unwrap_or("no OpenSSL")
    );
    svg(
        &Chart {
            title: "Bulk throughput, one connection".into(),
            y_label: "MiB/s".into(),
            series: series(&[
                ("TCP", TCP),
                ("rustls", RUSTLS),
                ("secsock", SECSOCK),
                ("OpenSSL (8 KiB records)", OPENSSL),
            ]),
            groups: bulk_groups,
        },
        &Chart {
            title: "Mutual-TLS handshakes per second".into(),
            y_label: "handshakes/s".into(),
            series: series(&[
                ("rustls", RUSTLS),
                ("secsock", SECSOCK),
                ("OpenSSL", OPENSSL),
            ]),
            groups: hs_groups,
        },
        &caption,
    )
}

/// Text safe inside SVG elements.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(title: &str, values: Vec<Option<f64>>) -> Chart {
        Chart {
            title: title.into(),
            y_label: "MiB/s".into(),
            series: vec![
                Series {
                    name: "secsock".into(),
                    color: "#1f77b4",
                },
                Series {
                    name: "openssl <3.1>".into(),
                    color: "#d62728",
                },
            ],
            groups: vec![Group {
                label: "16 KiB\nblocking".into(),
                values,
            }],
        }
    }

    #[test]
    fn steps_are_round_numbers() {
        assert_eq!(nice_step(1000.0, 5), 200.0);
        assert_eq!(nice_step(2345.0, 5), 500.0);
        assert_eq!(nice_step(12.0, 5), 2.5);
        assert_eq!(nice_step(0.0, 5), 1.0);
        assert_eq!(nice_step(f64::NAN, 5), 1.0);
    }

    #[test]
    fn the_svg_has_two_labelled_charts_and_marks_missing_figures() {
        let text = svg(
            &chart("Throughput", vec![Some(1500.0), None]),
            &chart("Handshakes", vec![Some(3.0), Some(2.0)]),
            "machine & co",
        );
        assert!(text.starts_with("<svg "));
        assert!(text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches(r#"<g class="chart">"#).count(), 2);
        assert!(text.contains(">Throughput</text>") && text.contains(">Handshakes</text>"));
        assert!(text.contains("rotate(-90)") && text.contains(">MiB/s</text>"));
        assert!(text.contains(">n/a</text>"));
        assert!(text.contains("openssl &lt;3.1&gt;") && text.contains("machine &amp; co"));
        assert!(text.contains(">16 KiB</text>") && text.contains(">blocking</text>"));
        assert!(!text.contains("NaN") && !text.contains("inf"));
        // Balanced tags, roughly: every <g> closed.
        assert_eq!(text.matches("<g ").count(), text.matches("</g>").count());
    }
}
