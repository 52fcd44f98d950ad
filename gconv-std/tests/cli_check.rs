//! `gconv check` through the built binary: the rule's verdict, one table row per group
//! element, exit status 0 exactly when rule and measurement agree, and one-line errors.

mod common;

use std::process::Output;

fn gconv(args: &[&str]) -> Output {
    common::gconv_command()
        .arg("check")
        .args(args)
        .output()
        .expect("run gconv")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The table rows: `(element index, errors per layer)`; `None` for a shape mismatch.
fn element_rows(text: &str) -> Vec<(usize, Vec<Option<f32>>)> {
    let names = [
        "identity",
        "rot90",
        "rot180",
        "rot270",
        "flipud",
        "transpose",
        "fliplr",
        "anti-transpose",
    ];
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let g: usize = cols.first()?.parse().ok()?;
            (cols.get(1) == Some(&names[g]))
                .then(|| (g, cols[2..].iter().map(|c| c.parse().ok()).collect()))
        })
        .collect()
}

/// The tolerance row, one per layer.
fn tolerances(text: &str) -> Vec<f32> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("tolerance"))
        .expect("tolerance row");
    line.split_whitespace()
        .skip(1)
        .map(|c| c.parse().unwrap())
        .collect()
}

/// Runs an accepted configuration and returns stdout, asserting exit 0 and a row for
/// every element of the group.
fn run_ok(args: &[&str], order: usize) -> String {
    let out = gconv(args);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = element_rows(&text);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..order).collect::<Vec<_>>(),
        "{text}"
    );
    assert!(text.contains("rule and measurement agree"), "{text}");
    text
}

#[test]
fn equivariant_layers_for_every_pair() {
    let configs: [(&str, &str, &str, &str, &str, &str); 3] = [
        ("3", "9", "1", "same", "", ""),
        ("4", "8", "1", "valid", "", ""),
        ("2", "8", "2", "valid", "", ""),
    ];
    for (from, to, order) in [
        ("z2", "c4", 4),
        ("c4", "c4", 4),
        ("z2", "d4", 8),
        ("d4", "d4", 8),
    ] {
        for (k, size, stride, padding, _, _) in configs {
            let args = [
                "--from",
                from,
                "--to",
                to,
                "-k",
                k,
                "--size",
                size,
                "--stride",
                stride,
                "--padding",
                padding,
            ];
            let text = run_ok(&args, order);
            assert!(
                text.lines()
                    .any(|l| l.trim_end().ends_with("equivariant") && l.starts_with('1')),
                "{text}"
            );
            let tol = tolerances(&text)[0];
            assert!(tol > 0.0 && tol < 1e-2, "{tol}");
            for (g, errors) in element_rows(&text) {
                let e = errors[0].unwrap_or_else(|| panic!("g={g} shape mismatch\n{text}"));
                assert!(e <= tol, "{args:?} g={g}: {e} > {tol}");
            }
        }
    }
}

#[test]
fn broken_layers_agree_with_the_rule() {
    let cases: [(&[&str], usize); 3] = [
        (
            &[
                "--from",
                "d4",
                "--to",
                "d4",
                "-k",
                "4",
                "--size",
                "8",
                "--padding",
                "1,2,1,2",
            ],
            8,
        ),
        (
            &[
                "--from", "z2", "--to", "c4", "-k", "3", "--size", "8", "--stride", "2",
            ],
            4,
        ),
        (
            &[
                "--from",
                "c4",
                "--to",
                "c4",
                "-k",
                "3",
                "--size",
                "9",
                "--padding",
                "1,0,1,0",
            ],
            4,
        ),
    ];
    for (args, order) in cases {
        let text = run_ok(args, order);
        assert!(text.contains("broken"), "{text}");
        assert!(
            text.contains("first break by the rule:        at layer 1"),
            "{text}"
        );
        let tol = tolerances(&text)[0];
        let worst = element_rows(&text)
            .iter()
            .map(|(_, e)| e[0].unwrap_or(f32::INFINITY))
            .fold(0.0f32, f32::max);
        assert!(worst > 1000.0 * tol, "{args:?}: {worst} vs {tol}");
        // The identity is always exact.
        assert_eq!(element_rows(&text)[0].1[0], Some(0.0));
    }
}

#[test]
fn even_kernel_tf_same_keeps_only_identity_and_transpose() {
    let text = run_ok(
        &[
            "--from",
            "z2",
            "--to",
            "d4",
            "-k",
            "2",
            "--size",
            "8",
            "--padding",
            "0,1,0,1",
        ],
        8,
    );
    let tol = tolerances(&text)[0];
    for (g, errors) in element_rows(&text) {
        let exact = errors[0].unwrap() <= tol;
        assert_eq!(exact, g == 0 || g == 5, "g={g}\n{text}");
    }
}

#[test]
fn stacks_report_where_equivariance_first_breaks() {
    let text = run_ok(&["--layers", "z2-c4:3,c4-c4:3,pool2", "--size", "8"], 4);
    assert!(
        text.contains("first break by the rule:        never"),
        "{text}"
    );
    assert!(
        text.contains("first break by the measurement: never"),
        "{text}"
    );

    let text = run_ok(&["--layers", "z2-c4:3,c4-c4:3,pool2", "--size", "9"], 4);
    assert!(
        text.contains("first break by the rule:        at layer 3 (pool2/2)"),
        "{text}"
    );
    assert!(
        text.contains("first break by the measurement: at layer 3 (pool2/2)"),
        "{text}"
    );
    // Layers 1 and 2 measured equivariant, layer 3 not.
    let tol = tolerances(&text);
    for (_, errors) in element_rows(&text) {
        assert!(errors[0].unwrap() <= tol[0] && errors[1].unwrap() <= tol[1]);
    }

    let text = run_ok(
        &[
            "--layers",
            "z2-d4:3,d4-d4:4/1:1-2-1-2,avgpool2",
            "--size",
            "10",
            "--channels",
            "1,3",
        ],
        8,
    );
    assert!(
        text.contains("first break by the rule:        at layer 2"),
        "{text}"
    );
    assert!(
        text.contains("first break by the measurement: at layer 2"),
        "{text}"
    );

    let text = run_ok(
        &["--layers", "z2-d4:3:same,d4-d4:2/2,pool3/1", "--size", "8"],
        8,
    );
    assert!(text.contains("never (equivariant)"), "{text}");
}

#[test]
fn the_largest_seed_works() {
    let out = gconv(&[
        "--layers",
        "z2-c4:3,c4-c4:3",
        "--size",
        "7",
        "--seed",
        "18446744073709551615",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn same_seed_same_output() {
    let args = ["--layers", "z2-c4:3,c4-c4:2", "--size", "7", "--seed", "5"];
    assert_eq!(stdout(&gconv(&args)), stdout(&gconv(&args)));
    let other = ["--layers", "z2-c4:3,c4-c4:2", "--size", "7", "--seed", "6"];
    assert_ne!(stdout(&gconv(&args)), stdout(&gconv(&other)));
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let cases: [(&[&str], &str); 17] = [
        (
            &["--layers", "z2-c4:3", "--size", "8", "--seed", "x"],
            "--seed",
        ),
        (&["--layers", "z2-c4:3", "--size", "-1"], "--size"),
        (&["--layers", "z2-c4:3,c4-c4:3:x", "--size", "8"], "T-B-L-R"),
        (
            &["--from", "z2", "--to", "c4", "-k", "3", "--size", "100000"],
            "more than",
        ),
        (
            &[
                "--layers",
                "z2-d4:3,d4-d4:3",
                "--size",
                "9",
                "--channels",
                "1,100000",
            ],
            "more than",
        ),
        (
            &["--from", "c4", "--to", "d4", "-k", "3", "--size", "8"],
            "there is no",
        ),
        (
            &[
                "--from",
                "z2",
                "--to",
                "c4",
                "-k",
                "4",
                "--size",
                "8",
                "--padding",
                "same",
            ],
            "odd",
        ),
        (
            &["--from", "z2", "--to", "c4", "-k", "9", "--size", "8"],
            "larger",
        ),
        (
            &[
                "--from", "z2", "--to", "c4", "-k", "3", "--size", "8", "--stride", "0",
            ],
            "--stride",
        ),
        (&["--from", "z2", "--to", "c4", "--size", "8"], "-k"),
        (&["--size", "8"], "nothing to check"),
        (
            &["--layers", "z2-c4:3", "--from", "z2", "--size", "8"],
            "not both",
        ),
        (&["--layers", "z2-c4:x", "--size", "8"], "layer 1"),
        (&["--layers", "z2-c4:3,d4-d4:3", "--size", "8"], "layer 2"),
        (&["--layers", "pool2,z2-c4:3", "--size", "8"], "first layer"),
        (
            &["--layers", "z2-c4:3", "--size", "8", "--channels", "2"],
            "--channels",
        ),
        (
            &["--layers", "z2-c4:3,c4-c4:3:1-2", "--size", "8"],
            "padding",
        ),
    ];
    for (args, needle) in cases {
        let out = gconv(args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
}
