//! Drawing a [`Figure`] with plotters: two panels (loss, gradient) stacked or
//! side by side, a legend column on the right, PNG or SVG by the file's
//! extension. Lines are clipped to each panel's y range by hand, so a steep
//! curve leaves the panel at its edge instead of being drawn over the axes.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One named curve.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, y) points; non-finite points break the line.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a curve equal to an earlier one).
    pub dashed: bool,
    /// Points marked with dots (a few discrete points, not a sweep).
    pub markers: bool,
    /// Points drawn as triangles and not joined to the line (e.g. the
    /// positive among negatives).
    pub extra: Vec<(f64, f64)>,
}

/// One panel: a y label and its curves (same order and colours as the other
/// panel's).
pub struct Panel {
    /// Caption above the panel.
    pub caption: String,
    /// The y axis label.
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
    /// Fixed y range, or automatic.
    pub y_range: Option<(f64, f64)>,
}

/// A whole picture.
pub struct Figure {
    /// The title on top.
    pub title: String,
    /// The x axis label (both panels).
    pub x_label: String,
    /// The x range.
    pub x_range: (f64, f64),
    /// Loss (or the preset's first quantity).
    pub top: Panel,
    /// Gradient (or the preset's second quantity).
    pub bottom: Panel,
    /// Lines printed under the legend: what is drawn, how.
    pub notes: Vec<String>,
}

/// Stacked or side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// Loss on top, gradient below.
    Stacked,
    /// Loss left, gradient right.
    Side,
}

/// Colours that stay apart on white (matplotlib's tab10).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

const FONT: &str = "sans-serif";

/// Write `fig` to `path` (`.png` or `.svg`), `size` pixels for the panels
/// (the legend column is added on the right).
///
/// # Errors
/// An unknown extension, or whatever the backend reports.
pub fn render(fig: &Figure, path: &Path, size: (u32, u32), layout: Layout) -> Result<(), String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    let legend_w = legend_width(fig);
    let full = (size.0 + legend_w, size.1);
    let res = match ext.as_deref() {
        Some("png") => draw(
            BitMapBackend::new(path, full).into_drawing_area(),
            fig,
            layout,
            legend_w,
        ),
        Some("svg") => draw(
            SVGBackend::new(path, full).into_drawing_area(),
            fig,
            layout,
            legend_w,
        ),
        _ => {
            return Err(format!(
                "{}: the file must end in .png or .svg",
                path.display()
            ))
        }
    };
    res.map_err(|e| format!("{}: {e}", path.display()))
}

/// Characters per line before a note wraps.
const NOTE_CHARS: usize = 44;
/// Characters per line before a legend entry wraps.
const LABEL_CHARS: usize = 46;

fn legend_width(fig: &Figure) -> u32 {
    let longest = fig
        .top
        .series
        .iter()
        .map(|s| s.label.chars().count().min(LABEL_CHARS))
        .max()
        .unwrap_or(0);
    (longest as u32 * 8 + 60).max(NOTE_CHARS as u32 * 7 + 30)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    fig: &Figure,
    layout: Layout,
    legend_w: u32,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let root = root
        .titled(&fig.title, (FONT, 26).into_font().color(&BLACK))
        .map_err(e)?;
    let (w, _) = root.dim_in_pixel();
    let (plots, legend) = root.split_horizontally(w.saturating_sub(legend_w));
    let areas = match layout {
        Layout::Stacked => plots.split_evenly((2, 1)),
        Layout::Side => plots.split_evenly((1, 2)),
    };
    panel(&areas[0], fig, &fig.top)?;
    panel(&areas[1], fig, &fig.bottom)?;
    draw_legend(&legend, fig).map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// The largest magnitude a fitted axis takes a curve's value at (larger
/// ones are drawn past the edge): padded, it stays within [`BOUND_MAX`].
const AXIS_MAX: f64 = f64::MAX / 4.0;
/// The largest magnitude of an axis bound: the span between two such
/// bounds is finite.
const BOUND_MAX: f64 = f64::MAX / 2.0;
/// The narrowest span plotters resolves, relative to the bounds' size.
const MIN_REL_SPAN: f64 = 1e-9;

/// Whether plotters can draw an axis from `lo` to `hi`. Its search for
/// tick positions divides the span until the ticks fit, and loops forever
/// when the span is infinite (`hi − lo` overflows) or too small to tell
/// `lo` from `hi`; every range that reaches plotters passes this first.
pub(crate) fn drawable(lo: f64, hi: f64) -> bool {
    let span = hi - lo;
    lo.is_finite()
        && hi.is_finite()
        && span.is_finite()
        && span > MIN_REL_SPAN * lo.abs().max(hi.abs())
        && lo.abs().max(hi.abs()) <= BOUND_MAX
}

/// The y range: fixed, or the finite values' range padded by 5% (values
/// beyond ±[`AXIS_MAX`] are drawn past the edge, so the range stays
/// drawable).
fn y_bounds(p: &Panel) -> (f64, f64) {
    if let Some(r) = p.y_range {
        return r;
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, y) in p
        .series
        .iter()
        .flat_map(|s| s.points.iter().chain(&s.extra))
    {
        if y.is_finite() {
            let y = y.clamp(-AXIS_MAX, AXIS_MAX);
            lo = lo.min(y);
            hi = hi.max(y);
        }
    }
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    // a flat curve (flatter than 1e-12, or than the span plotters resolves
    // at this size, with room to spare): a band around it, ±1 at ordinary
    // sizes and wide enough to resolve at large ones
    let mag = lo.abs().max(hi.abs());
    if hi - lo < 1e-12_f64.max(2.0 * MIN_REL_SPAN * mag) {
        let pad = (1e-3 * mag).max(1.0);
        return (lo - pad, hi + pad);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    p: &Panel,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (x0, x1) = fig.x_range;
    let (y0, y1) = y_bounds(p);
    for (axis, lo, hi) in [("x", x0, x1), ("y", y0, y1)] {
        if !drawable(lo, hi) {
            return Err(format!("cannot draw the {axis} axis from {lo:e} to {hi:e}"));
        }
    }
    let mut ch = ChartBuilder::on(area)
        .caption(&p.caption, (FONT, 19))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    ch.configure_mesh()
        .x_desc(&fig.x_label)
        .y_desc(&p.y_label)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(e)?;
    // the zero lines, where they fall inside
    let axis_style = RGBColor(90, 90, 90).stroke_width(1);
    if y0 < 0.0 && y1 > 0.0 {
        ch.draw_series(std::iter::once(PathElement::new(
            vec![(x0, 0.0), (x1, 0.0)],
            axis_style,
        )))
        .map_err(e)?;
    }
    if x0 < 0.0 && x1 > 0.0 {
        ch.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, y0), (0.0, y1)],
            axis_style,
        )))
        .map_err(e)?;
    }
    for (i, s) in p.series.iter().enumerate() {
        let style = color(i).stroke_width(if s.dashed { 3 } else { 2 });
        for run in clip_runs(&s.points, y0, y1) {
            if s.dashed {
                ch.draw_series(DashedLineSeries::new(run, 9, 7, style))
                    .map_err(e)?;
            } else {
                ch.draw_series(LineSeries::new(run, style)).map_err(e)?;
            }
        }
        if s.markers {
            let inside = s
                .points
                .iter()
                .filter(|(x, y)| y.is_finite() && *y >= y0 && *y <= y1 && x.is_finite());
            ch.draw_series(inside.map(|&pt| Circle::new(pt, 4, color(i).filled())))
                .map_err(e)?;
        }
        let extra = s.extra.iter().filter(|(_, y)| *y >= y0 && *y <= y1);
        ch.draw_series(extra.map(|&pt| TriangleMarker::new(pt, 8, color(i).filled())))
            .map_err(e)?;
    }
    Ok(())
}

/// A tick label: as plotters would print it, but never `-0`.
fn tick(v: &f64) -> String {
    let s = format!("{}", (v * 1e9).round() / 1e9);
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let x = 10;
    let mut y = 40;
    area.draw(&Text::new(
        "Legend",
        (x, y),
        (FONT, 18).into_font().color(&BLACK),
    ))?;
    y += 30;
    let text = (FONT, 15).into_font().color(&BLACK);
    for (i, s) in fig.top.series.iter().enumerate() {
        let c = color(i);
        if s.dashed {
            for k in 0..3 {
                let a = x + k * 12;
                area.draw(&PathElement::new(
                    vec![(a, y + 8), (a + 7, y + 8)],
                    c.stroke_width(3),
                ))?;
            }
        } else {
            area.draw(&PathElement::new(
                vec![(x, y + 8), (x + 31, y + 8)],
                c.stroke_width(3),
            ))?;
        }
        if s.markers {
            area.draw(&Circle::new((x + 15, y + 8), 4, c.filled()))?;
        }
        if !s.extra.is_empty() {
            area.draw(&TriangleMarker::new((x + 15, y + 8), 7, c.filled()))?;
        }
        for line in wrap(&s.label, LABEL_CHARS) {
            area.draw(&Text::new(line, (x + 40, y), text.clone()))?;
            y += 20;
        }
        y += 4;
    }
    y += 16;
    let grey = (FONT, 14).into_font().color(&RGBColor(60, 60, 60));
    for note in &fig.notes {
        for line in wrap(note, NOTE_CHARS) {
            area.draw(&Text::new(line, (x, y), grey.clone()))?;
            y += 19;
        }
        y += 8;
    }
    Ok(())
}

/// Greedy word wrap at `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Split a polyline into runs that stay inside `[lo, hi]` in y, cutting each
/// segment where it crosses the bounds; non-finite points break the line.
fn clip_runs(pts: &[(f64, f64)], lo: f64, hi: f64) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for w in pts.windows(2) {
        match clip_segment(w[0], w[1], lo, hi) {
            Some((a, b)) => {
                if cur.last() != Some(&a) && !cur.is_empty() {
                    runs.push(std::mem::take(&mut cur));
                }
                if cur.is_empty() {
                    cur.push(a);
                }
                cur.push(b);
            }
            None => {
                if !cur.is_empty() {
                    runs.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        runs.push(cur);
    }
    runs
}

fn clip_segment(
    a: (f64, f64),
    b: (f64, f64),
    lo: f64,
    hi: f64,
) -> Option<((f64, f64), (f64, f64))> {
    if ![a.0, a.1, b.0, b.1].iter().all(|v| v.is_finite()) {
        return None;
    }
    let dy = b.1 - a.1;
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    if dy == 0.0 {
        if a.1 < lo || a.1 > hi {
            return None;
        }
    } else {
        let (ta, tb) = ((lo - a.1) / dy, (hi - a.1) / dy);
        t0 = t0.max(ta.min(tb));
        t1 = t1.min(ta.max(tb));
        if t0 > t1 {
            return None;
        }
    }
    let at = |t: f64| {
        if t == 0.0 {
            a
        } else if t == 1.0 {
            b
        } else {
            (a.0 + (b.0 - a.0) * t, a.1 + dy * t)
        }
    };
    Some((at(t0), at(t1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_cuts_at_the_bounds() {
        let pts = [(0.0, 0.0), (1.0, 2.0), (2.0, 0.0)];
        let runs = clip_runs(&pts, -1.0, 1.0);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0], vec![(0.0, 0.0), (0.5, 1.0)]);
        assert_eq!(runs[1], vec![(1.5, 1.0), (2.0, 0.0)]);
    }

    #[test]
    fn non_finite_points_break_the_line() {
        let pts = [(0.0, 0.0), (1.0, f64::NAN), (2.0, 0.0), (3.0, 0.5)];
        let runs = clip_runs(&pts, -1.0, 1.0);
        assert_eq!(runs, vec![vec![(2.0, 0.0), (3.0, 0.5)]]);
    }

    #[test]
    fn wrap_keeps_words() {
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
    }
}
