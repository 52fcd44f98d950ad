//! The equivariance rule of `CONVENTIONS.md` explained in words, for the messages of
//! `gconv forward` (warning) and `gconv check` (verdict).

use gconv_core::equivariance::axis_is_centred;

/// One axis of the equivariance rule: `size` samples padded `before` and `after`.
struct Axis {
    /// What is checked, e.g. `"rows"`.
    name: &'static str,
    /// `"H"` or `"W"`.
    size_name: &'static str,
    /// Number of samples.
    size: usize,
    /// Leading padding and where it is (`"above"`, `"on the left"`).
    before: (usize, &'static str),
    /// Trailing padding and where it is.
    after: (usize, &'static str),
}

/// The parts of the equivariance rule that fail, in words. The rule: along each axis
/// the output grid must be centred on the input; and since a 90° rotation turns rows
/// into columns, the first padded row and column must agree and each axis' padding
/// must also centre the other axis.
pub fn equivariance_problems(
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: [usize; 4],
) -> Vec<String> {
    let [top, bottom, left, right] = pad;
    let mut problems = Vec::new();
    if top != left {
        problems.push(format!(
            "the padding above ({top}) and on the left ({left}) differ, so a 90° rotation \
             moves the output grid"
        ));
    }
    let (above, below) = ((top, "above"), (bottom, "below"));
    let (on_left, on_right) = ((left, "on the left"), (right, "on the right"));
    let axes = [
        Axis {
            name: "rows",
            size_name: "H",
            size: h,
            before: above,
            after: below,
        },
        Axis {
            name: "columns",
            size_name: "W",
            size: w,
            before: on_left,
            after: on_right,
        },
        Axis {
            name: "rotated by 90°, the columns become rows",
            size_name: "W",
            size: w,
            before: above,
            after: below,
        },
        Axis {
            name: "rotated by 90°, the rows become columns",
            size_name: "H",
            size: h,
            before: on_left,
            after: on_right,
        },
    ];
    let mut checked = Vec::new();
    for axis in &axes {
        let key = (axis.size, axis.before.0, axis.after.0);
        if checked.contains(&key) {
            continue; // a square map: the rotated check is the same as the direct one
        }
        checked.push(key);
        if !axis_is_centred(axis.size, k, stride, axis.before.0, axis.after.0) {
            problems.push(axis_problem(axis, k, stride));
        }
    }
    problems
}

/// Describes one axis whose output grid is off-centre: where the output samples sit,
/// how far their centre is from the input's, and the likely cause.
fn axis_problem(axis: &Axis, k: usize, stride: usize) -> String {
    let ((before, before_word), (after, after_word)) = (axis.before, axis.after);
    // Positions in input pixels (half-integers for even K). The geometry was
    // validated, and f64 is exact for any size an input file can have.
    let padded = axis.size as f64 + before as f64 + after as f64;
    let out = ((padded - k as f64) / stride as f64).floor() + 1.0;
    let first = (k as f64 - 1.0) / 2.0 - before as f64;
    let last = first + (out - 1.0) * stride as f64;
    let centre = (first + last) / 2.0;
    let input_centre = (axis.size as f64 - 1.0) / 2.0;
    let cause = if before != after {
        format!("the padding is asymmetric ({before} {before_word}, {after} {after_word})")
    } else {
        format!(
            "with stride {stride}, {} + padding - K = {} + {} - {k} must be a multiple of \
             {stride}",
            axis.size_name,
            axis.size,
            before + after
        )
    };
    format!(
        "{} ({} = {}, padding {before} {before_word} and {after} {after_word}): the output \
         samples sit at {first} to {last}, centred at {centre}, but the input is centred at \
         {input_centre} (off by {} pixel); {cause}",
        axis.name,
        axis.size_name,
        axis.size,
        (centre - input_centre).abs()
    )
}
