//! `--plot FILE.png`: ROC curves of the three scores, drawn with plotters' bitmap backend.
//!
//! Text is rendered with a pure-Rust rasterizer (ab_glyph) and an ASCII subset of DejaVu Sans
//! compiled in (14 KiB, licence beside it), so the binary needs neither fontconfig nor
//! freetype at build or run time.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::score::{self, Metric, TraceScore, METRICS};

static FONT: &[u8] = include_bytes!("DejaVuSans-ascii.ttf");

fn label(m: Metric) -> &'static str {
    match m {
        Metric::AnomalousCalls => "anomalous calls",
        Metric::MaxLfc => "max LFC",
        Metric::Rate => "anomalous-call rate",
    }
}

/// Draws the ROC curve of each score (normal vs attack traces) into a PNG at `path`.
pub fn roc_png(path: &Path, scores: &[TraceScore]) -> Result<()> {
    // Registering twice is harmless; the font is valid, so an error here is a build defect.
    register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the built-in font cannot be read"))?;
    let values = |set: &str, m: Metric| -> Vec<f64> {
        scores
            .iter()
            .filter(|s| s.set == set)
            .map(|s| m.of(s))
            .collect()
    };
    let normal_n = scores.iter().filter(|s| s.set == "normal").count();
    let attack_n = scores.len() - normal_n;
    if normal_n == 0 || attack_n == 0 {
        return Err(anyhow!(
            "a ROC curve needs both normal and attack traces (give --normal and --attack)"
        ));
    }
    let root = BitMapBackend::new(path, (720, 640)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
    root.fill(&WHITE).map_err(e)?;
    let caption = format!("ROC: {attack_n} attack vs {normal_n} normal traces");
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("false-alarm rate (normal traces flagged)")
        .y_desc("detection rate (attack traces flagged)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            ShapeStyle::from(&BLACK.mix(0.3)).stroke_width(1),
        ))
        .map_err(e)?;
    let colours = [
        RGBColor(200, 40, 40),
        RGBColor(30, 90, 200),
        RGBColor(20, 150, 60),
    ];
    // Curves often coincide; drawing them widest first keeps each one visible.
    for ((&m, colour), width) in METRICS.iter().zip(colours).zip([7, 5, 3]) {
        let (n, a) = (values("normal", m), values("attack", m));
        let pts = score::roc(&n, &a);
        let auc = score::auc(&n, &a).unwrap_or(f64::NAN);
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(width)))
            .map_err(e)?
            .label(format!("{} (AUC {auc:.3})", label(m)))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
