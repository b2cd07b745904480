//! Detection metrics: per-trace scores, flag rates at pH's thresholds, and ROC AUC.

use serde::Serialize;

/// How one test trace scored against the fixed normal profiles.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceScore {
    /// `normal` or `attack`.
    pub set: String,
    pub path: String,
    /// Calls of traced processes (every call the model processed).
    pub calls: u64,
    /// Calls with at least one lookahead pair missing from the testing data.
    pub anomalous_calls: u64,
    /// Highest locality frame count (anomalies among a task's last 128 calls) of any task.
    pub max_lfc: u32,
    /// anomalous_calls / calls (0 for a trace without calls).
    pub rate: f64,
}

impl TraceScore {
    pub fn new(set: &str, path: String, calls: u64, anomalous_calls: u64, max_lfc: u32) -> Self {
        let rate = if calls == 0 {
            0.0
        } else {
            anomalous_calls as f64 / calls as f64
        };
        TraceScore {
            set: set.into(),
            path,
            calls,
            anomalous_calls,
            max_lfc,
            rate,
        }
    }
}

/// A rule that flags a trace as an intrusion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// Any anomalous call.
    AnyAnomaly,
    /// The LFC went above N (3: ebpH's execve tolerance; 12: pH's tolerize limit).
    LfcAbove(u32),
}

/// The thresholds every report shows, in order.
pub const THRESHOLDS: [Threshold; 3] = [
    Threshold::AnyAnomaly,
    Threshold::LfcAbove(3),
    Threshold::LfcAbove(12),
];

impl Threshold {
    pub fn flags(self, s: &TraceScore) -> bool {
        match self {
            Threshold::AnyAnomaly => s.anomalous_calls > 0,
            Threshold::LfcAbove(n) => s.max_lfc > n,
        }
    }

    /// Shown in the text report.
    pub fn label(self) -> String {
        match self {
            Threshold::AnyAnomaly => "any anomaly".into(),
            Threshold::LfcAbove(n) => format!("LFC > {n}"),
        }
    }

    /// Key in the JSON report.
    pub fn key(self) -> String {
        match self {
            Threshold::AnyAnomaly => "any_anomaly".into(),
            Threshold::LfcAbove(n) => format!("lfc_gt_{n}"),
        }
    }
}

/// A score to rank traces by, for AUC and ROC curves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    AnomalousCalls,
    MaxLfc,
    Rate,
}

pub const METRICS: [Metric; 3] = [Metric::AnomalousCalls, Metric::MaxLfc, Metric::Rate];

impl Metric {
    pub fn of(self, s: &TraceScore) -> f64 {
        match self {
            Metric::AnomalousCalls => s.anomalous_calls as f64,
            Metric::MaxLfc => f64::from(s.max_lfc),
            Metric::Rate => s.rate,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Metric::AnomalousCalls => "anomalous_calls",
            Metric::MaxLfc => "max_lfc",
            Metric::Rate => "rate",
        }
    }
}

/// ROC AUC of `attack` against `normal` scores (higher means more suspicious): the
/// Mann-Whitney statistic, the probability that a random attack trace outscores a random
/// normal one, ties counted 1/2. `None` when either set is empty.
pub fn auc(normal: &[f64], attack: &[f64]) -> Option<f64> {
    if normal.is_empty() || attack.is_empty() {
        return None;
    }
    // Sort everything once; each run of equal scores splits its attack-normal pairs evenly.
    let mut all: Vec<(f64, bool)> = normal
        .iter()
        .map(|&s| (s, false))
        .chain(attack.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut normals_below = 0u64;
    // Twice the statistic, so ties stay in integers.
    let mut twice = 0u128;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        let (mut n, mut a) = (0u64, 0u64);
        while j < all.len() && all[j].0.total_cmp(&all[i].0).is_eq() {
            if all[j].1 {
                a += 1;
            } else {
                n += 1;
            }
            j += 1;
        }
        twice += u128::from(a) * (2 * u128::from(normals_below) + u128::from(n));
        normals_below += n;
        i = j;
    }
    let pairs = normal.len() as f64 * attack.len() as f64;
    Some(twice as f64 / 2.0 / pairs)
}

/// ROC points (false-alarm rate, detection rate) from (0,0) to (1,1), one per distinct score
/// taken as the threshold "score >= t".
pub fn roc(normal: &[f64], attack: &[f64]) -> Vec<(f64, f64)> {
    let mut cuts: Vec<f64> = normal.iter().chain(attack).copied().collect();
    cuts.sort_by(|a, b| b.total_cmp(a));
    cuts.dedup_by(|a, b| a.total_cmp(b).is_eq());
    let frac = |v: &[f64], t: f64| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().filter(|&&s| s >= t).count() as f64 / v.len() as f64
        }
    };
    let mut pts = vec![(0.0, 0.0)];
    pts.extend(cuts.iter().map(|&t| (frac(normal, t), frac(attack, t))));
    if pts.last() != Some(&(1.0, 1.0)) {
        pts.push((1.0, 1.0));
    }
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_separation_is_one() {
        assert_eq!(auc(&[0.0, 1.0], &[2.0, 3.0]), Some(1.0));
        assert_eq!(auc(&[2.0, 3.0], &[0.0, 1.0]), Some(0.0));
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // Every pair tied.
        assert_eq!(auc(&[1.0, 1.0], &[1.0]), Some(0.5));
        // normal {0, 1, 2}, attack {1, 3}: pairs won by attack: (1>0)=1, (1=1)=.5, (1<2)=0,
        // (3>all)=3 -> 4.5 of 6.
        assert_eq!(auc(&[0.0, 1.0, 2.0], &[1.0, 3.0]), Some(0.75));
        // normal {0, 0, 5}, attack {0, 5, 5}: 0 vs {0,0,5}: .5+.5+0; 5 vs: 1+1+.5 twice -> 6/9.
        assert_eq!(auc(&[0.0, 0.0, 5.0], &[0.0, 5.0, 5.0]), Some(6.0 / 9.0));
    }

    #[test]
    fn auc_needs_both_sets() {
        assert_eq!(auc(&[], &[1.0]), None);
        assert_eq!(auc(&[1.0], &[]), None);
    }

    #[test]
    fn auc_matches_the_pairwise_definition() {
        let normal = [0.0, 3.0, 3.0, 1.5, 7.0, 0.0, 2.0];
        let attack = [3.0, 9.0, 0.0, 2.0, 7.0];
        let mut won = 0.0;
        for a in attack {
            for n in normal {
                won += if a > n {
                    1.0
                } else if a == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let want = won / (normal.len() * attack.len()) as f64;
        assert!((auc(&normal, &attack).unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn thresholds_flag_as_named() {
        let s = TraceScore::new("attack", "x".into(), 100, 4, 4);
        assert!(Threshold::AnyAnomaly.flags(&s));
        assert!(Threshold::LfcAbove(3).flags(&s));
        assert!(!Threshold::LfcAbove(12).flags(&s));
        let clean = TraceScore::new("normal", "y".into(), 0, 0, 0);
        assert_eq!(clean.rate, 0.0);
        assert!(!Threshold::AnyAnomaly.flags(&clean));
    }

    #[test]
    fn roc_runs_corner_to_corner() {
        let pts = roc(&[0.0, 1.0], &[1.0, 2.0]);
        assert_eq!(pts, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
    }
}
