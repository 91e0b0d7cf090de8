//! Checks shared by the fuzz targets: whatever decodes must be consistent and re-encode to
//! the same series.

use ringest::remote_write::{decode_thanos_write, encode_thanos_write, WriteRequest, METRIC_NAME};

/// Owned view of the valid series: labels and (timestamp, value bits).
fn view(req: &WriteRequest<'_>) -> Vec<(Vec<(String, String)>, Vec<(i64, u64)>)> {
    req.series
        .iter()
        .map(|s| {
            (
                req.series_labels(s)
                    .iter()
                    .map(|l| (l.name.to_owned(), l.value.to_owned()))
                    .collect(),
                req.series_samples(s)
                    .iter()
                    .map(|x| (x.timestamp, x.value.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

/// Asserts the invariants of a decoded request and that it survives re-encoding.
pub fn check(req: &WriteRequest<'_>) {
    for s in &req.series {
        let labels = req.series_labels(s);
        assert!(!labels.is_empty());
        assert!(
            labels.windows(2).all(|w| w[0].name < w[1].name),
            "sorted, unique"
        );
        assert!(labels
            .iter()
            .all(|l| !l.name.is_empty() && !l.value.is_empty()));
        assert!(labels.iter().any(|l| l.name == METRIC_NAME));
    }
    let total: usize = req.series.iter().map(|s| req.series_samples(s).len()).sum();
    assert_eq!(total, req.num_samples());

    let mut out = Vec::new();
    encode_thanos_write(
        req,
        &req.series,
        req.tenant.unwrap_or(""),
        req.replica,
        &mut out,
    );
    let back = decode_thanos_write(&out).expect("re-encoded request decodes");
    assert!(back.invalid.is_empty());
    assert_eq!(view(&back), view(req));
    assert_eq!(back.tenant, req.tenant);
    assert_eq!(back.replica, req.replica);
}
