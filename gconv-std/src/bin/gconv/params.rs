//! `gconv params`: parameter and compute budgets of a planar CNN and its G-CNN versions.
//!
//! ```text
//! gconv params --group c4|d4 --planar-channels N [--layers L] [-k K] [--in-channels C]
//!              [--size H]
//! ```
//!
//! For a planar CNN with `L` conv layers of `N` channels, `K x K` kernels and `C` input
//! channels it prints four networks, one table each: the planar CNN, the G-CNN with
//! the same G-channel count `N`, the equal-parameters G-CNN (`round(N / sqrt|G|)`
//! G-channels) and the equal-compute G-CNN (`round(N / |G|)`), then a summary of
//! their ratios to the planar CNN. Layer 1 of a G-CNN lifts (Z2 -> G, `nti = 1`), the
//! others are G -> G. Every number comes from [`LayerParams`].

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use gconv_std::Space;
use gconv_std::params::{LayerParams, equal_compute_channels, equal_parameter_channels};

use crate::args::parse_positive;

/// Arguments of `gconv params`.
///
/// The numbers are taken as text and converted in `run`, so that a bad value gives a
/// one-line error (clap's own value errors span several lines).
#[derive(clap::Args)]
pub struct Args {
    /// Group of the G-CNN: c4 (p4) or d4 (p4m).
    #[arg(long, value_name = "c4|d4")]
    group: String,
    /// Channels per layer of the planar CNN.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    planar_channels: String,
    /// Conv layers (layer 1 lifts Z2 -> G, the others are G -> G).
    #[arg(
        long,
        value_name = "L",
        default_value = "3",
        allow_hyphen_values = true
    )]
    layers: String,
    /// Kernel size K (K x K filters).
    #[arg(
        short = 'k',
        value_name = "K",
        default_value = "3",
        allow_hyphen_values = true
    )]
    kernel: String,
    /// Channels of the input images (3 for RGB).
    #[arg(
        long,
        value_name = "C",
        default_value = "1",
        allow_hyphen_values = true
    )]
    in_channels: String,
    /// Height and width of every feature map, for the MACs per layer (every layer is
    /// taken to keep the size, as with `same` padding).
    #[arg(
        long,
        value_name = "H",
        default_value = "32",
        allow_hyphen_values = true
    )]
    size: String,
}

/// The validated settings.
struct Settings {
    /// The G-CNN's group, C4 or D4 (its order is `group.planes()`).
    group: Space,
    planar: usize,
    layers: usize,
    kernel: usize,
    in_channels: usize,
    size: usize,
}

/// One network: a title and its layers.
struct Network {
    title: String,
    /// Short name for the summary.
    name: String,
    layers: Vec<(String, LayerParams)>,
}

impl Network {
    /// A network of `layers` conv layers with `channels` G-channels each on a group of
    /// order `order` (1: the planar CNN), on `c_in` input channels.
    fn new(title: String, name: String, s: &Settings, order: usize, channels: usize) -> Self {
        let group = if order == 1 {
            "Z2".to_string()
        } else {
            s.group.to_string()
        };
        let layers = (0..s.layers)
            .map(|i| {
                let (from, nti, c_in) = if i == 0 {
                    ("Z2", 1, s.in_channels)
                } else {
                    (group.as_str(), order, channels)
                };
                let p = LayerParams::new(nti, order, c_in, channels, s.kernel, true);
                (format!("{from}->{group}"), p)
            })
            .collect();
        Network {
            title,
            name,
            layers,
        }
    }

    fn total(&self, f: impl Fn(&LayerParams) -> usize) -> usize {
        self.layers.iter().map(|(_, p)| f(p)).sum()
    }
}

/// Runs `gconv params`.
pub fn run(args: Args) -> crate::Outcome {
    let s = settings(&args)?;
    let order = s.group.planes();
    let n = s.planar;
    let g = s.group;
    let equal_params = round_channels(equal_parameter_channels(n, order));
    let equal_compute = round_channels(equal_compute_channels(n, order));
    let networks = [
        Network::new(
            format!("planar CNN: {n} channels per layer"),
            "planar CNN".into(),
            &s,
            1,
            n,
        ),
        Network::new(
            format!("{g} G-CNN, same G-channels: {n} G-channels per layer"),
            format!("{g}, same G-channels ({n})"),
            &s,
            order,
            n,
        ),
        Network::new(
            format!(
                "{g} G-CNN, equal parameters: round({n} / sqrt {order}) = {equal_params} \
                 G-channels per layer"
            ),
            format!("{g}, equal parameters ({equal_params})"),
            &s,
            order,
            equal_params,
        ),
        Network::new(
            format!(
                "{g} G-CNN, equal compute: round({n} / {order}) = {equal_compute} G-channels \
                 per layer"
            ),
            format!("{g}, equal compute ({equal_compute})"),
            &s,
            order,
            equal_compute,
        ),
    ];
    let mut report = String::new();
    write_report(&mut report, &s, &networks);
    // Written at once; a closed pipe (`gconv params ... | head`) is not an error.
    match std::io::stdout().lock().write_all(report.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Parses and checks the arguments; one line per error.
fn settings(args: &Args) -> Result<Settings, String> {
    let group = match args.group.parse::<Space>() {
        Ok(g @ (Space::C4 | Space::D4)) => g,
        _ => {
            return Err(format!(
                "--group: unknown group {:?}: expected c4 (p4) or d4 (p4m)",
                args.group
            ));
        }
    };
    let number = |flag: &str, value: &str| -> Result<usize, String> {
        parse_positive(value).map_err(|e| format!("{flag}: {e}"))
    };
    let s = Settings {
        group,
        planar: number("--planar-channels", &args.planar_channels)?,
        layers: number("--layers", &args.layers)?,
        kernel: number("-k", &args.kernel)?,
        in_channels: number("--in-channels", &args.in_channels)?,
        size: number("--size", &args.size)?,
    };
    // Every number printed is at most L * (max(N, C) * |G|)^2 * K^2 * H^2 (+ biases):
    // refuse sizes for which that bound does not fit, instead of overflowing.
    let widest = s.planar.max(s.in_channels);
    let bound = [widest, widest, group.planes(), group.planes(), s.layers]
        .into_iter()
        .chain([s.kernel, s.kernel, s.size, s.size])
        .try_fold(2usize, usize::checked_mul);
    if bound.is_none() {
        return Err(format!(
            "these sizes are too large: the counts would not fit in {} bits",
            usize::BITS
        ));
    }
    Ok(s)
}

/// A G-channel count from a real budget: rounded to nearest, at least 1.
fn round_channels(c: f64) -> usize {
    (c.round() as usize).max(1)
}

/// Writes the header, one table per network and the summary to `o`.
fn write_report(o: &mut String, s: &Settings, networks: &[Network]) {
    let order = s.group.planes();
    let (k, h) = (s.kernel, s.size);
    let _ = writeln!(
        o,
        "gconv params: a planar CNN with {} conv layers of {} channels, {k}x{k} kernels, {} \
         input channel{}, as a {} G-CNN (|G| = {order})",
        s.layers,
        s.planar,
        s.in_channels,
        if s.in_channels == 1 { "" } else { "s" },
        s.group,
    );
    let _ = writeln!(
        o,
        "  learnable     = weights + biases (one bias per output G-channel, shared by its planes)\n  \
         weights       = C_out*C_in*nti*K*K, the raw filters (nti = 1 for the Z2 input)\n  \
         expanded bank = values in the OIHW bank (C_out*nto, C_in*nti, K, K): derived, not learned\n  \
         MACs/pixel    = C_out*nto * C_in*nti * K*K per output pixel\n  \
         MACs/layer    = MACs/pixel * {h}*{h} (every layer keeps the {h}x{h} size, as with \
         `same` padding)"
    );
    if k % 2 == 0 {
        let _ = writeln!(
            o,
            "note: with even K = {k}, keeping the size needs asymmetric padding, which breaks \
             exact equivariance (see `gconv check`)"
        );
    }

    let header = [
        "layer",
        "type",
        "G-channels",
        "planes",
        "learnable",
        "weights",
        "expanded bank",
        "MACs/pixel",
        "MACs/layer",
    ];
    let pixels = h * h;
    // "in -> out" cells with the arrows lined up over all four tables.
    let all = || networks.iter().flat_map(|net| &net.layers).map(|(_, p)| p);
    let width = |f: fn(&LayerParams) -> usize| all().map(|p| digits(f(p))).max().unwrap_or(1);
    let (wci, wco) = (width(|p| p.in_channels), width(|p| p.out_channels));
    let (wpi, wpo) = (
        width(LayerParams::in_planes),
        width(LayerParams::out_planes),
    );
    let mut tables: Vec<Vec<[String; 9]>> = Vec::new();
    for net in networks {
        let channels = net
            .layers
            .iter()
            .map(|(_, p)| format!("{:>wci$} -> {:<wco$}", p.in_channels, p.out_channels));
        let planes = net
            .layers
            .iter()
            .map(|(_, p)| format!("{:>wpi$} -> {:<wpo$}", p.in_planes(), p.out_planes()));
        let mut rows: Vec<[String; 9]> = net
            .layers
            .iter()
            .zip(channels.zip(planes))
            .enumerate()
            .map(|(i, ((kind, p), (ch, pl)))| {
                [
                    (i + 1).to_string(),
                    kind.clone(),
                    ch,
                    pl,
                    p.learnable().to_string(),
                    p.weights().to_string(),
                    p.expanded_filter_len().to_string(),
                    p.macs_per_pixel().to_string(),
                    (p.macs_per_pixel() * pixels).to_string(),
                ]
            })
            .collect();
        rows.push([
            "total".into(),
            String::new(),
            String::new(),
            String::new(),
            net.total(LayerParams::learnable).to_string(),
            net.total(LayerParams::weights).to_string(),
            net.total(LayerParams::expanded_filter_len).to_string(),
            net.total(LayerParams::macs_per_pixel).to_string(),
            net.total(|p| p.macs_per_pixel() * pixels).to_string(),
        ]);
        tables.push(rows);
    }
    // Shared column widths, so the four tables line up.
    let mut widths = header.map(str::len);
    for row in tables.iter().flatten() {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |o: &mut String, cells: &[String; 9]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c < 4 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(o, "  {}", text.join("  ").trim_end());
    };
    for (net, rows) in networks.iter().zip(&tables) {
        let _ = writeln!(o, "\n== {} ==", net.title);
        line(o, &header.map(String::from));
        for row in rows {
            line(o, row);
        }
    }

    write_summary(o, networks, pixels, order);
}

/// Writes the totals of every network next to the planar CNN's, as ratios.
fn write_summary(o: &mut String, networks: &[Network], pixels: usize, order: usize) {
    let planar = &networks[0];
    let base_params = planar.total(LayerParams::learnable) as f64;
    let base_macs = (planar.total(LayerParams::macs_per_pixel) * pixels) as f64;
    let rows: Vec<[String; 5]> = networks
        .iter()
        .map(|net| {
            let params = net.total(LayerParams::learnable);
            let macs = net.total(LayerParams::macs_per_pixel) * pixels;
            [
                net.name.clone(),
                params.to_string(),
                format!("{:.2}x", params as f64 / base_params),
                macs.to_string(),
                format!("{:.2}x", macs as f64 / base_macs),
            ]
        })
        .collect();
    let header = ["network", "learnable", "vs planar", "MACs", "vs planar"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let _ = writeln!(o, "\n== summary: totals vs the planar CNN ==");
    for row in std::iter::once(&header).chain(&rows) {
        let text: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(o, "  {}", text.join("  "));
    }
    let _ = writeln!(
        o,
        "\nA G-CNN layer applies {order} transformed copies of every filter (the expanded \
         bank), but they are gathered from the same raw weights by an index table: they are \
         computed, not learned, so they are not parameters (counting the expanded bank as \
         parameters over-counts by {order})."
    );
}

/// Decimal digits of `n`.
fn digits(n: usize) -> usize {
    n.to_string().len()
}
