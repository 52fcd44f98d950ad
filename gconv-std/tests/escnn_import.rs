//! Import of real escnn exports: `R2Conv(...).export()` banks for C4 and D4, lifting and
//! group layers, K = 3 and 5, written by `tools/escnn/export_banks.py` (escnn 1.0.11)
//! into `tools/escnn/golden/` with escnn's own input and output. No Python is needed
//! here: the golden files are committed.
//!
//! Every bank is imported (`|G|` times smaller), the gconv layer runs on escnn's input
//! and must reproduce escnn's output. The tolerance, per output value `i`, is
//!
//! ```text
//! |y_gconv - y_escnn| <= (terms + 2) * eps * (sum |x w| + |b|)_i  +  dev * (sum |x|)_i
//! ```
//!
//! with `terms = C_in * nti * K * K + 1` (the f32 rounding of two sums of the same terms
//! in different orders), `dev` the largest difference between escnn's bank and the
//! re-expansion of its `t = 0` rows (escnn's copies are equal only to float rounding,
//! about `1e-7` relative), and `(sum |x|)_i` the sum of `|x|` over output `i`'s
//! receptive field, which bounds what that difference can change.

use std::path::{Path, PathBuf};

use gconv_std::import::{
    BankOrder, bias_from_bank, conv_from_bank, escnn_map_to_groupy, groupy_map_to_escnn,
    raw_weight_from_bank, reorder_bank,
};
use gconv_std::npy::read_npy;
use gconv_std::{AnyConv, Padding, Pair, Tensor};
use serde_json::Value;

/// Relative tolerance of the G-structure check for escnn's banks (measured: <= 5e-7).
const IMPORT_TOLERANCE: f32 = 1e-5;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/escnn/golden")
}

struct Case {
    name: String,
    pair: Pair,
    kernel: usize,
    padding: usize,
    in_fields: usize,
    out_fields: usize,
    bank: Tensor,
    bias: Vec<f32>,
    x: Tensor,
    y: Tensor,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(golden().join("cases.json")).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        manifest["groups"]["D4"]["escnn_to_groupy"],
        serde_json::json!([0, 1, 2, 3, 6, 5, 4, 7])
    );
    let list = manifest["cases"].as_array().unwrap();
    assert_eq!(list.len(), 8);
    list.iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let pair = match c["pair"].as_str().unwrap() {
                "Z2C4" => Pair::Z2C4,
                "C4C4" => Pair::C4C4,
                "Z2D4" => Pair::Z2D4,
                "D4D4" => Pair::D4D4,
                other => panic!("unknown pair {other}"),
            };
            let number = |key: &str| c[key].as_u64().unwrap() as usize;
            assert_eq!(number("stride"), 1);
            let dir = golden().join(&name);
            let read = |f: &str| read_npy(dir.join(f)).unwrap();
            Case {
                pair,
                kernel: number("kernel"),
                padding: number("padding"),
                in_fields: number("in_fields"),
                out_fields: number("out_fields"),
                bank: read("weight.npy"),
                bias: read("bias.npy").data().to_vec(),
                x: read("x.npy"),
                y: read("y.npy"),
                name,
            }
        })
        .collect()
}

/// The imported layer's cached bank (GrouPy order).
fn layer_bank(layer: &AnyConv) -> &[f32] {
    match layer {
        AnyConv::Z2C4(l) => l.bank(),
        AnyConv::C4C4(l) => l.bank(),
        AnyConv::Z2D4(l) => l.bank(),
        AnyConv::D4D4(l) => l.bank(),
    }
}

#[test]
fn every_escnn_export_imports_and_reproduces_escnn_output() {
    let cases = cases();
    let pairs: Vec<Pair> = cases.iter().map(|c| c.pair).collect();
    for pair in [Pair::Z2C4, Pair::C4C4, Pair::Z2D4, Pair::D4D4] {
        assert_eq!(pairs.iter().filter(|&&p| p == pair).count(), 2);
    }
    for case in &cases {
        let pair = case.pair;
        let (nto, nti, k) = (pair.to().planes(), pair.from().planes(), case.kernel);
        let raw = raw_weight_from_bank(pair, &case.bank, BankOrder::Escnn, IMPORT_TOLERANCE)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            raw.shape(),
            &[case.out_fields, case.in_fields, nti, k, k],
            "{}",
            case.name
        );
        assert_eq!(
            raw.len() * nto,
            case.bank.len(),
            "{}: |G| times smaller",
            case.name
        );
        let bias = bias_from_bank(pair, &case.bias, 0.0).unwrap();
        let padding = Padding::symmetric(case.padding);
        let layer =
            AnyConv::from_weights(pair, raw.clone(), Some(bias.clone()), 1, padding).unwrap();
        // conv_from_bank is the same in one call.
        let direct = conv_from_bank(
            pair,
            &case.bank,
            Some(&case.bias),
            BankOrder::Escnn,
            IMPORT_TOLERANCE,
            1,
            padding,
        )
        .unwrap();
        assert_eq!(direct, layer);

        let x = escnn_map_to_groupy(pair.from(), &case.x).unwrap();
        let out = layer.forward(&x).unwrap();
        let out_escnn = groupy_map_to_escnn(pair.to(), &out).unwrap();
        assert_eq!(out_escnn.shape(), case.y.shape(), "{}", case.name);

        // Tolerance (module docs).
        let given = reorder_bank(pair, &case.bank, BankOrder::Escnn, BankOrder::GrouPy).unwrap();
        let dev = given
            .data()
            .iter()
            .zip(layer_bank(&layer))
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let abs_x = x.map(f32::abs);
        let magnitude = layer.magnitude_layer().forward(&abs_x).unwrap();
        let ones = Tensor::from_fn(raw.shape().to_vec(), |_| 1.0);
        let window = AnyConv::from_weights(pair, ones, None, 1, padding)
            .unwrap()
            .forward(&abs_x)
            .unwrap();
        let (magnitude, window) = (
            groupy_map_to_escnn(pair.to(), &magnitude).unwrap(),
            groupy_map_to_escnn(pair.to(), &window).unwrap(),
        );
        let terms = (case.in_fields * nti * k * k + 1) as f32;
        let mut worst = 0.0f32;
        for (i, (&got, &want)) in out_escnn.data().iter().zip(case.y.data()).enumerate() {
            let bound = (terms + 2.0) * f32::EPSILON * magnitude.data()[i] + dev * window.data()[i];
            let err = (got - want).abs();
            assert!(
                err <= bound,
                "{}: output {i}: gconv {got}, escnn {want}, |diff| {err:e} > bound {bound:e}",
                case.name
            );
            worst = worst.max(err / bound);
        }
        let max_diff = out_escnn.max_abs_diff(&case.y).unwrap();
        println!(
            "{}: bank {:?} -> raw {:?}; max |gconv - escnn| {max_diff:.2e} (max |y| {:.2e}), \
             worst error / bound {worst:.3}, bank deviation {dev:.2e}",
            case.name,
            case.bank.shape(),
            raw.shape(),
            case.y.max_abs()
        );
        // Also well inside a plain relative bound.
        assert!(max_diff <= 1e-5 * case.y.max_abs(), "{}", case.name);
    }
}

#[test]
fn a_real_bank_with_one_plane_modified_is_refused() {
    for case in cases() {
        let pair = case.pair;
        let nto = pair.to().planes();
        let (rows, row_len) = (case.bank.shape()[0], case.bank.len() / case.bank.shape()[0]);
        assert_eq!(rows, case.out_fields * nto);
        let scale = case.bank.max_abs();
        // Output channel 1, escnn plane nto - 1: nudge one tap by 1e-3 of the largest value.
        let row = nto + nto - 1;
        let mut bank = case.bank.clone();
        bank.data_mut()[row * row_len + row_len / 2] += 1e-3 * scale;
        let e = raw_weight_from_bank(pair, &bank, BankOrder::Escnn, IMPORT_TOLERANCE)
            .unwrap_err()
            .to_string();
        let groupy = BankOrder::Escnn.to_groupy(pair.to())[nto - 1];
        let expected = format!(
            "output channel 1 plane {} (GrouPy element {groupy})",
            nto - 1
        );
        assert!(
            e.contains("is not") && e.contains(&expected),
            "{}: {e}",
            case.name
        );
        assert!(e.contains(&format!("bank row {row}")), "{}: {e}", case.name);
        if case.name == "d4_lift_k3" {
            println!("{}: {e}", case.name);
        }
        // Whole plane replaced by another: refused even with a loose tolerance.
        let mut bank = case.bank.clone();
        let data = bank.data_mut();
        let (src, dst) = (row_len, 2 * row_len); // plane 1 copied over plane 2
        let plane: Vec<f32> = data[src..src + row_len].to_vec();
        data[dst..dst + row_len].copy_from_slice(&plane);
        assert!(
            raw_weight_from_bank(pair, &bank, BankOrder::Escnn, 0.05).is_err(),
            "{}",
            case.name
        );
        // A per-plane bias is refused too.
        let mut bias = case.bias.clone();
        bias[1] += 0.1;
        assert!(bias_from_bank(pair, &bias, IMPORT_TOLERANCE).is_err());
    }
}

#[test]
fn escnn_d4_banks_need_the_element_reordering_and_c4_banks_do_not() {
    for case in cases() {
        let as_groupy = raw_weight_from_bank(case.pair, &case.bank, BankOrder::GrouPy, 1e-3);
        match case.pair.to() {
            // escnn's C4 order is GrouPy's.
            gconv_std::Space::C4 => assert_eq!(
                as_groupy.unwrap(),
                raw_weight_from_bank(case.pair, &case.bank, BankOrder::Escnn, 1e-3).unwrap()
            ),
            // D4: (-, 0) is fliplr (GrouPy 6), not flipud (GrouPy 4).
            _ => {
                let e = as_groupy.unwrap_err().to_string();
                assert!(
                    e.contains("GrouPy plane order) is not D4-structured"),
                    "{e}"
                );
            }
        }
    }
}
