//! The run report, units kept per layer and the chart drawn from them.

use pgprune::export::{
    kept_chart_svg, kept_per_layer, median, write_kept_chart, LayerKept, ParamCounts,
    PerplexitySummary, Report,
};
use pgprune::{Error, UnitKind, UnitSpace};
use tch::Tensor;

const LAYERS: usize = 3;
const HEADS: usize = 3;
const CHANNELS: usize = 8;

fn space() -> UnitSpace {
    let mut space = UnitSpace::new();
    for layer in 0..LAYERS {
        space.push(UnitKind::Head, layer, HEADS, 100);
        space.push(UnitKind::Channel, layer, CHANNELS, 10);
    }
    space
}

fn layer(layer: usize, heads: usize, channels: usize) -> LayerKept {
    LayerKept {
        layer,
        heads,
        heads_total: HEADS,
        channels,
        channels_total: CHANNELS,
        attention_block: heads > 0,
        mlp_block: channels > 0,
    }
}

/// Collects the trimmed contents of every `<text>` element of an SVG document.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|element| {
            let (_, rest) = element.split_once('>')?;
            let (content, _) = rest.split_once("</text>")?;
            Some(content.trim().to_string())
        })
        .collect()
}

fn sample_report() -> Report {
    Report {
        sparsity: 0.2,
        ppl: PerplexitySummary {
            dense: 12.5,
            init: 20.0,
            init_policy: Some(15.0),
            final_: f64::NAN,
        },
        eval_tokens: 127 * 10,
        eval_seq_len: 128,
        params: ParamCounts {
            before: 1000,
            after: 800,
        },
        kept: vec![layer(0, 3, 8), layer(1, 0, 4)],
        forward_passes: 60,
        wall_seconds: 3.5,
        step_seconds: 0.1,
        non_finite_losses: 1,
        skipped_steps: 0,
        settings: serde_json::json!({"seed": 7, "lr": 0.002}),
    }
}

#[test]
fn kept_counts_mask_per_layer() {
    let space = space();
    let mut mask = vec![1.0f32; space.num_units()];
    // Layer 1 loses every head, layer 2 loses 5 channels.
    let heads_1 = space.group(UnitKind::Head, 1).unwrap().clone();
    mask[heads_1.offset..heads_1.offset + heads_1.len].fill(0.0);
    let channels_2 = space.group(UnitKind::Channel, 2).unwrap().clone();
    mask[channels_2.offset..channels_2.offset + 5].fill(0.0);

    let kept = kept_per_layer(&space, &Tensor::from_slice(&mask)).unwrap();
    assert_eq!(kept.len(), LAYERS);
    assert_eq!(kept[0], layer(0, HEADS, CHANNELS));
    assert_eq!(kept[1].heads, 0);
    assert!(
        !kept[1].attention_block,
        "a layer without heads loses its attention block"
    );
    assert!(kept[1].mlp_block);
    assert_eq!(kept[2].channels, CHANNELS - 5);
    assert_eq!(kept[2].channels_total, CHANNELS);
}

#[test]
fn kept_honours_block_units() {
    let mut space = UnitSpace::new();
    space.push(UnitKind::AttentionBlock, 0, 1, 1000);
    space.push(UnitKind::MlpBlock, 0, 1, 2000);
    let kept = kept_per_layer(&space, &Tensor::from_slice(&[0.0f32, 1.0])).unwrap();
    assert!(!kept[0].attention_block);
    assert!(kept[0].mlp_block);
    assert_eq!(kept[0].heads_total, 0);
}

#[test]
fn kept_rejects_wrong_mask_length() {
    let result = kept_per_layer(&space(), &Tensor::from_slice(&[1.0f32; 4]));
    assert!(matches!(result, Err(Error::Shape { .. })));
}

#[test]
fn report_round_trips_through_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let report = sample_report();
    report.write(&path).unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["ppl"]["dense"], 12.5);
    assert!(
        value["ppl"]["final"].is_null(),
        "NaN must be written as null"
    );
    assert_eq!(value["kept"][1]["heads"], 0);
    assert_eq!(value["settings"]["seed"], 7);
    assert_eq!(value["params"]["after"], 800);

    let read = Report::read(&path).unwrap();
    assert!(read.ppl.final_.is_nan());
    assert_eq!(read.kept, report.kept);
    assert_eq!(read.settings, report.settings);
    assert_eq!(read.non_finite_losses, 1);
}

#[test]
fn report_read_names_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    std::fs::write(&path, b"{\"sparsity\": 0.2}").unwrap();
    match Report::read(&path) {
        Err(Error::Json { context, .. }) => assert!(context.contains("report.json")),
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

#[test]
fn median_of_odd_even_and_empty() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    assert!(median(&[]).is_nan());
}

#[test]
fn chart_has_one_bar_per_layer_and_kind() {
    let mut kept: Vec<LayerKept> = (0..5).map(|l| layer(l, 1 + l % 3, 2 + l)).collect();
    // A layer without channel units gets no channel bar.
    kept[4].channels = 0;
    kept[4].channels_total = 0;
    let svg = kept_chart_svg(&kept, "units kept").unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
    assert!(svg_texts(&svg).contains(&"units kept".to_string()));
    // Each kind has one legend swatch besides its bars.
    let head_rects = svg.matches("fill=\"#1F77B4\"").count();
    let channel_rects = svg.matches("fill=\"#FF7F0E\"").count();
    assert_eq!(head_rects, 5 + 1);
    assert_eq!(channel_rects, 4 + 1);
    let texts = svg_texts(&svg);
    for l in 0..kept.len() {
        assert!(texts.contains(&l.to_string()), "no label for layer {l}");
    }
}

#[test]
fn chart_labels_thirty_layers() {
    let kept: Vec<LayerKept> = (0..30).map(|l| layer(l, 2, 5)).collect();
    let svg = kept_chart_svg(&kept, "SmolLM2-135M").unwrap();
    let texts = svg_texts(&svg);
    for l in 0..kept.len() {
        assert!(texts.contains(&l.to_string()), "no label for layer {l}");
    }
}

#[test]
fn chart_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.svg");
    write_kept_chart(&path, &sample_report().kept, "units kept").unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn chart_rejects_no_layers() {
    assert!(matches!(
        kept_chart_svg(&[], "x"),
        Err(Error::InvalidArgument { .. })
    ));
}
