//! Just enough of the Prometheus text format to read counters and one histogram.

/// Sum of the samples of a counter or gauge, over all label sets.
pub fn sum(text: &str, name: &str) -> f64 {
    samples(text, name).map(|(_, v)| v).sum()
}

/// The cumulative buckets of a histogram (one label set, or summed over all).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// (upper bound, cumulative count), ascending; the last bound is +Inf.
    pub le: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl Buckets {
    pub fn parse(text: &str, name: &str) -> Self {
        let mut le: Vec<(f64, f64)> = Vec::new();
        for (labels, value) in samples(text, &format!("{name}_bucket")) {
            let Some(bound) = label(labels, "le") else { continue };
            let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap_or(f64::NAN) };
            match le.iter_mut().find(|(b, _)| *b == bound) {
                Some(entry) => entry.1 += value,
                None => le.push((bound, value)),
            }
        }
        le.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self { le, count: sum(text, &format!("{name}_count")), sum: sum(text, &format!("{name}_sum")) }
    }

    /// What was observed between `before` and `self`.
    pub fn since(&self, before: &Self) -> Self {
        let le = self
            .le
            .iter()
            .map(|&(b, c)| (b, c - before.le.iter().find(|(x, _)| *x == b).map_or(0.0, |e| e.1)))
            .collect();
        Self { le, count: self.count - before.count, sum: self.sum - before.sum }
    }

    /// The quantile, interpolated linearly within its bucket as PromQL's `histogram_quantile` does.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.le.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, cumulative) in &self.le {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return Some(lower.0); // beyond the largest finite bucket: its bound is all we know
                }
                let within = (rank - lower.1) / (cumulative - lower.1).max(f64::MIN_POSITIVE);
                return Some(lower.0 + (bound - lower.0) * within);
            }
            lower = (bound, cumulative);
        }
        None
    }

    /// The upper bound of the bucket the quantile falls in: what the histogram can promise.
    pub fn quantile_bucket_bound(&self, q: f64) -> Option<f64> {
        let rank = q * self.le.last()?.1;
        self.le.iter().find(|(_, c)| *c >= rank).map(|(b, _)| *b)
    }
}

/// (labels, value) of every sample of exactly `name`.
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (labels, v) = r.split_once('}')?;
                (labels, v)
            }
            None if rest.starts_with(' ') => ("", rest),
            None => return None,
        };
        Some((labels, value.split_whitespace().next()?.parse().ok()?))
    })
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| kv.trim().strip_prefix(key)?.strip_prefix("=\"")?.strip_suffix('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP lag x\n# TYPE lag histogram\nlag_bucket{le=\"0.5\"} 10\nlag_bucket{le=\"1\"} 60\n\
        lag_bucket{le=\"2\"} 100\nlag_bucket{le=\"+Inf\"} 100\nlag_sum 90\nlag_count 100\n\
        rows_total 7\nrows_total_other 3\nwrites_total{op=\"a\"} 2\nwrites_total{op=\"b\"} 5\n";

    #[test]
    fn counters_sum_over_label_sets_and_match_names_exactly() {
        assert_eq!(sum(TEXT, "writes_total"), 7.0);
        assert_eq!(sum(TEXT, "rows_total"), 7.0);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_promql() {
        let b = Buckets::parse(TEXT, "lag");
        assert_eq!(b.count, 100.0);
        assert_eq!(b.quantile(0.5), Some(0.9));
        assert_eq!(b.quantile(0.8), Some(1.5));
        assert_eq!(b.quantile_bucket_bound(0.99), Some(2.0));
    }

    #[test]
    fn a_difference_of_histograms_holds_only_the_new_observations() {
        let before = Buckets::parse(TEXT, "lag");
        let after = Buckets::parse(&TEXT.replace("lag_bucket{le=\"2\"} 100", "lag_bucket{le=\"2\"} 110"), "lag");
        let d = after.since(&before);
        assert_eq!(d.le[2], (2.0, 10.0));
        assert_eq!(d.le[0], (0.5, 0.0));
    }
}
