//! Argument types shared by the subcommands.

use gconv_std::{Padding, Space};

/// Parses `valid`, `same`, `P` (P on every side) or `T,B,L,R`.
pub fn parse_padding(s: &str) -> Result<Padding, String> {
    gconv_std::parse_padding(s).map_err(|e| e.to_string())
}

/// `--stride` and `--padding`, shared by `forward`, `check` and `bench`. Taken as text
/// (values starting with `-` included) so that a bad value gets our one-line error
/// instead of clap's multi-line one.
#[derive(clap::Args)]
pub struct StridePadding {
    /// Stride along both axes (in `check`: of conv layers that do not set their own).
    #[arg(
        long,
        value_name = "N",
        default_value = "1",
        allow_hyphen_values = true
    )]
    pub stride: String,
    /// Zero padding: valid, same (odd K only), P on every side, or T,B,L,R.
    #[arg(
        long,
        value_name = "valid|same|P|T,B,L,R",
        default_value = "valid",
        allow_hyphen_values = true
    )]
    pub padding: String,
}

impl StridePadding {
    /// The parsed stride and padding; errors name the flag and the value.
    pub fn parse(&self) -> Result<(usize, Padding), String> {
        let stride =
            parse_positive(&self.stride).map_err(|e| format!("--stride {}: {e}", self.stride))?;
        let padding =
            parse_padding(&self.padding).map_err(|e| format!("--padding {}: {e}", self.padding))?;
        Ok((stride, padding))
    }
}

/// Parses a space: `z2`, `c4` (`p4`) or `d4` (`p4m`).
pub fn parse_space(s: &str) -> Result<Space, String> {
    s.parse::<Space>().map_err(|e| e.to_string())
}

/// Parses a positive integer (stride, sizes).
pub fn parse_positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a positive integer")),
    }
}

/// A shape as numpy prints it: `(2, 3, 9, 9)`, `(5,)`.
pub fn shape_text(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paddings() {
        assert_eq!(parse_padding("valid"), Ok(Padding::Valid));
        assert_eq!(parse_padding("SAME"), Ok(Padding::Same));
        assert_eq!(parse_padding("2"), Ok(Padding::symmetric(2)));
        assert_eq!(
            parse_padding("1,2,0,3"),
            Ok(Padding::Explicit {
                top: 1,
                bottom: 2,
                left: 0,
                right: 3
            })
        );
        for bad in ["", "1,2", "a", "-1", "1,2,3,4,5"] {
            assert!(parse_padding(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_positive("3"), Ok(3));
        assert!(parse_positive("0").is_err());
    }
}
