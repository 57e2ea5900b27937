//! PNG charts, drawn with plotters' bitmap backend and a TrueType font rendered in pure Rust.
use std::path::Path;

use plotters::{
    coord::Shift,
    prelude::*,
    style::{
        FontStyle, register_font,
        text_anchor::{HPos, Pos, VPos},
    },
};

use crate::{Error, Result, Results};

/// A chart written next to the report.
pub struct Chart {
    pub file: String,
    pub title: String,
    /// The report section it belongs to.
    pub section: &'static str,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Series = (String, Vec<(f64, f64)>, RGBColor);

const BEHIND: RGBColor = RGBColor(31, 119, 180);
const THROUGH: RGBColor = RGBColor(214, 39, 40);
const BASELINE: RGBColor = RGBColor(127, 127, 127);
const OTHER: RGBColor = RGBColor(44, 160, 44);
const FONT: &str = "sans-serif";

/// Registers the font of every chart; fails early, before any measuring, if it is missing.
pub fn load_font(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|_| Error::Missing {
        what: "chart font",
        path: path.to_path_buf(),
        hint: "install it with apt-get install fonts-dejavu-core, or pass --font",
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    for style in [FontStyle::Normal, FontStyle::Bold] {
        register_font(FONT, style, bytes)
            .map_err(|_| Error::Chart { name: "font", reason: format!("{} is not a TrueType font", path.display()) })?;
    }
    Ok(())
}

fn failed<E: std::fmt::Display>(name: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Chart { name, reason: e.to_string() }
}

/// Draws every chart the results allow.
pub fn draw(r: &Results, out: &Path) -> Result<Vec<Chart>> {
    let mut charts = Vec::new();
    let mut add = |file: &str, title: &str, section: &'static str| {
        charts.push(Chart { file: file.into(), title: title.into(), section });
        out.join(file)
    };
    if let Some(l) = &r.latency {
        latency(&add("latency_percentiles.png", "Latency percentiles per mode", "latency"), l)?;
    }
    if let Some(t) = &r.throughput {
        let bars = [
            ("redis SET".to_owned(), t.redis_set.rps, BASELINE),
            ("HTTP POST".to_owned(), t.post.throughput_rps, BEHIND),
            ("HTTP PUT".to_owned(), t.put.throughput_rps, BEHIND),
            ("redis GET".to_owned(), t.redis_get.rps, BASELINE),
            ("HTTP GET".to_owned(), t.get.throughput_rps, OTHER),
        ];
        let path = add("throughput.png", "Peak throughput against redis-benchmark", "throughput");
        single(&path, (900, 500), "throughput", |a| bar_chart(a, "Peak throughput (requests/s)", &bars))?;
        let series: Vec<Series> = [(&t.post, "POST", BEHIND), (&t.put, "PUT", THROUGH), (&t.get, "GET", OTHER)]
            .into_iter()
            .map(|(s, name, color)| (name.to_owned(), per_second(&s.per_second), color))
            .collect();
        let path = add("throughput_over_time.png", "Throughput over time", "throughput");
        single(&path, (900, 450), "throughput over time", |a| {
            lines(a, "HTTP throughput over time", Axes::new("seconds", "requests/s"), &series, None)
        })?;
    }
    if let Some(d) = &r.drain {
        let path = add("drain.png", "Drain rate and queue", "drain");
        let root = BitMapBackend::new(&path, (1200, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(failed("drain"))?;
        let (left, right) = root.split_horizontally(560);
        let bars = [
            ("wbc-worker".to_owned(), d.rows_per_s(), BEHIND),
            (format!("pgbench {}-row", d.batched.rows_per_transaction), d.batched.rows_per_s, BASELINE),
            ("pgbench 1-row".to_owned(), d.single.rows_per_s, THROUGH),
        ];
        bar_chart(&left, "Rows per second into PostgreSQL", &bars)?;
        let left_keys = d.queue.iter().map(|q| (q.t_s, (q.queue_size + q.in_flight) as f64)).collect();
        let series = [("dirty + in flight".to_owned(), left_keys, BEHIND)];
        let axes = Axes { legend: SeriesLabelPosition::UpperRight, ..Axes::new("seconds since worker start", "keys") };
        lines(&right, "Keys left during the drain", axes, &series, None)?;
        root.present().map_err(failed("drain"))?;
    }
    if let Some(c) = &r.coalescing {
        let bars = [
            ("writes accepted".to_owned(), c.writes_accepted as f64, BEHIND),
            ("rows written".to_owned(), c.rows_written as f64, THROUGH),
        ];
        let path = add("coalescing.png", "Coalescing over hot keys", "coalescing");
        let title = format!("{} hot keys: {:.0} writes per row", c.hot_keys, c.ratio());
        single(&path, (700, 450), "coalescing", |a| bar_chart(a, &title, &bars))?;
    }
    if let Some(l) = &r.lag {
        lag(&add("lag_over_time.png", "Throughput, queue and data at risk over time", "lag"), l)?;
    }
    Ok(charts)
}

fn single(path: &Path, size: (u32, u32), name: &'static str, f: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(failed(name))?;
    f(&root)?;
    root.present().map_err(failed(name))
}

fn per_second(counts: &[u64]) -> Vec<(f64, f64)> {
    counts.iter().enumerate().map(|(i, c)| (i as f64 + 0.5, *c as f64)).collect()
}

/// One panel per connection count: latency (log scale) against percentile, both modes.
fn latency(path: &Path, l: &crate::scenarios::latency::LatencyResult) -> Result<()> {
    let name = "latency percentiles";
    let root = BitMapBackend::new(path, (420 * l.levels.len().max(1) as u32, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(failed(name))?;
    let panels = root.split_evenly((1, l.levels.len().max(1)));
    for (area, level) in panels.iter().zip(&l.levels) {
        let curves = [(&level.write_behind, "write-behind", BEHIND), (&level.write_through, "write-through", THROUGH)];
        let all = curves.iter().flat_map(|(s, ..)| s.curve.iter().map(|p| p.1));
        let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let max_nines = curves.iter().flat_map(|(s, ..)| s.curve.last().map(|p| p.0)).fold(2.0f64, f64::max).ceil();
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} connection(s)", level.connections), (FONT, 20))
            .margin(12)
            .margin_right(28)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_nines, ((lo * 0.8).max(0.001)..hi * 1.5).log_scale())
            .map_err(failed(name))?;
        chart
            .configure_mesh()
            .x_labels(max_nines as usize + 1)
            .x_label_formatter(&|n| percentile_label(*n))
            .y_label_formatter(&|v| trim(*v))
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .label_style((FONT, 13))
            .draw()
            .map_err(failed(name))?;
        for (summary, label, color) in curves {
            chart
                .draw_series(LineSeries::new(summary.curve.iter().copied(), color.stroke_width(2)))
                .map_err(failed(name))?
                .label(format!("{label} (p50 {} ms)", trim(summary.p50_ms)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        legend(&mut chart, name, SeriesLabelPosition::UpperLeft)?;
    }
    root.present().map_err(failed(name))
}

/// Three panels sharing the time axis: writes acknowledged, queue, age of the oldest unpersisted write.
fn lag(path: &Path, l: &crate::scenarios::lag::LagResult) -> Result<()> {
    let name = "lag over time";
    let root = BitMapBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(failed(name))?;
    let panels = root.split_evenly((3, 1));
    let acked = [("writes acknowledged".to_owned(), per_second(&l.load.per_second), BEHIND)];
    let end = l.samples.last().map(|q| q.t_s);
    let axes = |y| Axes { x_end: end, ..Axes::new("seconds", y) };
    lines(&panels[0], "Writes acknowledged per second", axes("writes/s"), &acked, None)?;
    let queue = |f: fn(&crate::scenarios::QueueSample) -> u64| l.samples.iter().map(|q| (q.t_s, f(q) as f64)).collect();
    let sizes = [
        ("queue_size".to_owned(), queue(|q| q.queue_size), BEHIND),
        ("in_flight".to_owned(), queue(|q| q.in_flight), OTHER),
    ];
    lines(&panels[1], "Queue (dirty keys and keys in flight)", axes("keys"), &sizes, None)?;
    let age = [("oldest unpersisted write".to_owned(), queue(|q| q.oldest_unpersisted_age_ms), THROUGH)];
    let target = (l.target_ms(), format!("target: flush interval + 100 ms = {:.0} ms", l.target_ms()));
    let title = "Data at risk: age of the oldest unpersisted write";
    lines(&panels[2], title, axes("ms"), &age, Some(target))?;
    root.present().map_err(failed(name))
}

/// Line series on linear axes, with an optional horizontal reference line.
/// How a line chart's axes read and where its legend goes.
struct Axes<'a> {
    x: &'a str,
    y: &'a str,
    /// Where x ends; else at the last point.
    x_end: Option<f64>,
    legend: SeriesLabelPosition,
}

impl<'a> Axes<'a> {
    fn new(x: &'a str, y: &'a str) -> Self {
        Self { x, y, x_end: None, legend: SeriesLabelPosition::LowerRight }
    }
}

fn lines(area: &Area, title: &str, axes: Axes, series: &[Series], hline: Option<(f64, String)>) -> Result<()> {
    let name = "lines";
    let Axes { x: x_desc, y: y_desc, x_end, legend: legend_at } = axes;
    let points = series.iter().flat_map(|s| s.1.iter());
    let (x_max, y_max) = points.fold((1.0f64, 1.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let x_max = x_end.unwrap_or(x_max);
    let y_max = y_max.max(hline.as_ref().map_or(0.0, |h| h.0)) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(failed(name))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&|v| trim(*v))
        .label_style((FONT, 13))
        .draw()
        .map_err(failed(name))?;
    for (label, data, color) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))
            .map_err(failed(name))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    if let Some((y, label)) = hline {
        chart
            .draw_series(DashedLineSeries::new([(0.0, y), (x_max, y)], 8, 5, BLACK.stroke_width(1)))
            .map_err(failed(name))?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
    }
    legend(&mut chart, name, legend_at)
}

/// Vertical bars, each labelled with its value.
fn bar_chart(area: &Area, title: &str, bars: &[(String, f64, RGBColor)]) -> Result<()> {
    let name = "bars";
    let y_max = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((0..(bars.len() as u32).saturating_sub(1).max(1)).into_segmented(), 0.0..y_max)
        .map_err(failed(name))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(bars.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i as usize).map_or(String::new(), |b| b.0.clone()),
            _ => String::new(),
        })
        .y_label_formatter(&|v| trim(*v))
        .label_style((FONT, 13))
        .draw()
        .map_err(failed(name))?;
    for (i, (_, value, color)) in bars.iter().enumerate() {
        let i = i as u32;
        let mut bar =
            Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *value)], color.filled());
        bar.set_margin(0, 0, 12, 12);
        chart.draw_series(std::iter::once(bar)).map_err(failed(name))?;
        let style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        let text = Text::new(trim(*value), (SegmentValue::CenterOf(i), *value + y_max * 0.01), style);
        chart.draw_series(std::iter::once(text)).map_err(failed(name))?;
    }
    Ok(())
}

fn legend<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>,
    name: &'static str,
    at: SeriesLabelPosition,
) -> Result<()>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(at)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(failed(name))
}

/// 0 nines is "0%", 1 is "90%", 3 is "99.9%".
fn percentile_label(nines: f64) -> String {
    let decimals = (nines.round() as i32 - 2).max(0) as usize;
    format!("{:.*}%", decimals, 100.0 * (1.0 - 10f64.powf(-nines)))
}

/// A number without needless digits: 12,345 / 1.5 / 0.234.
fn trim(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        let s = if a >= 1.0 { format!("{v:.2}") } else { format!("{v:.3}") };
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
