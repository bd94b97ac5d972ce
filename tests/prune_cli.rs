//! The `prune` example as a user runs it: bad inputs fail with a clear
//! message and leave no output behind; a tiny run writes a complete output
//! folder that the `eval` example reads back; `--resume` finishes an
//! interrupted run exactly as an uninterrupted one.

mod prune_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prune_common::{fixture_model_folder, word_text};

/// Fixture model used by the command-line runs.
const FIXTURE: &str = "llama3_gqa";

/// Relative tolerance between the report's final perplexity and the `eval`
/// example's. Both run the same f32 weights (saved and loaded losslessly)
/// on the same windows with the same batch size, so they agree to the
/// rounding of the printed JSON numbers; 1e-9 still allows for a differently
/// blocked reduction in a different process.
const EVAL_PPL_RELATIVE_TOLERANCE: f64 = 1e-9;

/// Path of a built example binary, next to the test binary's `deps` folder.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary sits in <target>/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.is_file(),
        "{} not found: run the tests with `cargo test`, which builds the examples first",
        binary.display()
    );
    binary
}

/// A scratch folder with a tiny model folder, calibration and evaluation
/// text, and a fresh parent folder for `--out`.
struct Scratch {
    _temp: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    calib: PathBuf,
    eval: PathBuf,
    /// Folder that holds `--out` and nothing else, to check for leftovers.
    out_parent: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let root = temp.path().to_path_buf();
        let model = root.join("model");
        let vocab_size = fixture_model_folder(FIXTURE, &model);
        let calib = root.join("calib.txt");
        std::fs::write(&calib, word_text(1024, vocab_size, 1)).expect("calib written");
        let eval = root.join("eval.txt");
        std::fs::write(&eval, word_text(512, vocab_size, 2)).expect("eval written");
        let out_parent = root.join("runs");
        std::fs::create_dir(&out_parent).expect("runs folder");
        Scratch { _temp: temp, root, model, calib, eval, out_parent }
    }

    fn out(&self) -> PathBuf {
        self.out_parent.join("out")
    }

    /// Fast settings with every path pointing into this scratch folder.
    fn base_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--steps", "1", "--eval-max-tokens", "256", "--init-samples", "2", "--batch", "1",
            "--seq-len", "16", "--eval-seq-len", "16", "--dtype", "f32", "--threads", "1",
            "--sparsity", "0.3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (flag, path) in [
            ("--model", &self.model),
            ("--calib", &self.calib),
            ("--eval", &self.eval),
            ("--out", &self.out()),
        ] {
            args.push(flag.to_string());
            args.push(path.display().to_string());
        }
        args
    }
}

/// Replaces the value of `flag` in `args`, or appends the flag.
fn with_arg(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_string(),
        None => {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
    }
    args
}

fn run_example(name: &str, args: &[String]) -> Output {
    Command::new(example_binary(name))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("example binary starts")
}

/// Names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("folder lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs `prune` with `args` and checks that it fails cleanly: non-zero
/// exit, no panic, every `expected` fragment in stderr, and nothing left in
/// `out_parent` beyond `allowed`.
fn assert_fails(label: &str, scratch: &Scratch, args: &[String], expected: &[&str], allowed: &[&str]) {
    let output = run_example("prune", args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{label}: prune should fail; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked at"), "{label}: prune panicked:\n{stderr}");
    for fragment in expected {
        assert!(
            stderr.contains(fragment),
            "{label}: stderr should mention '{fragment}':\n{stderr}"
        );
    }
    let left: Vec<String> = entries(&scratch.out_parent)
        .into_iter()
        .filter(|name| !allowed.contains(&name.as_str()))
        .collect();
    assert!(left.is_empty(), "{label}: output left behind: {left:?}");
}

#[test]
fn bad_numbers_rejected() {
    let scratch = Scratch::new();
    let base = scratch.base_args();
    let cases: [(&str, &str, &[&str]); 9] = [
        ("--sparsity", "1.5", &["--sparsity 1.5", "[0, 1)"]),
        ("--sparsity", "-0.1", &["--sparsity -0.1", "[0, 1)"]),
        ("--sparsity", "NaN", &["--sparsity NaN", "[0, 1)"]),
        ("--k", "0", &["--k 0", "positive integer"]),
        ("--batch", "0", &["--batch 0", "positive integer"]),
        ("--granularity", "heads,foo", &["'foo'", "heads, channels or blocks"]),
        ("--steps", "0", &["--steps 0", "at least one step"]),
        ("--lr", "-1", &["--lr -1", "above 0"]),
        ("--lr", "inf", &["--lr inf", "above 0"]),
    ];
    for (flag, value, expected) in cases {
        let args = with_arg(base.clone(), flag, value);
        assert_fails(&format!("{flag} {value}"), &scratch, &args, expected, &[]);
    }
}

#[test]
fn unusable_models_rejected() {
    let scratch = Scratch::new();
    let base = scratch.base_args();

    let missing = scratch.root.join("no-such-model");
    let args = with_arg(base.clone(), "--model", &missing.display().to_string());
    assert_fails("missing model", &scratch, &args, &["no-such-model", "not found"], &[]);

    let text_model = scratch.root.join("model.txt");
    std::fs::write(&text_model, "not a model").expect("text model written");
    let args = with_arg(base.clone(), "--model", &text_model.display().to_string());
    assert_fails("text file as model", &scratch, &args, &["model.txt", ".gguf"], &[]);

    let bad_config = scratch.root.join("bad-config");
    fixture_model_folder(FIXTURE, &bad_config);
    std::fs::write(bad_config.join("config.json"), "{ \"hidden_size\": 32, ").expect("config written");
    let args = with_arg(base.clone(), "--model", &bad_config.display().to_string());
    assert_fails("malformed config.json", &scratch, &args, &["config.json"], &[]);
}

#[test]
fn truncated_gguf_rejected() {
    /// Bytes kept of the real GGUF: its header and part of its metadata.
    const TRUNCATED_BYTES: usize = 1 << 20;
    let scratch = Scratch::new();
    let source = std::env::var_os("PGPRUNE_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/pgprune/model/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let bytes = std::fs::read(&source)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh to fetch it", source.display()));
    let truncated = scratch.root.join("x.gguf");
    std::fs::write(&truncated, &bytes[..TRUNCATED_BYTES.min(bytes.len())]).expect("truncated copy written");
    let args = with_arg(scratch.base_args(), "--model", &truncated.display().to_string());
    assert_fails("truncated GGUF", &scratch, &args, &["x.gguf"], &[]);
}

#[test]
fn unusable_text_rejected() {
    let scratch = Scratch::new();
    let base = scratch.base_args();

    let empty = scratch.root.join("empty.txt");
    std::fs::write(&empty, "").expect("empty file written");
    let args = with_arg(base.clone(), "--calib", &empty.display().to_string());
    assert_fails("empty calibration file", &scratch, &args, &["--calib"], &[]);

    let short = scratch.root.join("short.txt");
    std::fs::write(&short, "w1 w2 w3 w4 w5").expect("short file written");
    let args = with_arg(base.clone(), "--calib", &short.display().to_string());
    assert_fails("calibration shorter than --seq-len", &scratch, &args, &["--calib", "16"], &[]);

    let missing = scratch.root.join("no-such-eval.txt");
    let args = with_arg(base.clone(), "--eval", &missing.display().to_string());
    assert_fails("missing eval file", &scratch, &args, &["no-such-eval.txt"], &[]);
}

#[test]
fn bad_run_settings_rejected() {
    let scratch = Scratch::new();
    let base = scratch.base_args();

    let args = with_arg(base.clone(), "--device", "cuda:7");
    assert_fails("--device cuda:7", &scratch, &args, &["cuda:7", "cpu"], &[]);

    let mut args = base.clone();
    args.push("--resume".to_string());
    assert_fails("--resume without checkpoint", &scratch, &args, &["out.checkpoint.json"], &[]);

    let out = scratch.out();
    std::fs::create_dir(&out).expect("out created");
    std::fs::write(out.join("keep.txt"), "user data").expect("user file written");
    assert_fails("existing --out", &scratch, &base, &["--overwrite"], &["out"]);
    assert_eq!(entries(&out), vec!["keep.txt".to_string()], "existing --out content changed");
    let content = std::fs::read_to_string(out.join("keep.txt")).expect("user file reads");
    assert_eq!(content, "user data", "existing --out file changed");
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_ok(name: &str, args: &[String]) -> Output {
    let output = run_example(name, args);
    assert!(
        output.status.success(),
        "{name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn number(report: &serde_json::Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("report has no number at {pointer}: {report}"))
}

#[test]
fn tiny_run_writes_loadable_output() {
    let scratch = Scratch::new();
    let args = with_arg(scratch.base_args(), "--steps", "3");
    run_ok("prune", &args);

    let out = scratch.out();
    assert_eq!(entries(&scratch.out_parent), vec!["out".to_string()], "leftovers beside --out");
    for file in ["model.safetensors", "config.json", "tokenizer.json", "report.json", "kept_per_layer.svg"] {
        assert!(out.join(file).is_file(), "{file} missing from the output folder");
    }
    let report = read_json(&out.join("report.json"));
    for pointer in ["/sparsity", "/ppl/dense", "/ppl/init", "/ppl/final", "/wall_seconds", "/step_seconds"] {
        let value = number(&report, pointer);
        assert!(value.is_finite(), "{pointer} = {value} is not finite");
    }
    let before = number(&report, "/params/before");
    let after = number(&report, "/params/after");
    assert!(after < before, "params.after {after} should be below params.before {before}");
    assert_eq!(number(&report, "/eval_tokens"), 240.0, "16 windows of 16 tokens predict 15 tokens each");
    assert_eq!(number(&report, "/forward_passes"), 6.0, "3 steps of K = 2 masks");
    assert!(report["kept"].as_array().is_some_and(|k| !k.is_empty()), "kept is empty: {report}");
    assert_eq!(report.pointer("/settings/steps"), Some(&serde_json::json!(3)), "settings.steps");
    let svg = std::fs::read_to_string(out.join("kept_per_layer.svg")).expect("chart reads");
    assert!(svg.contains("<svg"), "kept_per_layer.svg is not an SVG");

    let eval_args: Vec<String> = [
        "--model", &out.display().to_string(), "--text", &scratch.eval.display().to_string(),
        "--seq-len", "16", "--max-tokens", "256", "--batch", "8", "--dtype", "f32", "--threads", "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let output = run_ok("eval", &eval_args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("eval prints a line");
    let summary: serde_json::Value = serde_json::from_str(last).expect("eval's last line is JSON");
    let eval_ppl = number(&summary, "/ppl");
    let report_ppl = number(&report, "/ppl/final");
    let relative = (eval_ppl - report_ppl).abs() / report_ppl;
    assert!(
        relative < EVAL_PPL_RELATIVE_TOLERANCE,
        "eval ppl {eval_ppl} vs report ppl.final {report_ppl} (relative {relative:e})"
    );
    assert_eq!(number(&summary, "/tokens"), number(&report, "/eval_tokens"), "evaluated tokens differ");
}

#[test]
fn resume_matches_uninterrupted_run() {
    let scratch = Scratch::new();
    let common = with_arg(with_arg(scratch.base_args(), "--steps", "4"), "--checkpoint-every", "2");
    let common = with_arg(common, "--k", "3");

    let whole_out = scratch.root.join("whole");
    run_ok("prune", &with_arg(common.clone(), "--out", &whole_out.display().to_string()));

    let stopped = run_ok("prune", &with_arg(common.clone(), "--stop-after", "3"));
    assert!(stopped.stdout.is_empty(), "a stopped run should print no summary");
    let checkpoint = scratch.out_parent.join("out.checkpoint.json");
    assert_eq!(
        entries(&scratch.out_parent),
        vec!["out.checkpoint.json".to_string()],
        "a stopped run should leave only its checkpoint"
    );
    let saved = read_json(&checkpoint);
    assert!(saved.is_object(), "checkpoint is not a JSON object");

    let mut resumed = common.clone();
    resumed.push("--resume".to_string());
    run_ok("prune", &resumed);
    assert_eq!(entries(&scratch.out_parent), vec!["out".to_string()], "checkpoint should be removed");

    let whole = read_json(&whole_out.join("report.json"));
    assert_ne!(
        number(&whole, "/ppl/final"),
        number(&whole, "/ppl/init"),
        "the steps should move the mask away from the initial one, or resume is not tested"
    );
    let resumed = read_json(&scratch.out().join("report.json"));
    assert_eq!(resumed["kept"], whole["kept"], "kept units differ after resume");
    assert_eq!(
        number(&resumed, "/ppl/final"),
        number(&whole, "/ppl/final"),
        "final perplexity differs after resume"
    );
    assert_eq!(number(&resumed, "/forward_passes"), number(&whole, "/forward_passes"), "forward passes");
}

#[test]
fn library_api_example_saves_model() {
    let scratch = Scratch::new();
    let out = scratch.out();
    let args: Vec<String> = [&scratch.model, &scratch.calib, &out].iter().map(|p| p.display().to_string()).collect();
    run_ok("library_api", &args);
    for file in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(out.join(file).is_file(), "{file} missing from the library_api output");
    }
}
