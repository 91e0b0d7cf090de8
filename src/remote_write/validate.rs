//! Per-series checks shared by every decoder: sort labels, validate them, and either keep the
//! series or record it as invalid (partial write).

use std::fmt::Write as _;

use super::{DecodeError, InvalidReason, InvalidSeries, Label, Series, WriteRequest};

/// Name of the metric name label.
pub const METRIC_NAME: &str = "__name__";

/// Longest label value shown in an error message before it is cut.
const MAX_VALUE_CHARS: usize = 48;
/// Most labels shown in an error message.
const MAX_LABELS_SHOWN: usize = 8;

/// What the decoder saw of one series besides its labels and samples.
pub(crate) struct SeriesExtras {
    /// Position of the series in the request.
    pub(crate) index: u32,
    /// Native histograms carried by the series.
    pub(crate) histograms: u32,
    /// Remote write 2.0: a series needs samples or histograms.
    pub(crate) require_samples: bool,
}

/// Closes the series whose labels start at `label_start` and samples at `sample_start` in the
/// flat vectors: sorts and validates its labels, then keeps it or moves it to `invalid`.
#[inline]
pub(crate) fn finish_series(
    req: &mut WriteRequest<'_>,
    label_start: usize,
    sample_start: usize,
    extras: SeriesExtras,
) -> Result<(), DecodeError> {
    let labels = req.labels.get_mut(label_start..).unwrap_or_default();
    // Real senders mostly send sorted labels; only sort when needed. Strictly increasing names
    // also rule out duplicates.
    let strictly_sorted = labels.windows(2).all(|w| name_less(w[0].name, w[1].name));
    if !strictly_sorted {
        labels.sort_unstable();
    }
    let samples = req.samples.len().saturating_sub(sample_start);
    let reason = match check_labels(labels, !strictly_sorted) {
        Some(reason) => Some(reason),
        None if extras.histograms > 0 => Some(InvalidReason::Histograms {
            series: render(labels),
        }),
        None if extras.require_samples && samples == 0 => Some(InvalidReason::NoSamples {
            series: render(labels),
        }),
        None => None,
    };
    match reason {
        None => {
            let labels_end =
                u32::try_from(req.labels.len()).map_err(|_| DecodeError::TooManyItems)?;
            let samples_end =
                u32::try_from(req.samples.len()).map_err(|_| DecodeError::TooManyItems)?;
            // Starts are not larger than the ends, so they fit as well.
            req.series.push(Series {
                labels: label_start as u32..labels_end,
                samples: sample_start as u32..samples_end,
            });
        }
        Some(reason) => {
            let samples = u32::try_from(samples)
                .unwrap_or(u32::MAX)
                .saturating_add(extras.histograms);
            req.labels.truncate(label_start);
            req.samples.truncate(sample_start);
            req.invalid.push(InvalidSeries {
                index: extras.index,
                reason,
                samples,
            });
        }
    }
    Ok(())
}

/// `a < b`, deciding on the first byte when it differs: cheaper than a `memcmp` call for the
/// short, mostly distinct label names of a series.
#[inline]
fn name_less(a: &str, b: &str) -> bool {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a < b,
    }
}

/// `name == "__name__"`, rejecting most other names on length and first byte alone.
#[inline]
fn is_metric_name(name: &str) -> bool {
    name.len() == METRIC_NAME.len() && name.as_bytes().first() == Some(&b'_') && name == METRIC_NAME
}

/// Checks sorted labels; `None` when valid. Duplicates are only possible when `may_repeat`.
#[inline]
fn check_labels(labels: &[Label<'_>], may_repeat: bool) -> Option<InvalidReason> {
    if labels.is_empty() {
        return Some(InvalidReason::NoLabels);
    }
    let mut has_name = false;
    let mut prev: Option<&str> = None;
    for l in labels {
        if l.name.is_empty() {
            return Some(InvalidReason::EmptyLabelName {
                series: render(labels),
            });
        }
        if may_repeat && prev == Some(l.name) {
            return Some(InvalidReason::DuplicateLabelName {
                series: render(labels),
                name: shorten(l.name).into(),
            });
        }
        prev = Some(l.name);
        if is_metric_name(l.name) {
            if l.value.is_empty() {
                return Some(InvalidReason::EmptyName {
                    series: render(labels),
                });
            }
            has_name = true;
        } else if l.value.is_empty() {
            return Some(InvalidReason::EmptyLabelValue {
                series: render(labels),
                name: shorten(l.name).into(),
            });
        }
    }
    if !has_name {
        return Some(InvalidReason::MissingName {
            series: render(labels),
        });
    }
    None
}

/// Cuts `s` to [`MAX_VALUE_CHARS`] characters.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Renders labels like Prometheus does (`{__name__="x", job="y"}`), shortened for error messages.
#[cold]
pub(crate) fn render(labels: &[Label<'_>]) -> Box<str> {
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if i == MAX_LABELS_SHOWN {
            let _ = write!(out, "... {} more", labels.len() - i);
            break;
        }
        let name = shorten(l.name);
        if is_plain_name(&name) {
            out.push_str(&name);
        } else {
            let _ = write!(out, "{name:?}");
        }
        let _ = write!(out, "={:?}", shorten(l.value));
    }
    out.push('}');
    out.into_boxed_str()
}

/// True for names that need no quoting (legacy Prometheus label name charset).
fn is_plain_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l<'a>(name: &'a str, value: &'a str) -> Label<'a> {
        Label { name, value }
    }

    #[test]
    fn render_quotes_odd_names_and_cuts_long_values() {
        let long = "v".repeat(200);
        let labels = [l("__name__", "up"), l("a.b c", "x\ny"), l("job", &long)];
        let s = render(&labels);
        assert!(
            s.starts_with(r#"{__name__="up", "a.b c"="x\ny", job="vvvv"#),
            "{s}"
        );
        assert!(s.ends_with(r#"..."}"#), "{s}");
        assert!(s.len() < 120, "{s}");
        let many: Vec<_> = (0..20).map(|_| l("n", "v")).collect();
        assert!(render(&many).ends_with("... 12 more}"));
    }

    #[test]
    fn reasons_display_the_series() {
        let labels = [l("__name__", "x"), l("job", "a"), l("job", "b")];
        let r = check_labels(&labels, true).unwrap();
        assert_eq!(
            r.to_string(),
            r#"series {__name__="x", job="a", job="b"}: duplicate label name "job""#
        );
        assert!(check_labels(&[l("__name__", "x"), l("job", "")], true)
            .unwrap()
            .to_string()
            .contains(r#"empty value for label "job""#));
        assert!(check_labels(&[l("job", "a")], true)
            .unwrap()
            .to_string()
            .contains("missing metric name"));
        assert_eq!(check_labels(&[], true), Some(InvalidReason::NoLabels));
        assert!(check_labels(&[l("", "a"), l("__name__", "x")], true).is_some());
        assert!(matches!(
            check_labels(&[l("__name__", "")], true),
            Some(InvalidReason::EmptyName { .. })
        ));
        assert_eq!(
            check_labels(&[l("__name__", "x"), l("a b.c", "é")], true),
            None
        );
    }
}
