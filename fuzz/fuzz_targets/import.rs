//! The escnn import path: an expanded bank and a bias read from `.npy` bytes, then
//! imported with every pair, plane order, tolerance, stride and padding. Input:
//! `[selector][tolerance][u32 LE n][n bytes of bank.npy][bias.npy]`.
//!
//! Selector bits: 0-1 the pair (Z2->C4, C4->C4, Z2->D4, D4->D4), 2 the plane order
//! (escnn when set), 3-4 the padding (valid, same, 1, (0,1,2,0)), 5 stride 2, 6 a bias.
#![no_main]

use gconv_std::import::{
    BankOrder, bias_from_bank, conv_from_bank, escnn_map_to_groupy, groupy_map_to_escnn,
    reorder_bank,
};
use gconv_std::npy::read_npy_bytes;
use gconv_std::{Padding, Pair};
use libfuzzer_sys::fuzz_target;

const PAIRS: [Pair; 4] = [Pair::Z2C4, Pair::C4C4, Pair::Z2D4, Pair::D4D4];
const TOLERANCES: [f32; 8] = [0.0, 1e-6, 1e-5, 1e-3, 0.5, f32::NAN, -1.0, f32::INFINITY];

fuzz_target!(|data: &[u8]| {
    let Some((&[selector, tolerance], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Some((len, rest)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (bank_bytes, bias_bytes) = rest.split_at(n);

    let pair = PAIRS[usize::from(selector & 3)];
    let (order, other) = if selector & 4 != 0 {
        (BankOrder::Escnn, BankOrder::GrouPy)
    } else {
        (BankOrder::GrouPy, BankOrder::Escnn)
    };
    let padding = match (selector >> 3) & 3 {
        0 => Padding::Valid,
        1 => Padding::Same,
        2 => Padding::symmetric(1),
        _ => Padding::Explicit {
            top: 0,
            bottom: 1,
            left: 2,
            right: 0,
        },
    };
    let stride = 1 + usize::from((selector >> 5) & 1);
    let tolerance = TOLERANCES[usize::from(tolerance & 7)];

    let bias = if selector & 0x40 != 0 {
        match read_npy_bytes("bias.npy", bias_bytes) {
            Ok(b) => Some(b.into_parts().1),
            Err(_) => return,
        }
    } else {
        None
    };
    if let Some(b) = &bias {
        let _ = bias_from_bank(pair, b, tolerance);
    }
    let Ok(bank) = read_npy_bytes("bank.npy", bank_bytes) else {
        return;
    };
    if let Ok(moved) = reorder_bank(pair, &bank, order, other) {
        let back = reorder_bank(pair, &moved, other, order).expect("the same shape reorders back");
        assert!(
            back.data()
                .iter()
                .zip(bank.data())
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
    if let Ok(groupy) = escnn_map_to_groupy(pair.to(), &bank) {
        let escnn = groupy_map_to_escnn(pair.to(), &groupy).expect("a converted map converts back");
        assert_eq!(escnn.shape(), bank.shape());
    }
    match conv_from_bank(
        pair,
        &bank,
        bias.as_deref(),
        order,
        tolerance,
        stride,
        padding,
    ) {
        Ok(conv) => assert_eq!(conv.weight().len() * pair.to().planes(), bank.len()),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
