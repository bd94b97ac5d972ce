//! An SVG bar chart of the units each layer keeps.

use std::path::Path;

use plotters::prelude::*;

use super::atomic::write_atomic;
use super::report::LayerKept;
use crate::error::{Error, Result};

/// Horizontal space per layer, in pixels: room for two bars and a label.
const PIXELS_PER_LAYER: u32 = 28;
/// Width for the plot's margins and y-axis labels, in pixels.
const FRAME_WIDTH: u32 = 120;
/// Narrowest chart, so that the caption and legend fit for a few layers.
const MIN_WIDTH: u32 = 640;
const HEIGHT: u32 = 420;
/// Half the width of one bar, in layers (each layer spans 1.0 on the x axis).
const BAR_HALF_WIDTH: f64 = 0.19;
/// Gap between a layer's two bars, in layers.
const BAR_GAP: f64 = 0.02;

/// Distance from a whole number within which a tick counts as a layer: tick
/// positions come from f64 arithmetic, so whole numbers can be off by ulps.
const LAYER_TICK_TOLERANCE: f64 = 1e-6;

/// Fill colour of the head bars (matplotlib's default blue).
pub const HEADS_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// Fill colour of the channel bars (matplotlib's default orange).
pub const CHANNELS_COLOR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

fn chart_error<E: std::fmt::Display>(error: E) -> Error {
    Error::Chart {
        reason: error.to_string(),
    }
}

/// Draws, for every layer, the fraction of head groups kept (left bar) and
/// of MLP channels kept (right bar) and returns the SVG document. A layer
/// without units of a kind gets no bar of that kind.
pub fn kept_chart_svg(kept: &[LayerKept], caption: &str) -> Result<String> {
    if kept.is_empty() {
        return Err(Error::invalid(
            "kept units per layer",
            "an empty list",
            "the chart needs at least one layer",
        ));
    }
    let num_layers = kept.len();
    let width = (num_layers as u32 * PIXELS_PER_LAYER + FRAME_WIDTH).max(MIN_WIDTH);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let x_range = -0.5..(num_layers as f64 - 0.5);
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x_range, 0.0..1.05)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(num_layers + 1)
            .x_label_formatter(&|x| layer_label(*x, num_layers))
            .x_desc("layer")
            .y_desc("fraction kept")
            .draw()
            .map_err(chart_error)?;

        let heads = kept.iter().filter_map(|k| {
            let fraction = fraction(k.heads, k.heads_total)?;
            let x = k.layer as f64 - BAR_GAP / 2.0 - BAR_HALF_WIDTH;
            Some(bar(x, fraction, HEADS_COLOR))
        });
        chart
            .draw_series(heads)
            .map_err(chart_error)?
            .label("heads (KV groups) kept")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], HEADS_COLOR.filled()));

        let channels = kept.iter().filter_map(|k| {
            let fraction = fraction(k.channels, k.channels_total)?;
            let x = k.layer as f64 + BAR_GAP / 2.0 + BAR_HALF_WIDTH;
            Some(bar(x, fraction, CHANNELS_COLOR))
        });
        chart
            .draw_series(channels)
            .map_err(chart_error)?
            .label("MLP channels kept")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], CHANNELS_COLOR.filled())
            });

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Draws the chart of [`kept_chart_svg`] and writes it to `path` atomically.
pub fn write_kept_chart(path: impl AsRef<Path>, kept: &[LayerKept], caption: &str) -> Result<()> {
    let svg = kept_chart_svg(kept, caption)?;
    write_atomic(path, svg.as_bytes())
}

fn fraction(kept: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| kept as f64 / total as f64)
}

/// Builds a bar centred on `x`.
fn bar(x: f64, height: f64, color: RGBColor) -> Rectangle<(f64, f64)> {
    Rectangle::new(
        [(x - BAR_HALF_WIDTH, 0.0), (x + BAR_HALF_WIDTH, height)],
        color.filled(),
    )
}

/// Labels whole layer numbers and leaves any other tick blank.
fn layer_label(x: f64, num_layers: usize) -> String {
    let rounded = x.round();
    let is_layer =
        (x - rounded).abs() < LAYER_TICK_TOLERANCE && rounded >= 0.0 && rounded < num_layers as f64;
    if is_layer {
        format!("{}", rounded as usize)
    } else {
        String::new()
    }
}
