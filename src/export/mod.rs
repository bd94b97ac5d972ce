//! Run outputs: atomic file and folder writes, the JSON report and the chart
//! of units kept per layer.

mod atomic;
mod chart;
mod report;

pub use atomic::{write_atomic, write_json_atomic, OutputDir};
pub use chart::{kept_chart_svg, write_kept_chart, CHANNELS_COLOR, HEADS_COLOR};
pub use report::{kept_per_layer, median, LayerKept, ParamCounts, PerplexitySummary, Report};
