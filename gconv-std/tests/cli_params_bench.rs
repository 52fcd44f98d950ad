//! `gconv params` and `gconv bench` end to end: the built binary's tables are parsed
//! and every number is checked against the formulas of `CONVENTIONS.md` ("Parameters
//! and channel budgets"), computed here independently of the library; the bench line
//! is parsed key by key; every bad input is one line on stderr with exit status 2.

mod common;

use std::process::Output;

fn gconv(args: &[&str]) -> Output {
    common::gconv_command()
        .args(args)
        .output()
        .expect("the gconv binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// Runs `gconv ARGS`, expects exit status 2, nothing on stdout and one line
/// `gconv: ...` on stderr; returns that line.
fn fails(args: &[&str]) -> String {
    let out = gconv(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stdout.is_empty(), "{args:?}: stdout {stdout:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(stderr.starts_with("gconv: "), "{stderr:?}");
    stderr.trim_end().to_string()
}

fn assert_contains(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
}

// ---------------------------------------------------------------- params

/// One row of a params table.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    kind: String,
    channels: (u64, u64),
    planes: (u64, u64),
    learnable: u64,
    weights: u64,
    bank: u64,
    macs_per_pixel: u64,
    macs: u64,
}

/// One parsed table: its `== title ==` line, its layer rows and its total row
/// `[learnable, weights, bank, MACs/pixel, MACs/layer]`.
#[derive(Debug)]
struct Table {
    title: String,
    rows: Vec<Row>,
    total: [u64; 5],
}

fn num(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("{s:?} is not a number"))
}

/// One summary row: network, total learnable and MACs, each with its printed ratio to
/// the planar CNN.
#[derive(Debug)]
struct SummaryRow {
    name: String,
    params: u64,
    params_ratio: f64,
    macs: u64,
    macs_ratio: f64,
}

/// Parses the four network tables and the summary rows of `gconv params` output.
fn parse_params(stdout: &str) -> (Vec<Table>, Vec<SummaryRow>) {
    let mut tables: Vec<Table> = Vec::new();
    let mut summary = Vec::new();
    let mut in_summary = false;
    for line in stdout.lines() {
        if let Some(title) = line.strip_prefix("== ") {
            in_summary = title.starts_with("summary");
            if !in_summary {
                tables.push(Table {
                    title: title.trim_end_matches(" ==").to_string(),
                    rows: Vec::new(),
                    total: [0; 5],
                });
            }
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if !line.starts_with("  ") || tokens.is_empty() {
            continue;
        }
        if in_summary {
            if tokens[0] == "network" {
                continue;
            }
            let n = tokens.len();
            let ratio = |s: &str| -> f64 { s.strip_suffix('x').unwrap().parse().unwrap() };
            summary.push(SummaryRow {
                name: tokens[..n - 4].join(" "),
                params: num(tokens[n - 4]),
                params_ratio: ratio(tokens[n - 3]),
                macs: num(tokens[n - 2]),
                macs_ratio: ratio(tokens[n - 1]),
            });
            continue;
        }
        let Some(table) = tables.last_mut() else {
            continue;
        };
        if tokens[0] == "total" {
            assert_eq!(tokens.len(), 6, "{line:?}");
            table.total = [1, 2, 3, 4, 5].map(|i| num(tokens[i]));
        } else if tokens[0] != "layer" {
            assert_eq!(tokens.len(), 13, "{line:?}");
            assert_eq!(num(tokens[0]) as usize, table.rows.len() + 1, "{line:?}");
            assert_eq!((tokens[3], tokens[6]), ("->", "->"), "{line:?}");
            table.rows.push(Row {
                kind: tokens[1].to_string(),
                channels: (num(tokens[2]), num(tokens[4])),
                planes: (num(tokens[5]), num(tokens[7])),
                learnable: num(tokens[8]),
                weights: num(tokens[9]),
                bank: num(tokens[10]),
                macs_per_pixel: num(tokens[11]),
                macs: num(tokens[12]),
            });
        }
    }
    (tables, summary)
}

/// The rows a network must have, from the formulas of CONVENTIONS.md: `layers` conv
/// layers of `m` G-channels on a group of order `s` (1: planar), `c` input channels.
fn expected_rows(group: &str, s: u64, m: u64, layers: usize, k: u64, c: u64, h: u64) -> Vec<Row> {
    (0..layers)
        .map(|i| {
            let (nti, c_in) = if i == 0 { (1, c) } else { (s, m) };
            let to = if s == 1 { "Z2" } else { group };
            let from = if i == 0 { "Z2" } else { to };
            let weights = m * c_in * nti * k * k;
            Row {
                kind: format!("{from}->{to}"),
                channels: (c_in, m),
                planes: (c_in * nti, m * s),
                learnable: weights + m,
                weights,
                bank: weights * s,
                macs_per_pixel: m * s * c_in * nti * k * k,
                macs: m * s * c_in * nti * k * k * h * h,
            }
        })
        .collect()
}

fn run_params(args: &[&str]) -> String {
    let mut all = vec!["params"];
    all.extend_from_slice(args);
    let out = gconv(&all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Checks every number of the four tables and the summary for a 3-layer planar CNN
/// with 64 channels, 3x3 kernels, 3 input channels and 32x32 maps.
fn check_params_tables(group: &str, order: u64, budgets: [u64; 2]) {
    let stdout = run_params(&[
        "--group",
        &group.to_lowercase(),
        "--planar-channels",
        "64",
        "--layers",
        "3",
        "-k",
        "3",
        "--in-channels",
        "3",
        "--size",
        "32",
    ]);
    let (tables, summary) = parse_params(&stdout);
    assert_eq!(tables.len(), 4, "{stdout}");
    let [equal_params, equal_compute] = budgets;
    let (params_words, compute_words) = (
        format!("= {equal_params} G-channels"),
        format!("= {equal_compute} G-channels"),
    );
    // (group order, G-channels, words the title must contain)
    let networks = [
        (1, 64, vec!["planar", "64"]),
        (order, 64, vec![group, "same G-channels", "64"]),
        (
            order,
            equal_params,
            vec![group, "equal parameters", &params_words],
        ),
        (
            order,
            equal_compute,
            vec![group, "equal compute", &compute_words],
        ),
    ];
    let planar_params = expected_rows(group, 1, 64, 3, 3, 3, 32)
        .iter()
        .map(|r| r.learnable)
        .sum::<u64>();
    let planar_macs = expected_rows(group, 1, 64, 3, 3, 3, 32)
        .iter()
        .map(|r| r.macs)
        .sum::<u64>();
    assert_eq!(summary.len(), 4, "{stdout}");
    for ((table, (s, m, words)), sum) in tables.iter().zip(&networks).zip(&summary) {
        for w in words {
            assert!(table.title.contains(w), "{w:?} not in {:?}", table.title);
        }
        let expected = expected_rows(group, *s, *m, 3, 3, 3, 32);
        assert_eq!(table.rows, expected, "{}", table.title);
        let total = |f: fn(&Row) -> u64| expected.iter().map(f).sum::<u64>();
        let totals = [
            total(|r| r.learnable),
            total(|r| r.weights),
            total(|r| r.bank),
            total(|r| r.macs_per_pixel),
            total(|r| r.macs),
        ];
        assert_eq!(table.total, totals, "{}", table.title);
        // Summary: the totals and their ratios to the planar CNN (2 decimals).
        let name = &sum.name;
        assert!(name.contains(words[0]), "{name:?} is not {:?}", table.title);
        assert_eq!((sum.params, sum.macs), (totals[0], totals[4]), "{name}");
        assert!(
            (sum.params_ratio - totals[0] as f64 / planar_params as f64).abs() <= 0.0051,
            "{name}"
        );
        assert!(
            (sum.macs_ratio - totals[4] as f64 / planar_macs as f64).abs() <= 0.0051,
            "{name}"
        );
    }
    // Equal compute keeps the planar CNN's MACs exactly (|G| divides 64).
    assert_eq!(summary[3].macs, planar_macs);
    assert_contains(
        &stdout,
        &[
            "one bias per output G-channel",
            "not parameters",
            &format!("applies {order} transformed copies"),
        ],
    );
    // The tables line up: every header, layer and total line has the same width.
    let widths: Vec<usize> = stdout
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            l.starts_with("  ")
                && (t.starts_with("layer")
                    || t.starts_with("total")
                    || t.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|l| l.chars().count())
        .collect();
    assert_eq!(widths.len(), 4 * 5, "{stdout}");
    assert!(widths.iter().all(|w| *w == widths[0]), "{widths:?}");
}

#[test]
fn params_c4_every_number_matches_the_formulas() {
    // Equal parameters round(64 / sqrt 4) = 32, equal compute 64 / 4 = 16.
    check_params_tables("C4", 4, [32, 16]);
}

#[test]
fn params_d4_every_number_matches_the_formulas() {
    // Equal parameters round(64 / sqrt 8) = round(22.6) = 23, equal compute 64 / 8 = 8.
    check_params_tables("D4", 8, [23, 8]);
}

#[test]
fn params_defaults_and_budgets_of_at_least_one_channel() {
    // Defaults: 3 layers, K = 3, 1 input channel, 32x32.
    let (tables, _) = parse_params(&run_params(&["--group", "c4", "--planar-channels", "10"]));
    assert_eq!(tables[1].rows, expected_rows("C4", 4, 10, 3, 3, 1, 32));
    // round(10 / 2) = 5, round(10 / 4) = round(2.5) = 3.
    assert_eq!(tables[2].rows[0].channels, (1, 5));
    assert_eq!(tables[3].rows[0].channels, (1, 3));
    // One planar channel: round(1 / sqrt 8) = 0 and round(1 / 8) = 0 become 1.
    let stdout = run_params(&[
        "--group",
        "p4m",
        "--planar-channels",
        "1",
        "--layers",
        "1",
        "-k",
        "5",
        "--size",
        "7",
    ]);
    let (tables, _) = parse_params(&stdout);
    assert_eq!(tables.len(), 4);
    for (table, m) in tables.iter().zip([1, 1, 1, 1]) {
        let s = if table.title.starts_with("planar") {
            1
        } else {
            8
        };
        assert_eq!(table.rows, expected_rows("D4", s, m, 1, 5, 1, 7));
    }
}

#[test]
fn params_bad_inputs_are_one_line_errors() {
    let base = ["params", "--group", "c4", "--planar-channels", "8"];
    let with = |flag: &'static str, value: &'static str| {
        let mut args: Vec<&str> = base.to_vec();
        match args.iter().position(|a| *a == flag) {
            Some(i) => args[i + 1] = value,
            None => args.extend([flag, value]),
        }
        args
    };
    assert_contains(
        &fails(&with("--group", "x4")),
        &["--group", "\"x4\"", "c4", "d4"],
    );
    assert_contains(&fails(&with("--group", "z2")), &["--group", "\"z2\""]);
    assert_contains(
        &fails(&with("--planar-channels", "0")),
        &["--planar-channels", "at least 1"],
    );
    assert_contains(
        &fails(&with("--planar-channels", "-4")),
        &["--planar-channels", "\"-4\""],
    );
    assert_contains(&fails(&with("--layers", "0")), &["--layers", "at least 1"]);
    assert_contains(&fails(&with("-k", "0")), &["-k", "at least 1"]);
    assert_contains(&fails(&with("--in-channels", "x")), &["--in-channels"]);
    assert_contains(&fails(&with("--size", "0")), &["--size", "at least 1"]);
    assert_contains(
        &fails(&with("--planar-channels", "4000000000")),
        &["too large"],
    );
}

// ---------------------------------------------------------------- bench

/// The parsed result line of `gconv bench`.
#[derive(Debug)]
struct BenchLine {
    median_ms: f64,
    min_ms: f64,
    gflops: f64,
    threads: usize,
    path: String,
    expand_ms: f64,
    scratch_bytes: usize,
}

/// Parses `median_ms=<f> min_ms=<f> gflops=<f> threads=<int> path=<name>
/// expand_ms=<f> scratch_bytes=<int>`, keys in this order, floats written as
/// digits '.' digits.
fn parse_bench_line(line: &str) -> BenchLine {
    let fields: Vec<(&str, &str)> = line
        .split(' ')
        .map(|kv| {
            kv.split_once('=')
                .unwrap_or_else(|| panic!("{kv:?} in {line:?}"))
        })
        .collect();
    let keys: Vec<&str> = fields.iter().map(|f| f.0).collect();
    assert_eq!(
        keys,
        [
            "median_ms",
            "min_ms",
            "gflops",
            "threads",
            "path",
            "expand_ms",
            "scratch_bytes"
        ],
        "{line:?}"
    );
    let float = |v: &str| -> f64 {
        let (a, b) = v.split_once('.').unwrap_or_else(|| panic!("{v:?}"));
        assert!(!a.is_empty() && !b.is_empty(), "{v:?} is not digits.digits");
        assert!(
            a.chars().chain(b.chars()).all(|c| c.is_ascii_digit()),
            "{v:?}"
        );
        v.parse().unwrap()
    };
    let path = fields[4].1;
    assert!(
        !path.is_empty() && path.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{path:?}"
    );
    BenchLine {
        median_ms: float(fields[0].1),
        min_ms: float(fields[1].1),
        gflops: float(fields[2].1),
        threads: fields[3].1.parse().expect("threads is an integer"),
        path: path.to_string(),
        expand_ms: float(fields[5].1),
        scratch_bytes: fields[6].1.parse().expect("scratch_bytes is an integer"),
    }
}

/// Runs `gconv bench`, expects success and exactly one line on stdout; returns it
/// parsed, and stderr.
fn bench(args: &[&str]) -> (BenchLine, String) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let out = gconv(&all);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(stdout.ends_with('\n'), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    (parse_bench_line(stdout.trim_end_matches('\n')), stderr)
}

#[test]
fn bench_prints_one_parsable_line_for_every_pair() {
    // (from, to, nti, nto); cin 2, cout 3, K 3, 12x12, valid: output 10x10.
    let pairs = [
        ("z2", "c4", 1, 4),
        ("c4", "c4", 4, 4),
        ("z2", "d4", 1, 8),
        ("d4", "d4", 8, 8),
    ];
    let fast = format!(
        "fast_{}",
        gconv_std::fast::kernel().expect("GCONV_KERNEL").name()
    );
    let fourier = format!(
        "fourier_{}",
        gconv_std::fast::kernel().expect("GCONV_KERNEL").name()
    );
    for ((from, to, nti, nto), path) in pairs
        .into_iter()
        .flat_map(|p| ["direct", "blocked", "fast", "fourier", "auto"].map(|path| (p, path)))
    {
        for threads in ["1", "2"] {
            let (line, stderr) = bench(&[
                "--path",
                path,
                "--from",
                from,
                "--to",
                to,
                "--cin",
                "2",
                "--cout",
                "3",
                "-k",
                "3",
                "--size",
                "12",
                "--iters",
                "3",
                "--threads",
                threads,
            ]);
            let what = format!("{from}->{to} {path} threads {threads}: {line:?}");
            assert!(line.min_ms > 0.0, "{what}");
            assert!(line.median_ms >= line.min_ms, "{what}");
            assert!(line.gflops > 0.0, "{what}");
            // Every path splits one image over the threads.
            assert_eq!(line.threads.to_string(), threads, "{what}");
            // auto is the fast or the Fourier path for K <= 11 on x86 (the blocked path
            // off x86 with the portable kernel); direct keeps no scratch, blocked one
            // block of MR = 2 packed filters (2*nti*3*3 taps each) per thread.
            if path == "direct" {
                assert_eq!(line.path, "direct", "{what}");
                assert_eq!(line.scratch_bytes, 0, "{what}");
            } else if path == "blocked" || line.path == "blocked" {
                assert!(path == "blocked" || !cfg!(target_arch = "x86_64"), "{what}");
                assert_eq!(line.path, "blocked", "{what}");
                let per_thread = 4 * 2 * (2 * nti * 3 * 3);
                assert_eq!(line.scratch_bytes, line.threads * per_thread, "{what}");
            } else {
                match path {
                    "fast" => assert_eq!(line.path, fast, "{what}"),
                    "fourier" => assert_eq!(line.path, fourier, "{what}"),
                    _ => assert!(line.path == fast || line.path == fourier, "{what}"),
                }
                // At least the padded-free input planes, f32 each.
                assert!(line.scratch_bytes >= 4 * 2 * nti * 10 * 10, "{what}");
            }
            assert!(line.expand_ms >= 0.0, "{what}");
            // gflops = 2 * MACs / median, MACs = output values * C_in * nti * K * K.
            let macs = (3 * nto * 10 * 10) as f64 * (2 * nti * 3 * 3) as f64;
            let expected = 2.0 * macs / (line.median_ms * 1e-3) / 1e9;
            assert!(
                (line.gflops - expected).abs() <= 1e-4 + 2e-3 * expected,
                "{what}: expected {expected}"
            );
            assert_contains(&stderr, &[&format!("{} MACs", macs as u64)]);
        }
    }
}

#[test]
fn bench_options_batch_stride_padding_and_thread_cap() {
    // Batch 3, stride 2, padding 1 on D4->D4, 2 threads (split inside image 1).
    let (line, stderr) = bench(&[
        "--from",
        "p4m",
        "--to",
        "p4m",
        "--cin",
        "2",
        "--cout",
        "3",
        "-k",
        "3",
        "--size",
        "9",
        "--batch",
        "3",
        "--stride",
        "2",
        "--padding",
        "1",
        "--threads",
        "2",
        "--iters",
        "0",
        "--path",
        "direct",
    ]);
    assert_eq!((line.threads, line.path.as_str()), (2, "direct"));
    // Output (3, 3, 8, 5, 5), 2 * 8 * 9 terms each.
    assert_contains(
        &stderr,
        &["[3, 3, 8, 5, 5]", &format!("{} MACs", 3 * 3 * 8 * 25 * 144)],
    );
    // Only batch * C_out = 3 blocks to share out: 8 threads asked, 3 run.
    let (line, stderr) = bench(&[
        "--from",
        "z2",
        "--to",
        "c4",
        "--cin",
        "1",
        "--cout",
        "3",
        "-k",
        "2",
        "--size",
        "6",
        "--threads",
        "8",
        "--iters",
        "2",
        "--path",
        "direct",
    ]);
    assert_eq!(line.threads, 3, "{stderr}");
    assert_contains(&stderr, &["8 asked for"]);
}

#[test]
fn bench_bad_inputs_are_one_line_errors() {
    let with = |extra: &[&'static str]| {
        let mut args = vec![
            "bench", "--from", "c4", "--to", "c4", "--cin", "2", "--cout", "3", "-k", "3",
            "--size", "8",
        ];
        for pair in extra.chunks(2) {
            match args.iter().position(|a| *a == pair[0]) {
                Some(i) => args[i + 1] = pair[1],
                None => args.extend(pair),
            }
        }
        args
    };
    assert_contains(
        &fails(&with(&["--threads", "0"])),
        &["--threads", "at least 1"],
    );
    assert_contains(
        &fails(&with(&["--to", "d4"])),
        &["no C4 -> D4 layer", "z2 -> c4"],
    );
    assert_contains(
        &fails(&with(&["-k", "20"])),
        &["kernel 20x20", "larger", "8x8"],
    );
    assert_contains(
        &fails(&with(&["-k", "4", "--padding", "same"])),
        &["odd kernel"],
    );
    assert_contains(&fails(&with(&["--from", "x4"])), &["--from", "x4"]);
    assert_contains(&fails(&with(&["--cin", "0"])), &["--cin", "at least 1"]);
    assert_contains(&fails(&with(&["--batch", "-1"])), &["--batch", "\"-1\""]);
    assert_contains(&fails(&with(&["--iters", "many"])), &["--iters"]);
    assert_contains(&fails(&with(&["--padding", "1,2"])), &["--padding"]);
    assert_contains(
        &fails(&with(&["--path", "winograd"])),
        &[
            "--path",
            "winograd",
            "auto, direct, blocked, fast or fourier",
        ],
    );
    // The fast path takes kernels up to 11x11; `auto` falls back to direct.
    assert_contains(
        &fails(&with(&["--path", "fast", "-k", "13", "--size", "16"])),
        &["fast path takes kernels up to 11x11", "direct"],
    );
    assert_contains(
        &fails(&with(&["--cin", "2000000", "--cout", "3000000"])),
        &["too large to allocate"],
    );
}

// ---------------------------------------------------------------- peak

#[test]
fn peak_prints_one_line_per_kernel_and_refuses_unknown_ones() {
    let detected = gconv_std::fast::kernel().expect("GCONV_KERNEL").name();
    for (args, kernel) in [
        (vec!["peak"], detected),
        (vec!["peak", "--kernel", "portable"], "portable"),
    ] {
        let out = gconv(&args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
        let fields: Vec<(&str, &str)> = stdout
            .trim_end()
            .split(' ')
            .map(|kv| kv.split_once('=').expect("key=value"))
            .collect();
        assert_eq!(fields[0].0, "gflops", "{stdout:?}");
        let gflops: f64 = fields[0].1.parse().expect("a number");
        // At least one multiply-add per nanosecond, and below 10 TFLOP/s per core
        // (under an emulator, scripts/aarch64.sh, only positive: its speed is not
        // the CPU's).
        let floor = if common::emulated() { 0.0 } else { 1.0 };
        assert!(gflops > floor && gflops < 1e4, "{stdout:?}");
        assert_eq!(fields[1], ("kernel", kernel), "{stdout:?}");
    }
    let bad = gconv(&["peak", "--kernel", "sse9"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = text(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert_contains(
        &stderr,
        &["--kernel", "sse9", "avx512, avx2_fma or portable"],
    );
}

// ---------------------------------------------------------------- GCONV_KERNEL

/// Runs `gconv ARGS` with `var=value` in its environment, expects the one-line error
/// of [`fails`] and returns it.
fn fails_with_env(var: &str, value: &str, args: &[&str]) -> String {
    let out = common::gconv_command()
        .args(args)
        .env(var, value)
        .output()
        .expect("the gconv binary runs");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{var}={value} {args:?}: {stderr}"
    );
    assert!(stdout.is_empty(), "{args:?}: stdout {stdout:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    stderr.trim_end().to_string()
}

#[test]
fn a_kernel_switch_that_names_no_kernel_is_an_error_not_ignored() {
    let f32_bench = [
        "bench", "--from", "c4", "--to", "c4", "--cin", "2", "--cout", "3", "-k", "3", "--size",
        "8",
    ];
    let int8_bench = [
        "bench", "--from", "c4", "--to", "c4", "--cin", "2", "--cout", "3", "-k", "3", "--size",
        "8", "--dtype", "int8",
    ];
    for args in [&f32_bench[..], &["peak"][..], &int8_bench[..]] {
        let line = fails_with_env("GCONV_KERNEL", "avx2", args);
        assert_contains(
            &line,
            &[
                "GCONV_KERNEL=\"avx2\"",
                "names no kernel",
                "avx512, avx2_fma, portable",
            ],
        );
    }
    let line = fails_with_env("GCONV_INT8_KERNEL", "vnni", &int8_bench);
    assert_contains(
        &line,
        &[
            "GCONV_INT8_KERNEL=\"vnni\"",
            "avx512_vnni, avx_vnni, avx2_madd, portable",
        ],
    );
}
